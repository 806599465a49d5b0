"""Every cache the app keeps, under one memory budget (``VIT_EXPLAIN_CACHE_MB``).

One :class:`LRU` per kind of value, shared by all sessions (``st.cache_resource``): decoded images and the
model-input images and thumbnails made from them, predictions, captures (a method's model passes), rendered
explanations, curves, and the bytes of the download files. The budget is split between them by
:data:`SHARES`; each store also caps what one session may hold (:data:`PER_SESSION`), so one visitor
uploading many large photos evicts its own entries, not everybody's. Sizes are counted from the arrays,
tensors and images a value holds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np
import streamlit as st
import torch
from PIL import Image

from . import settings

# Share of VIT_EXPLAIN_CACHE_MB per store (sums to 1).
SHARES = {"images": 0.15, "captures": 0.55, "renders": 0.1, "curves": 0.1, "downloads": 0.1}
PER_SESSION = 0.5  # one session may hold at most this share of a store
MIN_STORE = 4 * 2**20


def nbytes(obj, _depth: int = 0) -> int:
    """Approximate memory held by ``obj`` (arrays, tensors, images, bytes; containers and objects walked)."""
    if _depth > 6:
        return 64
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, Image.Image):
        return obj.width * obj.height * max(1, len(obj.getbands())) * (2 if obj.mode in ("I;16", "I", "F") else 1)
    if isinstance(obj, (bytes, bytearray, str)):
        return len(obj)
    if isinstance(obj, dict):
        return sum(nbytes(v, _depth + 1) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(nbytes(v, _depth + 1) for v in obj)
    if hasattr(obj, "__dict__"):
        return sum(nbytes(v, _depth + 1) for v in vars(obj).values())
    return 64


def session_id() -> str:
    """The current Streamlit session's id ('' outside a session, e.g. in library-only code)."""
    try:
        from streamlit.runtime.scriptrunner import get_script_run_ctx

        ctx = get_script_run_ctx(suppress_warning=True)
        return ctx.session_id if ctx is not None else ""
    except Exception:  # noqa: BLE001 - no session: one shared owner
        return ""


class LRU:
    """A thread-safe least-recently-used map bounded by the bytes of its values, overall and per session."""

    def __init__(self, max_bytes: int, per_session: float = PER_SESSION):
        self.max_bytes = int(max_bytes)
        self.max_session_bytes = int(max_bytes * per_session)
        self._items: OrderedDict = OrderedDict()  # key -> (value, size, owner)
        self._owners: dict[str, int] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = self.misses = 0

    def get(self, key):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key][0]
            self.misses += 1
            return None

    def __contains__(self, key) -> bool:
        with self._lock:
            return key in self._items

    def _drop(self, key) -> None:
        _, size, owner = self._items.pop(key)
        self.bytes -= size
        self._owners[owner] -= size
        if self._owners[owner] <= 0:
            del self._owners[owner]

    def put(self, key, value, owner: str | None = None) -> None:
        """Store ``value``; a value larger than the whole store is not kept (the caller still has it)."""
        size = nbytes(value)
        owner = session_id() if owner is None else owner
        with self._lock:
            if key in self._items:
                self._drop(key)
            if size > self.max_bytes:
                return
            self._items[key] = (value, size, owner)
            self.bytes += size
            self._owners[owner] = self._owners.get(owner, 0) + size
            if owner and self._owners[owner] > self.max_session_bytes:  # the session's own oldest go first
                for k in [k for k, (_, _, o) in self._items.items() if o == owner and k != key]:
                    self._drop(k)
                    if self._owners.get(owner, 0) <= self.max_session_bytes:
                        break
            while self.bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def session_bytes(self, owner: str) -> int:
        with self._lock:
            return self._owners.get(owner, 0)

    def __len__(self) -> int:
        return len(self._items)


@st.cache_resource(show_spinner=False)
def stores() -> dict[str, LRU]:
    """The app's caches, created once per process with the budget read from the environment."""
    total = settings.cache_bytes()
    return {name: LRU(max(MIN_STORE, int(total * share))) for name, share in SHARES.items()}


def store(name: str) -> LRU:
    return stores()[name]


def usage() -> dict[str, int]:
    """Bytes held per store, and their sum under "total"."""
    out = {name: s.bytes for name, s in stores().items()}
    out["total"] = sum(out.values())
    return out


def cached(name: str, key, make):
    """``store(name)[key]``, made with ``make()`` and stored when missing."""
    s = store(name)
    value = s.get(key)
    if value is None:
        value = make()
        s.put(key, value)
    return value
