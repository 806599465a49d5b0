"""The evaluate command sharded on Ray: one actor per worker holds the model; work items are chunks of
(image, method) pairs; rows stream back to the driver, which writes the same files as the serial run.

    with RayWorkers("deit_tiny_patch16_224", weights="...", address="local:4") as workers:
        run_evaluation(workers, "val/", "out/", methods="all")

Faults are left to Ray: a worker process that dies is restarted (``max_restarts``) and the chunks it held are
run again (``max_task_retries``); a method that raises is recorded as a row with its error inside the worker.
Only this module imports ray, and only the ``--ray`` path imports this module.
"""

from __future__ import annotations

import json
import math
import os
import site
import sys
from pathlib import Path

from ..errors import ExplainerError, InvalidParameterError, ModelLoadError
from ..run_folder import differences
from .core import evaluate_item, read_image_bytes


class EvaluationWorker:
    """The actor: loads the model once (per process: a restarted worker loads it again) and runs chunks."""

    def __init__(self, model: str, weights, device: str, threads: int):
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.model, self.error = None, None
        try:
            from ..models import load_model

            self.model = load_model(model, weights=weights, device=device)
        except Exception as e:  # reported by ready(): an actor whose constructor raises is not restarted
            self.error = e

    def ready(self) -> dict:
        import socket

        node = {"node": socket.gethostname(), "pid": os.getpid()}
        try:
            import ray

            node["node"] += f" ({ray.util.get_node_ip_address()})"
        except Exception:  # noqa: BLE001 - outside Ray (tests): the host name alone
            pass
        if self.error is not None:
            err = self.error
            return {**node, "error": (type(err).__name__, str(err), isinstance(err, ExplainerError))}
        from ..run_folder import model_fingerprint

        m = self.model
        return {**node, "error": None, "name": m.name, "weights_path": str(m.weights_path or ""),
                "device": str(m.device), "fingerprint": model_fingerprint(m)}

    def pid(self) -> int:
        return os.getpid()

    def run(self, items: list[tuple], params: dict) -> list[dict]:
        """items: [(name, image bytes or None, read error, methods, box entry)] -> rows (never raises)."""
        rows: list[dict] = []
        for name, data, err, methods, entry in items:
            rows += evaluate_item(self.model, name, data, err, methods, entry, **params)
        return rows


def parse_address(spec: str) -> tuple[str, int | None]:
    """"local" / "local:N" / "auto" / an address -> (mode or address, N)."""
    spec = (spec or "local").strip()
    if spec == "local" or spec.startswith("local:"):
        n = spec[6:]
        if n and (not n.isdigit() or int(n) < 1):
            raise InvalidParameterError(f"--ray {spec!r}: expected local or local:N with N >= 1 workers")
        return "local", int(n) if n else None
    return spec, None


def _runtime_env(local: bool) -> dict | None:
    """Make the workers import this checkout's ``explainers`` when it is not installed in site-packages:
    through PYTHONPATH on this machine, uploaded by Ray (``py_modules``) to the nodes of a remote cluster."""
    pkg = Path(__file__).resolve().parents[1]
    installed = [Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages()]]
    if any(pkg.is_relative_to(p) for p in installed):
        return None
    if local:
        path = os.pathsep.join(p for p in (str(pkg.parent), os.environ.get("PYTHONPATH", "")) if p)
        return {"env_vars": {"PYTHONPATH": path}}
    return {"py_modules": [str(pkg)]}


class RayWorkers:
    """A pool of Ray actors each holding the model; pass it to ``run_evaluation`` in place of a model.

    address: ``local`` (a Ray instance on this machine with as many workers as its CPUs / GPUs allow),
        ``local:N`` (N workers), ``auto`` (the cluster this machine belongs to) or a cluster address
        (``ray://head:10001``, ``head:6379``); a Ray already initialised in this process is used as it is.
    workers: number of actors (default: N of ``local:N``, else as many as the cluster's resources fit).
    cpus_per_worker / gpus_per_worker: Ray resources per actor (fractions allowed: 0.5 GPU puts two workers on
        one GPU); a worker uses max(1, floor(cpus_per_worker)) torch threads.
    retries: Ray's ``max_task_retries`` (a chunk whose worker died is run again up to this many times);
        actors are restarted without limit (``max_restarts=-1``).
    """

    def __init__(self, model: str, weights=None, *, address: str = "local", workers: int | None = None,
                 cpus_per_worker: float = 1.0, gpus_per_worker: float = 0.0, device: str = "auto",
                 retries: int = 3, in_flight: int = 2):
        try:
            import ray
        except ImportError as e:
            raise InvalidParameterError(f"--ray needs the ray package: {sys.executable} -m pip install ray") from e

        if not cpus_per_worker > 0 or gpus_per_worker < 0:
            raise InvalidParameterError("--cpus-per-worker must be > 0 and --gpus-per-worker >= 0")
        if workers is not None and workers < 1:
            raise InvalidParameterError("--workers must be at least 1")
        mode, n_local = parse_address(address)
        self.actors: list = []
        self._started = False
        self.in_flight = max(1, int(in_flight))
        n = workers or n_local
        env = None
        if not ray.is_initialized():
            env = _runtime_env(mode == "local")
            kw = {"runtime_env": env} if env else {}
            try:
                if mode == "local":
                    cpus = math.ceil(n * cpus_per_worker) if n else None
                    ray.init(address="local", num_cpus=cpus, include_dashboard=False, **kw)
                else:
                    ray.init(address=mode, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise InvalidParameterError(f"--ray {address!r}: cannot start or join the Ray cluster ({e})") from e
            self._started = True
            env = None  # the job's runtime environment already reaches every worker
        else:
            env = _runtime_env(True)
        try:
            self._start(ray, model, weights, n, cpus_per_worker, gpus_per_worker, device, retries, env)
        except BaseException:
            self.close()
            raise

    def _start(self, ray, model, weights, n, cpw, gpw, device, retries, env):
        res = ray.cluster_resources()
        cpus, gpus = float(res.get("CPU", 0)), float(res.get("GPU", 0))
        if gpw > 0 and gpus < gpw:
            raise InvalidParameterError(f"--gpus-per-worker {gpw}: the Ray cluster has {gpus:g} GPUs")
        fit = int(cpus // cpw + 1e-9)
        if gpw > 0:
            fit = min(fit, int(gpus // gpw + 1e-9))
        n = n or max(1, fit)
        if n * cpw > cpus + 1e-9 or n * gpw > gpus + 1e-9:
            raise InvalidParameterError(
                f"{n} workers x ({cpw:g} CPU, {gpw:g} GPU) do not fit the Ray cluster ({cpus:g} CPUs, {gpus:g} "
                f"GPUs); ask for fewer --workers or less per worker")
        if device == "auto":
            device = "cuda" if gpw > 0 else "cpu"
        opts = {"num_cpus": cpw, "num_gpus": gpw, "max_restarts": -1, "max_task_retries": max(0, int(retries))}
        if env:
            opts["runtime_env"] = env
        actor = ray.remote(EvaluationWorker)
        weights = resolve_weights(weights)
        self.actors = [actor.options(**opts).remote(model, weights, device, int(cpw)) for _ in range(n)]
        infos = ray.get([a.ready.remote() for a in self.actors])
        for info in infos:
            if info["error"] is not None:
                kind, msg, ours = info["error"]
                if weights is not None and weights != "random" and "does not exist" in msg:
                    raise ModelLoadError(f"the Ray worker on node {info['node']} has no weights at {weights}: copy "
                                         "them there (the same path on every node) or put them on a shared "
                                         "filesystem")
                if ours:
                    raise _rebuild(kind, f"on Ray node {info['node']}: {msg}")
                raise ModelLoadError(f"a Ray worker on node {info['node']} could not load the model ({kind}: {msg})")
        prints = {}
        for info in infos:
            prints.setdefault(json.dumps(info["fingerprint"], sort_keys=True), []).append(info["node"])
        if len(prints) > 1:
            (a, na), (b, nb) = list(prints.items())[:2]
            diff = differences(json.loads(a), json.loads(b))
            raise ModelLoadError(f"the Ray workers loaded different models: on {na[0]} and on {nb[0]} "
                                 f"({'; '.join(diff)}); give every node the same weights file")
        self.infos = infos
        self.name, self.weights_path = infos[0]["name"], infos[0]["weights_path"]
        self.run_fingerprint = infos[0]["fingerprint"]
        self.num_workers = n

    def run_chunks(self, chunks: list[list[tuple]], params: dict, sink) -> list[tuple]:
        """Run the chunks on the actors (``in_flight`` queued per actor), call ``sink(rows)`` as each finishes
        (returning False stops). Returns [(image, method, reason)] for pairs lost with a worker after Ray's
        retries (not recorded, so a rerun retries them)."""
        import ray
        from ray.exceptions import ActorDiedError, RayActorError

        queue = iter(chunks)
        pending: dict = {}
        dead: set[int] = set()
        failed: list[tuple] = []

        def submit(i: int) -> None:
            chunk = next(queue, None)
            if chunk is not None:
                items = [(name, *read_image_bytes(path), methods, entry) for name, path, methods, entry in chunk]
                pending[self.actors[i].run.remote(items, params)] = (chunk, i)

        try:
            for _ in range(self.in_flight):
                for i in range(len(self.actors)):
                    submit(i)
            stop = False
            while pending:
                (ref,), _ = ray.wait(list(pending), num_returns=1)
                chunk, i = pending.pop(ref)
                try:
                    rows = ray.get(ref)
                except RayActorError as e:
                    reason = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                    failed += [(name, m, reason) for name, _, ms, _ in chunk for m in ms]
                    if isinstance(e, ActorDiedError):  # dead for good (not restartable): no more work for it
                        dead.add(i)
                    rows = []
                if rows and sink(rows) is False:
                    stop = True
                if not stop and i not in dead:
                    submit(i)
            if not stop:
                failed += [(name, m, "no live Ray worker left") for chunk in queue for name, _, ms, _ in chunk
                           for m in ms]
        finally:
            for ref in pending:
                try:
                    ray.cancel(ref)
                except Exception:  # already finished, or its actor is gone
                    pass
        return failed

    def close(self) -> None:
        """Stop the actors (and the local Ray instance this pool started)."""
        import ray

        if ray.is_initialized():
            for a in self.actors:
                ray.kill(a, no_restart=True)
            if self._started:
                ray.shutdown()
        self.actors = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def resolve_weights(weights) -> str | None:
    """A local weights path as an absolute path, resolved on the driver: the workers run in other folders (and on
    other nodes), where a relative path would name something else."""
    if weights is None or str(weights) == "random":
        return None if weights is None else "random"
    path = Path(weights).expanduser()
    if not path.exists():
        raise ModelLoadError(f"weights path {str(weights)!r} does not exist (on this machine, the Ray driver)")
    return str(path.resolve())


def _rebuild(kind: str, msg: str) -> ExplainerError:
    from .. import errors

    cls = getattr(errors, kind, None)
    return cls(msg) if isinstance(cls, type) and issubclass(cls, ExplainerError) else ModelLoadError(msg)

