"""Every cache the app keeps, under one memory budget (``VIT_EXPLAIN_CACHE_MB``).

One :class:`LRU` per kind of value, shared by all sessions (``st.cache_resource``): decoded images and the
model-input images and thumbnails made from them, predictions, captures (a method's model passes), rendered
explanations, curves, and the bytes of the download files. The budget is split between them by
:data:`SHARES`; each store also caps what one session may hold (:data:`PER_SESSION`), so one visitor
uploading many large photos evicts its own entries, not everybody's. Sizes are counted from the arrays,
tensors and images a value holds (a Pillow RGB image as the 4 bytes per pixel Pillow stores).

Freed memory goes back to the system: glibc keeps what a model pass frees in per-thread arenas (Streamlit
runs every rerun on a new thread), so a crowd's transient autograd buffers stayed resident (1.9 GB with two
sessions). :func:`tune_malloc` caps the arenas at two (``MALLOC_ARENA_MAX``, unless the operator set it) and
every value stored after a computation wakes a background ``malloc_trim(0)`` (at most every
:data:`TRIM_EVERY_S` seconds). And computations take turns (:func:`compute_slot`: one at a time unless
``VIT_EXPLAIN_PARALLEL_PASSES`` says more): on a 2-vCPU Space a second pass in parallel is not faster, but each
holds its own autograd buffers (20-160 MB for the fast methods, 1.1 GB for integrated gradients and SmoothGrad
with DeiT-Tiny), so a crowd's peak memory grew with the number of sessions computing at once. A computation's
native workers (torch's OpenMP threads) run at a higher nice value (:func:`lower_priority`), so the server's
event loop gets a core at once when it wakes (the health check's p95 latency had missed its 250 ms target).
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import streamlit as st
import torch
from PIL import Image

from . import settings

# Share of VIT_EXPLAIN_CACHE_MB per store (sums to 1, so the stores together never exceed the budget).
SHARES = {"images": 0.15, "captures": 0.5, "renders": 0.1, "curves": 0.1, "downloads": 0.1, "sanity": 0.05}
PER_SESSION = 0.5  # one session may hold at most this share of a store
TRIM_EVERY_S = 1.0
COMPUTE_NICE = 10  # nice value of the native compute workers (VIT_EXPLAIN_COMPUTE_NICE), see lower_priority
_PIXEL_BYTES = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}  # others: 4 (Pillow)


def nbytes(obj, _depth: int = 0) -> int:
    """Approximate memory held by ``obj`` (arrays, tensors, images, bytes; containers and objects walked)."""
    if _depth > 6:
        return 64
    if isinstance(obj, torch.Tensor):
        return obj.element_size() * obj.nelement()
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if isinstance(obj, Image.Image):
        return obj.width * obj.height * _PIXEL_BYTES.get(obj.mode, 4)
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


# -- memory back to the system (glibc) -----------------------------------------------------------------------
M_ARENA_MAX = -8  # mallopt parameter numbers (malloc.h)
ARENAS = 2


def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        return libc if hasattr(libc, "malloc_trim") and hasattr(libc, "mallopt") else None
    except OSError:  # not glibc (macOS, musl): nothing to tune
        return None


_LIBC = _libc()


def tune_malloc() -> bool:
    """At most :data:`ARENAS` malloc arenas from now on, unless ``MALLOC_ARENA_MAX`` was set (best set
    before the process starts, as ``make run`` and the Docker image do). False where there is no glibc."""
    if _LIBC is None:
        return False
    if not os.environ.get("MALLOC_ARENA_MAX", "").strip():
        _LIBC.mallopt(M_ARENA_MAX, ARENAS)
    return True


class _Trimmer(threading.Thread):
    """Calls ``malloc_trim(0)`` when woken (after a computed value was stored), at most every
    :data:`TRIM_EVERY_S` seconds, off the request's thread."""

    def __init__(self):
        super().__init__(name="vit-explain-malloc-trim", daemon=True)
        self.wake = threading.Event()
        self.trims = 0

    def run(self) -> None:
        while True:
            self.wake.wait()
            self.wake.clear()
            _LIBC.malloc_trim(0)
            self.trims += 1
            time.sleep(TRIM_EVERY_S)


_trimmer: _Trimmer | None = None
_trimmer_lock = threading.Lock()


def release_memory() -> None:
    """Ask for the memory freed by a computation to be returned to the system soon (no-op without glibc)."""
    global _trimmer
    if _LIBC is None:
        return
    with _trimmer_lock:
        if _trimmer is None:
            _trimmer = _Trimmer()
            _trimmer.start()
    _trimmer.wake.set()


tune_malloc()


# -- computations take turns -------------------------------------------------------------------------------
_slots: threading.BoundedSemaphore | None = None
_held = threading.local()


def parallel_passes() -> int:
    """How many computations may run at once (``VIT_EXPLAIN_PARALLEL_PASSES``, default 1)."""
    try:
        return max(1, int(os.environ.get("VIT_EXPLAIN_PARALLEL_PASSES", "1")))
    except ValueError:
        return 1


def compute_nice() -> int:
    """The nice value of the native compute workers (``VIT_EXPLAIN_COMPUTE_NICE``, 0-19, default
    :data:`COMPUTE_NICE`; 0 leaves them at the server's own priority)."""
    try:
        return min(19, max(0, int(os.environ.get("VIT_EXPLAIN_COMPUTE_NICE", str(COMPUTE_NICE)))))
    except ValueError:
        return COMPUTE_NICE


def native_thread_ids() -> list[int]:
    """This process's threads that Python did not start (torch's OpenMP workers, BLAS pools), Linux only."""
    python = {t.native_id for t in threading.enumerate()}
    try:
        return [int(t) for t in os.listdir("/proc/self/task") if int(t) not in python]
    except OSError:
        return []


def lower_priority() -> None:
    """Raise the nice value of the native compute workers (the calling thread's OpenMP threads, made here if
    missing; BLAS pools) to :func:`compute_nice` (an unprivileged process may only raise its threads' values).
    They never hold the GIL: the event loop (main thread) takes one of their cores as soon as it wakes. Python
    threads keep their priority: a niced one holding the GIL stalled the event loop for 1.2 s under load."""
    nice = compute_nice()
    if nice <= 0 or not hasattr(os, "setpriority") or threading.current_thread() is threading.main_thread():
        return
    torch.empty(1 << 17).fill_(0.0)  # a parallel region: this thread's OpenMP workers exist from here on
    for tid in native_thread_ids():
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
        except OSError:  # the thread ended meanwhile
            continue


@contextmanager
def compute_slot():
    """Hold one of the :func:`parallel_passes` slots while computing (re-entrant within a thread), at a lower
    scheduling priority than the event loop (:func:`lower_priority`)."""
    global _slots
    if getattr(_held, "depth", 0):
        _held.depth += 1
        try:
            yield
        finally:
            _held.depth -= 1
        return
    with _trimmer_lock:
        if _slots is None:
            _slots = threading.BoundedSemaphore(parallel_passes())
    with _slots:
        lower_priority()
        _held.depth = 1
        try:
            yield
        finally:
            _held.depth = 0


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
        """Store ``value``; a value larger than the whole store is not kept (the caller still has it). A value
        is stored after a computation: what that computation (and any eviction) freed goes back to the system."""
        self._put(key, value, owner)
        release_memory()

    def _put(self, key, value, owner: str | None) -> None:
        size = nbytes(value)
        owner = session_id() if owner is None else owner
        with self._lock:
            if key in self._items:
                self._drop(key)
            if size > self.max_bytes:
                return
            self._items[key] = (value, size, owner)
            self._on_store(key, value)
            self.bytes += size
            self._owners[owner] = self._owners.get(owner, 0) + size
            if owner and self._owners[owner] > self.max_session_bytes:  # the session's own oldest go first
                for k in [k for k, (_, _, o) in self._items.items() if o == owner and k != key]:
                    self._drop(k)
                    if self._owners.get(owner, 0) <= self.max_session_bytes:
                        break
            while self.bytes > self.max_bytes and len(self._items) > 1:
                self._drop(next(iter(self._items)))

    def _on_store(self, key, value) -> None:
        """Called (under the lock) when ``value`` is stored."""

    def session_bytes(self, owner: str) -> int:
        with self._lock:
            return self._owners.get(owner, 0)

    def __len__(self) -> int:
        return len(self._items)


class DownloadStore(LRU):
    """The "downloads" store: values are ``{file name: (bytes, mime type)}``. While a value is stored its files
    stay registered in Streamlit's media file manager under a session of their own (:data:`PIN_SESSION`), so
    a download button on screen keeps its file while its session reruns: Streamlit drops a session's
    references when a rerun starts and deletes unreferenced download files at the second sweep after that
    (each session's run ends with one); under a crowd that happened before the rerun re-registered them and
    the click failed (issue 16). An evicted value's files are unpinned (then swept as usual)."""

    PIN_SESSION = "vit-explain-studio-downloads"

    @staticmethod
    def _media():
        from streamlit import runtime

        return runtime.get_instance().media_file_mgr if runtime.exists() else None

    def _pin(self, key, value, on: bool) -> None:
        mgr = self._media()
        if mgr is None or not isinstance(value, dict):
            return
        from streamlit.runtime.media_file_manager import MediaFileKind, MediaFileMetadata

        with mgr._lock:
            pins = mgr._files_by_session_and_coord[self.PIN_SESSION]
            for name, (data, mime) in value.items():
                coord = f"{hash(key)}/{name}"
                if on:
                    file_id = mgr._storage.load_and_get_id(data, mime, MediaFileKind.DOWNLOADABLE, name)
                    mgr._file_metadata[file_id] = MediaFileMetadata(kind=MediaFileKind.DOWNLOADABLE)
                    pins[coord] = file_id
                else:
                    pins.pop(coord, None)

    def _on_store(self, key, value) -> None:
        self._pin(key, value, True)

    def _drop(self, key) -> None:
        self._pin(key, self._items[key][0], False)
        super()._drop(key)


@st.cache_resource(show_spinner=False)
def stores() -> dict[str, LRU]:
    """The app's caches, created once per process with the budget read from the environment."""
    total = settings.cache_bytes()
    return {name: (DownloadStore if name == "downloads" else LRU)(int(total * share)) for name, share in SHARES.items()}


def store(name: str) -> LRU:
    return stores()[name]


def usage() -> dict[str, int]:
    """Bytes held per store, and their sum under "total"."""
    out = {name: s.bytes for name, s in stores().items()}
    out["total"] = sum(out.values())
    return out


def cached(name: str, key, make):
    """``store(name)[key]``, made with ``make()`` (in a :func:`compute_slot`) and stored when missing."""
    s = store(name)
    value = s.get(key)
    if value is None:
        with compute_slot():
            value = make()
        s.put(key, value)
    return value
