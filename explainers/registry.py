"""The method registry: one small class per method, one verb.

A method is a subclass of :class:`Method` that declares its metadata (display name, paper, cost,
parameters) and implements two steps:

* ``capture(model, x, target, params, progress)`` runs the model (forward, backward, masked passes) and
  returns a :class:`Capture` holding logits, resolved targets and whatever tensors the second step needs;
* ``reduce(capture, params)`` turns that state into maps without touching the model.

Parameters marked ``cheap=True`` are only read by ``reduce``: changing them (a slider in the app) reuses
the capture and costs no forward pass. Adding a method means one new file in ``explainers/methods/``
with a ``@register`` class, and (in the app) one small page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from .errors import Cancelled, InvalidParameterError

__all__ = ["Param", "Method", "Capture", "Maps", "METHODS", "register", "report_progress"]


@dataclass(frozen=True)
class Param:
    """One method parameter, with what a UI needs to build a widget for it.

    kind: "int", "float", "bool" or "choice". ``min``/``max`` may be numbers or callables of the loaded
    model (e.g. ``lambda m: m.num_layers - 1``); :meth:`bounds` resolves them.
    cheap: True when the parameter only affects the post-processing (no new forward pass needed).
    added: True for a parameter given to an existing method later, whose default is the method as it was before:
    a run folder recorded without it resumes when it is at that default (:mod:`explainers.run_folder`).
    """

    name: str
    kind: str
    default: Any
    help: str
    min: Any = None
    max: Any = None
    choices: tuple = ()
    step: float | None = None
    cheap: bool = False
    allow_none: bool = False
    added: bool = False

    def bounds(self, model=None) -> tuple[Any, Any]:
        lo = self.min(model) if callable(self.min) else self.min
        hi = self.max(model) if callable(self.max) else self.max
        return lo, hi

    def validate(self, value, model=None):
        """Coerce ``value`` (also from a string, as the command line gives it) and check its range.

        Scalars of any numeric type are accepted: numpy scalars, 0-d arrays and tensors, ``Decimal`` and
        ``Fraction``. An integer parameter takes integral values only (1.5 is refused, never truncated); a
        float parameter takes any finite number; numpy's ``bool_`` is a bool (refused for numbers, like
        ``True``). Overflowing or non-finite values are refused with :class:`InvalidParameterError`."""
        import math
        import numbers
        import operator
        from decimal import Decimal

        import numpy as np

        def shown(v) -> str:  # a repr that never fails or floods the message (10**5000, huge arrays)
            if isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 64:
                return f"an integer of about {int(v.bit_length() * 0.30103) + 1} digits"
            try:
                r = repr(v)
            except Exception:
                r = f"a {type(v).__name__}"
            return r if len(r) <= 80 else r[:77] + "..."

        if value is None:
            if self.allow_none:
                return None
            raise InvalidParameterError(f"parameter {self.name!r} needs a value")
        given = value
        try:
            if isinstance(value, (torch.Tensor, np.ndarray)):
                if value.ndim != 0:
                    raise ValueError(value)
                value = value.item()  # -> a Python bool, int, float or complex
            elif isinstance(value, np.generic):
                value = value.item()
            if self.kind == "bool":
                if isinstance(value, str):
                    low = value.strip().lower()
                    if low not in ("true", "false", "1", "0", "yes", "no"):
                        raise ValueError(value)
                    value = low in ("true", "1", "yes")
                elif not hasattr(value, "__index__") or operator.index(value) not in (0, 1):
                    raise ValueError(value)
                return bool(value)
            if self.kind == "choice":
                value = str(value)
                if value not in self.choices:
                    raise InvalidParameterError(
                        f"parameter {self.name!r} must be one of {', '.join(self.choices)}; got {shown(value)}")
                return value
            if isinstance(value, bool):
                raise ValueError(value)
            if self.kind == "int":
                if isinstance(value, str):
                    value = int(value.strip())
                elif hasattr(value, "__index__"):
                    value = operator.index(value)
                elif isinstance(value, (numbers.Real, Decimal)):
                    exact = int(value)  # OverflowError for infinities, ValueError for NaN
                    if exact != value:  # 1.5 is refused, not truncated
                        raise ValueError(value)
                    value = exact
                else:
                    raise TypeError(value)
            elif self.kind == "float":
                if isinstance(value, str):
                    value = value.strip()
                elif not (isinstance(value, (numbers.Real, Decimal)) or hasattr(value, "__index__")):
                    raise TypeError(value)
                value = float(value)  # OverflowError for 10**400
                if not math.isfinite(value):
                    raise ValueError(value)
            else:  # pragma: no cover - programming error
                raise TypeError(self.kind)
        except InvalidParameterError:
            raise
        except (TypeError, ValueError, ArithmeticError):  # OverflowError, decimal.InvalidOperation
            what = "an integer" if self.kind == "int" else "a " + self.kind
            raise InvalidParameterError(f"parameter {self.name!r} must be {what}; got {shown(given)}") from None
        lo, hi = self.bounds(model)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            if lo is not None and hi is not None:
                rng = f"[{lo}, {hi}]"
            else:
                rng = f">= {lo}" if lo is not None else f"<= {hi}"
            raise InvalidParameterError(f"parameter {self.name!r} must be in {rng}; got {shown(value)}")
        return value

    def describe(self, model=None) -> dict:
        lo, hi = self.bounds(model) if model is not None else (
            None if callable(self.min) else self.min, None if callable(self.max) else self.max)
        return {"name": self.name, "type": self.kind, "default": self.default, "min": lo, "max": hi,
                "choices": list(self.choices), "step": self.step, "help": self.help, "cheap": self.cheap}


@dataclass
class Capture:
    """The model-dependent part of an explanation: everything ``reduce`` needs, on the CPU or device."""

    method: str
    logits: torch.Tensor | None  # (B, C); None for a model without classes
    targets: torch.Tensor  # (B,) long: the class each map is about, -1 for targets that are not a class
    grid: tuple[int, int]
    input_size: tuple[int, int]
    params: dict  # the non-cheap parameters used
    state: dict = field(default_factory=dict)
    seconds: float = 0.0
    forward_passes: int = 0  # images pushed through the model (for benchmarks)
    x: torch.Tensor | None = None  # the model input (kept for metrics/reports), on the CPU
    target: Any = None  # the bound target (explainers.targets.Bound)
    target_scores: torch.Tensor | None = None  # (B,) the target's score on the clean input (class probability)
    model_name: str = ""  # the model that made it, and its identity (explainers.identity): render refuses another
    model_identity: str = ""


@dataclass
class Maps:
    patch_maps: torch.Tensor  # (B, gh, gw)
    pixel_maps: torch.Tensor | None = None  # (B, H, W) for methods that work at pixel level
    warnings: list[list[str]] | None = None


class Method:
    """Base class of every explanation method. Subclasses set the class attributes and implement
    :meth:`capture` and :meth:`reduce`."""

    name: str = ""
    display_name: str = ""
    paper: str = ""
    paper_url: str = ""
    cost: str = ""
    description: str = ""
    class_specific: bool = True
    family: str = ""  # groups methods on one app page ("attention", "lrp", "perturbation", ...)
    params: tuple[Param, ...] = ()
    # The raw map can hold negative values (evidence against the target). A method whose sign depends on a
    # parameter (``relu``, ``absolute``) overrides :meth:`is_signed`; every contrast target is signed.
    signed: bool = False
    # A bool parameter that, when true, rectifies the map (``relu``) or takes its magnitude (``absolute``).
    signed_unless: str = ""

    def is_signed(self, params: Mapping[str, Any] | None = None) -> bool:
        """Whether the raw map of this method, with these parameters, can be negative."""
        if not self.signed or not self.signed_unless:
            return self.signed
        return not {**self.defaults(), **(params or {})}[self.signed_unless]

    # -- parameters ---------------------------------------------------------------------------------------
    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def defaults(self) -> dict:
        return {p.name: p.default for p in self.params}

    def validate(self, params: Mapping[str, Any], model=None) -> dict:
        known = {p.name for p in self.params}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidParameterError(
                f"{self.name} has no parameter {', '.join(map(repr, unknown))}; "
                f"its parameters are: {', '.join(sorted(known)) or 'none'}")
        out = {}
        for p in self.params:
            out[p.name] = p.validate(params.get(p.name, p.default), model)
        return out

    def split(self, params: dict) -> tuple[dict, dict]:
        cheap = {p.name for p in self.params if p.cheap}
        return ({k: v for k, v in params.items() if k not in cheap}, {k: v for k, v in params.items() if k in cheap})

    def describe(self, model=None) -> dict:
        return {"name": self.name, "display_name": self.display_name, "paper": self.paper,
                "paper_url": self.paper_url, "cost": self.cost, "class_specific": self.class_specific,
                "family": self.family, "description": self.description,
                "parameters": [p.describe(model) for p in self.params]}

    # -- the two steps -------------------------------------------------------------------------------------
    def capture(self, model, x: torch.Tensor, target, params: dict, progress=None) -> Capture:
        raise NotImplementedError

    def reduce(self, cap: Capture, params: dict) -> Maps:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<method {self.name}: {self.display_name}>"


class _Registry(Mapping):
    """name -> Method instance, in registration order."""

    def __init__(self):
        self._methods: dict[str, Method] = {}

    def __getitem__(self, name: str) -> Method:
        try:
            return self._methods[name]
        except KeyError:
            raise InvalidParameterError(
                f"unknown method {name!r}; available: {', '.join(self._methods)}") from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._methods)

    def __len__(self) -> int:
        return len(self._methods)

    def __contains__(self, name) -> bool:
        return name in self._methods

    def with_param(self, name: str) -> list[str]:
        """The methods that take parameter ``name`` (e.g. ``"libragrad"``), in registration order."""
        return [n for n, m in self._methods.items() if any(p.name == name for p in m.params)]

    def add(self, method: Method) -> None:
        if not method.name or method.name in self._methods:
            raise ValueError(f"method name {method.name!r} missing or registered twice")
        self._methods[method.name] = method


METHODS = _Registry()


def register(cls: type[Method]) -> type[Method]:
    """Class decorator: instantiate and add to :data:`METHODS`."""
    METHODS.add(cls())
    return cls


def parse_method_params(items, methods) -> dict[str, dict]:
    """``METHOD.NAME=VALUE`` strings (a command line's ``--param rise.masks=1000``) -> {method: {name: value}}, each
    value coerced and range-checked by its :class:`Param`; only the parameters given. ``methods``: the methods of
    the run (a parameter of another one is refused: it would change nothing)."""
    out: dict[str, dict] = {}
    for item in items or []:
        key, eq, value = str(item).partition("=")
        method, dot, name = key.strip().partition(".")
        if not eq or not dot or not method or not name.strip():
            raise InvalidParameterError(f"--param expects METHOD.NAME=VALUE (e.g. rise.masks=1000); got {item!r}")
        if method not in methods:
            raise InvalidParameterError(f"--param {key.strip()}: {method!r} is not one of the run's methods "
                                        f"({', '.join(methods)})")
        name = name.strip()
        out.setdefault(method, {})[name] = METHODS[method].validate({name: value.strip()})[name]
    return out


def check_target(target, num_classes: int) -> None:
    """Refuse a bad class target before any model pass (target objects are checked when they are bound)."""
    from .targets import ClassLogit, Contrast, Target, class_index, class_values

    if isinstance(target, Contrast):
        target = [target.a, target.b]
    elif isinstance(target, ClassLogit):
        target = target.index
    elif isinstance(target, Target) or (callable(target) and not isinstance(target, torch.Tensor)):
        return
    if target is None:
        return
    if num_classes == 0:
        raise InvalidParameterError(
            "this model has no classifier, so a class target has no meaning; explain a similarity target "
            "(explainers.targets.Similarity) or load the model with num_classes=N")
    for v in class_values(target):
        i = class_index(v)
        if i is None:
            raise InvalidParameterError(f"target class must be an integer; got {v!r}")
        if not 0 <= i < num_classes:
            raise InvalidParameterError(
                f"target class {i} is outside this model's classes (0..{num_classes - 1})")


def report_progress(progress: Callable[[int, int], Any] | None, done: int, total: int) -> None:
    """Call the user's progress callback; it cancels the run by returning False or raising Cancelled."""
    if progress is None:
        return
    if progress(done, total) is False:
        raise Cancelled("cancelled by the progress callback")
