"""Which model made a capture (:func:`model_identity`), so that :func:`explainers.render` refuses a capture with any
other model instead of reading its logits with another model's class names, or indexing past them.

The identity is a short hash of the wrapper's name, its number of classes and their labels, its input size, and a
digest of the weights (:func:`weights_digest`, the SHA-256 that run folders record). The digest is computed once
per module (held weakly; a duck-typed model without ``state_dict`` is identified by the object itself), so the check
costs nothing after the first capture; two loads of the same weights have the same
identity, and a model must not be modified in place while captures made with it are kept (the app never does).
"""

from __future__ import annotations

import hashlib
import threading
import weakref

import torch

__all__ = ["model_identity", "weights_digest"]

_digests: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def weights_digest(module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and bytes, in name order), on any device. Computed
    afresh on every call (run folders fingerprint the weights with it); :func:`model_identity` keeps it per module."""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, t in sorted(module.state_dict().items()):
            if not isinstance(t, torch.Tensor):
                continue
            t = t.detach().to("cpu").contiguous()
            h.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
            try:
                h.update(t.reshape(-1).view(torch.uint8).numpy())
            except (RuntimeError, TypeError):  # a dtype numpy cannot view: hash its values
                h.update(repr(t.tolist()).encode())
    return h.hexdigest()


def _cached_weights_digest(module) -> str:
    with _lock:
        hit = _digests.get(module)
    if hit is not None:
        return hit
    if not hasattr(module, "state_dict"):  # a duck-typed model (tests' closed-form models): the object itself
        return f"object {id(module)}"
    digest = weights_digest(module)
    try:
        with _lock:
            _digests[module] = digest
    except TypeError:  # a module that cannot be weakly referenced: computed again next time
        pass
    return digest


_labels_digests: dict = {}  # the names (a tuple) -> their SHA-1: 5 µs per call instead of 0.15 ms


def _labels_digest(labels) -> str:
    """SHA-1 of the class names, computed once per distinct list of names (the tuple itself is the key, so two
    lists share a digest only when their names are equal)."""
    try:
        key = tuple(labels)
        hit = _labels_digests.get(key)
    except TypeError:  # unhashable names: hash them every time
        key = hit = None
    if hit is not None:
        return hit
    digest = hashlib.sha1("\n".join(map(str, labels)).encode()).hexdigest()
    if key is not None:
        with _lock:
            if len(_labels_digests) > 64:  # loaded models are few; never grow without bound
                _labels_digests.clear()
            _labels_digests[key] = digest
    return digest


def model_identity(model) -> str:
    """A short fingerprint of a loaded model (see the module's text)."""
    labels = getattr(model, "labels", None) or ()
    parts = [type(getattr(model, "module", model)).__name__, str(getattr(model, "name", "")),
             str(getattr(model, "num_classes", "")), str(tuple(getattr(model, "input_size", ()))),
             _labels_digest(labels), _cached_weights_digest(getattr(model, "module", model))]
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]
