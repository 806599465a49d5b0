"""Which model made a capture (:func:`model_identity`), so that :func:`explainers.render` refuses a capture with any
other model instead of reading its logits with another model's class names, or indexing past them.

The identity is a short hash of the wrapper's name, its number of classes and their labels, its input size, and a
digest of the weights (each parameter's name, shape and sum, in float64). The digest is computed once per module
(held weakly; a duck-typed model without ``named_parameters`` is identified by the object itself), so the check
costs nothing after the first capture; two loads of the same weights have the same
identity, and a model must not be modified in place while captures made with it are kept (the app never does).
"""

from __future__ import annotations

import hashlib
import threading
import weakref

import torch

__all__ = ["model_identity"]

_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _weights_digest(module) -> str:
    with _lock:
        hit = _digests.get(module)
    if hit is not None:
        return hit
    params = getattr(module, "named_parameters", None)
    if params is None:  # a duck-typed model (tests' closed-form models): the object itself is its identity
        return f"object {id(module)}"
    h = hashlib.sha1()
    with torch.no_grad():
        for name, p in params():
            h.update(f"{name}:{tuple(p.shape)}:{float(p.detach().double().sum()):.17g};".encode())
    digest = h.hexdigest()
    try:
        with _lock:
            _digests[module] = digest
    except TypeError:  # a module that cannot be weakly referenced: computed again next time
        pass
    return digest


def model_identity(model) -> str:
    """A short fingerprint of a loaded model (see the module's text)."""
    labels = getattr(model, "labels", None) or ()
    parts = [type(getattr(model, "module", model)).__name__, str(getattr(model, "name", "")),
             str(getattr(model, "num_classes", "")), str(tuple(getattr(model, "input_size", ()))),
             hashlib.sha1("\n".join(map(str, labels)).encode()).hexdigest(),
             _weights_digest(getattr(model, "module", model))]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
