"""Guards run before a model is built or downloaded: is the hub reachable (fail in a second, not after minutes of
retries), is the repository cached, is the architecture within the operator's parameter limit."""

from __future__ import annotations

import os

import torch

from ..errors import ExplainerError, ModelLoadError, WeightsUnavailableError

__all__ = ["hub_reachable", "need_hub", "cached", "max_params_limit", "check_size", "hub_error"]


def hub_error(name: str, e: Exception) -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"could not download the weights of {name!r} from the hub ({type(e).__name__}: {str(e)[:200]}). "
        "If this machine is offline, pass weights=<path to a .safetensors/.pth file or a Hugging Face model "
        "folder> (command line: --weights PATH; app: set VIT_EXPLAIN_WEIGHTS), or weights='random' for an untrained "
        "model.")


_HUB_STATE: dict = {}


def hub_reachable(timeout: float = 3.0, ttl: float = 60.0) -> bool:
    """Whether the model hub (``HF_ENDPOINT``, default huggingface.co) answers a TCP connection within ``timeout``
    seconds; remembered for ``ttl`` seconds. False at once when ``HF_HUB_OFFLINE`` is set."""
    import threading
    import time
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    now = time.monotonic()
    if _HUB_STATE and now - _HUB_STATE["t"] < ttl:
        return _HUB_STATE["ok"]
    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    result = {"ok": False}

    def probe():
        import socket

        try:
            socket.create_connection((host, port), timeout=timeout).close()
            result["ok"] = True
        except OSError:
            pass

    t = threading.Thread(target=probe, daemon=True)  # a hanging name lookup cannot hold the caller past timeout
    t.start()
    t.join(timeout + 0.5)
    _HUB_STATE.update(ok=result["ok"], t=now)
    return result["ok"]


def max_params_limit(value=None) -> int | None:
    """The operator's limit on a model's parameter count: ``value``, else ``VIT_EXPLAIN_MAX_PARAMS`` (a number,
    with an optional K/M/B suffix: ``400M``), else none."""
    raw = value if value is not None else os.environ.get("VIT_EXPLAIN_MAX_PARAMS")
    if raw is None or raw == "":
        return None
    text = str(raw).strip().upper()
    scale = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9}.get(text[-1:], 1)
    try:
        return int(float(text[:-1] if scale != 1 else text) * scale)
    except ValueError:
        raise ModelLoadError(f"VIT_EXPLAIN_MAX_PARAMS must be a number such as 400M; got {raw!r}") from None


def check_size(name: str, build, limit: int | None) -> None:
    """Count the parameters of the architecture built on the meta device (no memory, no download) and refuse a
    model above ``limit`` before anything real is allocated."""
    if limit is None:
        return
    try:
        with torch.device("meta"):
            n = sum(p.numel() for p in build().parameters())
    except ExplainerError:
        raise
    except Exception:  # an architecture that cannot be built on meta: its real build reports the problem
        return
    if n > limit:
        raise ModelLoadError(
            f"{name!r} has {n / 1e6:.0f} M parameters, above this server's limit of {limit / 1e6:.0f} M "
            "(VIT_EXPLAIN_MAX_PARAMS); choose a smaller model or raise the limit")


def need_hub(name: str) -> None:
    """Fail fast (instead of minutes of download retries) when a hub download is needed and the hub is away."""
    if not hub_reachable():
        raise hub_error(name, OSError("the model hub is not reachable from this machine"))


def cached(name: str) -> bool:
    """Whether the hub cache already holds this repository's config (then no network is needed)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(name, "config.json"), str)
    except Exception:
        return False
