"""Many users, one model: 8 threads explain different images with different methods on ONE shared model
object and each gets exactly the single-threaded result; the model is left as it was (no hooks, same
``fused_attn`` flags, same weights, eval mode). And every registered method is deterministic: the same
input and seed give the same map, whatever the global random state.

Issue 6 ("Robustness"). New methods are covered automatically (the tests iterate over ``METHODS``); the
many-pass mask methods run with their lightest parameters to keep the cost bounded.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from conftest import SAMPLES
from PIL import Image

import explainers
from explainers import METHODS

THREADS = 8


# captum's GradientSHAP draws from torch's and numpy's global generators (seeded under a lock): another thread that
# reseeds or draws from them at the same time (as run() below does) changes its samples. Known limitation, stated in
# docs/methods/baselines.md; its maps are not compared across threads (the shared model's state after it still is).
# LIME and KernelSHAP draw from a private generator and are compared like every other method.
GLOBAL_RNG = {"gradient_shap"}


def light_params(method: str) -> dict:
    """Parameters that keep the many-pass methods cheap (still a real run of the method)."""
    names = {p.name for p in METHODS[method].params}
    out = {}
    if "masks_layer" in names:
        out["masks_layer"] = 1
    if "distance_threshold" in names:  # ViT-CX: fewer, coarser clusters = fewer masked passes
        out["distance_threshold"] = 0.5
    return out


def _images() -> list[Image.Image]:
    paths = sorted(SAMPLES.glob("*.png"))
    assert len(paths) >= 4, f"expected sample photos in {SAMPLES}"
    return [Image.open(p).convert("RGB") for p in paths]


def _tasks(n_images: int) -> list[tuple[str, int]]:
    """(method, image index): every method once, padded to at least THREADS tasks; neighbours differ."""
    methods = list(METHODS)
    n = max(THREADS, len(methods))
    return [(methods[i % len(methods)], i % n_images) for i in range(n)]


def model_state(model) -> dict:
    """Everything a method could leave changed on the shared model."""
    mods = dict(model.module.named_modules())
    hooks = {name: [len(getattr(m, attr)) for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                                                         "_backward_pre_hooks")]
             for name, m in mods.items()}
    g = torch.nn.modules.module
    global_hooks = [len(getattr(g, a)) for a in ("_global_forward_hooks", "_global_forward_pre_hooks",
                                                 "_global_backward_hooks", "_global_backward_pre_hooks")]
    params = dict(model.module.named_parameters())
    return {
        "hooks": hooks,
        "global_hooks": global_hooks,
        "tensor_hooks": {n: bool(p._backward_hooks) for n, p in params.items()},
        "fused_attn": {n: m.fused_attn for n, m in mods.items() if hasattr(m, "fused_attn")},
        "training": {n: m.training for n, m in mods.items()},
        "requires_grad": {n: p.requires_grad for n, p in params.items()},
        "weights": {n: p.detach().clone() for n, p in params.items()},
        "grads": {n: p.grad is None for n, p in params.items()},
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert all(sum(v) == 0 for v in after["hooks"].values()), {k: v for k, v in after["hooks"].items() if sum(v)}
    assert after["global_hooks"] == [0, 0, 0, 0]
    assert not any(after["tensor_hooks"].values())
    assert after["fused_attn"] == before["fused_attn"]
    assert after["training"] == before["training"] and not any(after["training"].values())
    assert after["requires_grad"] == before["requires_grad"]
    assert all(after["grads"].values()), "a method left .grad on the model's parameters"
    for n, w in before["weights"].items():
        assert torch.equal(w, after["weights"][n]), f"weights of {n} changed"


def run(model, image, method: str, seed: int):
    torch.manual_seed(seed)  # a method must not depend on the global RNG: results are compared across seeds
    np.random.seed(seed)
    exp = explainers.explain(model, image, method, **light_params(method))
    return exp.target, exp.probability, exp.patch_map, exp.heatmap


@pytest.fixture(scope="module")
def images():
    return _images()


@pytest.fixture(scope="module")
def single_threaded(deit_tiny, images):
    """Reference results, one at a time, with global RNG seeded 1."""
    return {task: run(deit_tiny, images[task[1]], task[0], seed=1) for task in _tasks(len(images))}


def test_fused_attention_is_on_in_the_shared_model(deit_tiny):
    """The check below is meaningful only if timm's flag exists (the model's own fast path is used)."""
    flags = [m.fused_attn for m in deit_tiny.module.modules() if hasattr(m, "fused_attn")]
    assert len(flags) == deit_tiny.num_layers


def test_eight_threads_one_model_same_results(deit_tiny, images, single_threaded):
    before = model_state(deit_tiny)
    tasks = list(single_threaded)
    start = threading.Barrier(THREADS)
    seen_threads = set()

    def work(task):
        method, idx = task
        if len(seen_threads) < THREADS:
            seen_threads.add(threading.get_ident())
            try:
                start.wait(timeout=60)  # the first THREADS tasks start together
            except threading.BrokenBarrierError:
                pass
        return task, run(deit_tiny, images[idx].copy(), method, seed=1000 + idx)

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        results = dict(pool.map(work, tasks))
    assert len(seen_threads) == THREADS, "the tasks did not run on 8 threads"
    for task, (target, prob, patch_map, heatmap) in results.items():
        ref_target, ref_prob, ref_map, ref_heat = single_threaded[task]
        assert target == ref_target, task
        assert prob == pytest.approx(ref_prob, rel=1e-5, abs=1e-7), task
        if task[0] in GLOBAL_RNG:  # known limitation (docs/methods/baselines.md): not reproducible under threads
            continue
        np.testing.assert_allclose(patch_map, ref_map, rtol=1e-5, atol=1e-7, err_msg=str(task))
        np.testing.assert_allclose(heatmap, ref_heat, rtol=1e-4, atol=1e-6, err_msg=str(task))
    assert_same_state(before, model_state(deit_tiny))


def test_results_of_different_images_differ(single_threaded):
    """Guards the test above: had threads mixed up inputs, equal maps could hide it only if the images
    gave equal maps; they do not."""
    by_method: dict[str, list[np.ndarray]] = {}
    for (method, _), (_, _, patch_map, _) in single_threaded.items():
        by_method.setdefault(method, []).append(patch_map)
    for method, maps in by_method.items():
        for i in range(len(maps)):
            for j in range(i + 1, len(maps)):
                assert not np.allclose(maps[i], maps[j]), method


def test_model_is_unchanged_after_a_failing_call(deit_tiny, images):
    """A call that raises halfway (here: a cancelling progress callback, or a bad target after the forward)
    leaves no hooks or flags behind either."""
    before = model_state(deit_tiny)
    for method in METHODS:
        with pytest.raises(explainers.ExplainerError):
            explainers.explain(deit_tiny, images[0], method, target=[1, 2], **light_params(method))
        if METHODS[method].family != "perturbation":
            continue
        try:  # the long methods report progress; cancelling stops them at the first report
            one_per_batch = {"batch_size": 1} if "batch_size" in {p.name for p in METHODS[method].params} else {}
            explainers.explain(deit_tiny, images[0], method, progress=lambda done, total: False,
                               **light_params(method), **one_per_batch)
        except explainers.Cancelled:
            pass
    assert_same_state(before, model_state(deit_tiny))


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_is_deterministic(deit_tiny, images, single_threaded, method):
    """Same input and parameters (seed included) -> identical maps, even with a different global RNG state."""
    task = next(t for t in single_threaded if t[0] == method)
    again = run(deit_tiny, images[task[1]], method, seed=2)
    ref = single_threaded[task]
    assert again[0] == ref[0]
    np.testing.assert_array_equal(again[2], ref[2])
    np.testing.assert_array_equal(again[3], ref[3])
    if any(p.name == "seed" for p in METHODS[method].params):
        other = explainers.explain(deit_tiny, images[task[1]], method, seed=12345, **light_params(method))
        assert not np.array_equal(other.patch_map, ref[2]), "the seed parameter has no effect"
