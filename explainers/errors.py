"""Exceptions with messages meant for people: each names the problem and the fix."""


class ExplainerError(Exception):
    """Base class of every error this library raises on purpose."""


class ModelLoadError(ExplainerError):
    """The model name, weights or device could not be used."""


class WeightsUnavailableError(ModelLoadError):
    """Hub weights could not be downloaded (offline machine) and no local weights were given."""


class UnsupportedModelError(ExplainerError):
    """The architecture is outside what the explainers can read (e.g. SwiGLU MLP, attention pooling)."""


class InvalidParameterError(ExplainerError, ValueError):
    """A method parameter or target class is out of range or of the wrong type."""


class ImageError(ExplainerError, ValueError):
    """An input image could not be decoded or is outside the accepted limits."""


class Cancelled(ExplainerError):
    """Raised (by a progress callback, or when it returns False) to stop a long explanation."""


class MissingExtraError(ExplainerError, ImportError):
    """A feature needs an optional package that is not installed; the message names the extra to install."""
