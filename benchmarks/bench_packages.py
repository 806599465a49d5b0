"""Each method that an independent package also computes, timed side by side with that package called directly on
the same DeiT-Tiny weights, image and class (issue 26): package time ÷ our time (above 1: we are faster).

* grad-cam (``pytorch_grad_cam``): Grad-CAM, Grad-CAM++, LayerCAM, EigenCAM, Score-CAM with the package's ViT
  recipe (target layer ``blocks[-1].norm1``, class token dropped) on a copy of the timm model;
* torchcam: LeGrad on torchvision's ViT holding the same tensors (``pooling=mean``, as torchcam);
* captum: occlusion (probability of the class, one patch per window), integrated gradients (50 steps), saliency,
  and the baselines of issue 26 (gradient x input, guided backprop, DeepLIFT, GradientSHAP, LIME, KernelSHAP),
  each captum class called on the timm module itself, with our method's settings (samples, baselines, seed);
* lxt: AttnLRP on torchvision's ViT with lxt's efficient rules patched in (as tests/test_attnlrp.py runs it).

captum's ``GuidedBackprop`` and ``DeepLift`` hook ReLU-type modules only: on the timm ViT (GELU) they return the
plain gradient and gradient x (input - baseline); ours apply their rules to GELU too (more work, same passes).
The rows ``guided_backprop:relu`` and ``deeplift:relu`` time both on the ReLU twin of the model (the same weights,
``nn.ReLU`` in the MLPs), where captum applies its rules in full: the same work on both sides.
Timings are interleaved (package, ours, package, ours, ... after one warm-up each); the ratio is printed of the
medians and of the minima (on a machine shared with other work the minimum is the steadier estimate of the cost).
OpenBLAS runs on one thread (``OPENBLAS_NUM_THREADS=1`` unless set): pytorch-grad-cam's EigenCAM calls numpy's SVD,
whose OpenBLAS threads keep spinning after it returns and slow whichever call runs next (EigenCAM on 2 torch
threads: package 47 ms and ours 52 ms medians with them, 27 and 26 ms without).

    python benchmarks/bench_packages.py [--methods saliency,attnlrp] [--repeats 3] [--threads 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads OpenBLAS (see the module docstring)

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(Path(__file__).resolve().parent)]

from timing import add_timing_options, interleaved_times, setup_threads  # noqa: E402

import explainers  # noqa: E402

CAMS = {"gradcam": "GradCAM", "gradcam_pp": "GradCAMPlusPlus", "layercam": "LayerCAM", "eigencam": "EigenCAM",
        "scorecam": "ScoreCAM"}
# our parameters for each row (the package gets the same settings)
PARAMS = {"eigencam": {"sign_correction": False}, "legrad": {"pooling": "mean"}, "occlusion": {},
          "gradient_shap": {"samples": 32, "seed": 0}, "lime": {"samples": 256, "seed": 0},
          "kernel_shap": {"samples": 256, "seed": 0}, "deeplift": {"baseline": "zero"}}
ROWS = [*CAMS, "legrad", "occlusion", "integrated_gradients", "saliency", "attnlrp", "gradient_x_input",
        "guided_backprop", "deeplift", "guided_backprop:relu", "deeplift:relu", "gradient_shap", "lime", "kernel_shap"]


def relu_twin(model):
    """The model with ``nn.ReLU`` in place of its MLPs' GELU, holding the same weights (a timm DeiT)."""
    import timm

    net = timm.create_model("deit_tiny_patch16_224", pretrained=False, act_layer=torch.nn.ReLU)
    net.load_state_dict(model.module.state_dict())
    return explainers.models.wrap_timm(net.eval(), "deit_tiny_patch16_224 (ReLU)", device=model.device)


def package_call(name: str, model, x: torch.Tensor, cls: int):
    """A function running the package's own computation of ``name`` (its setup included, as a user runs it)."""
    import captum.attr as ca

    net = model.module
    base_of = explainers.metrics.baselines.make_baseline
    bs = 64
    if name in CAMS:
        import pytorch_grad_cam
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        cnet, P = copy.deepcopy(net), model.num_prefix_tokens
        gh, gw = model.grid(x)

        def reshape(t):
            return t[:, P:].reshape(t.shape[0], gh, gw, t.shape[-1]).permute(0, 3, 1, 2)

        def run():
            with getattr(pytorch_grad_cam, CAMS[name])(model=cnet, target_layers=[cnet.blocks[-1].norm1],
                                                       reshape_transform=reshape) as cam:
                cam.batch_size = bs
                return cam(input_tensor=x, targets=[ClassifierOutputTarget(cls)])
        return run
    if name == "legrad":
        from test_methods_cam import torchvision_copy
        from torchcam.methods import LeGrad

        tv = torchvision_copy(model)

        def run():
            with LeGrad(tv, list(tv.encoder.layers)) as extractor:
                return extractor(cls, tv(x))
        return run
    if name == "attnlrp":
        from test_attnlrp import _lxt_relevance, _torchvision_deit

        tv = _torchvision_deit()
        return lambda: _lxt_relevance(tv, x, torch.tensor([cls]), True)
    xg = x.detach().clone().requires_grad_(True)
    if name == "saliency":
        return lambda: ca.Saliency(net).attribute(xg, target=cls, abs=True)
    if name == "gradient_x_input":
        return lambda: ca.InputXGradient(net).attribute(xg, target=cls)
    if name == "guided_backprop":
        return lambda: ca.GuidedBackprop(net).attribute(xg, target=cls)
    if name == "deeplift":
        return lambda: ca.DeepLift(net).attribute(xg, baselines=base_of(model, x, "zero"), target=cls)
    if name == "integrated_gradients":
        return lambda: ca.IntegratedGradients(net).attribute(xg, baselines=base_of(model, x, "zero"), target=cls,
                                                             n_steps=50, internal_batch_size=bs)
    if name == "occlusion":
        def prob(t):
            return net(t).softmax(-1)

        def run():
            with torch.no_grad():
                return ca.Occlusion(prob).attribute(x, sliding_window_shapes=(3, 16, 16), strides=(3, 16, 16),
                                                    baselines=base_of(model, x, "zero"), target=cls,
                                                    perturbations_per_eval=bs)
        return run
    from explainers.methods.captum_sampling import lime_kernel, patch_feature_mask, shap_baselines

    mask, blur = patch_feature_mask(model, x), base_of(model, x, "blur")
    if name == "gradient_shap":
        base = shap_baselines(model, x, "references", 0)
        return lambda: ca.GradientShap(net).attribute(xg, baselines=base, target=cls, n_samples=32)
    if name == "lime":
        from captum._utils.models.linear_model import SkLearnRidge

        def run():
            with torch.no_grad():
                return ca.Lime(net, SkLearnRidge(alpha=1.0), lime_kernel(0.25)).attribute(
                    x, baselines=blur, target=cls, feature_mask=mask, n_samples=256, perturbations_per_eval=bs)
        return run
    if name == "kernel_shap":
        def run():
            with torch.no_grad():
                return ca.KernelShap(net).attribute(x, baselines=blur, target=cls, feature_mask=mask, n_samples=256,
                                                    perturbations_per_eval=bs)
        return run
    raise KeyError(name)


def interleaved_stats(fa, fb, repeats: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(median, min) seconds of ``fa`` and of ``fb``, run alternately after one warm-up each."""
    import statistics

    ta, tb = interleaved_times(fa, fb, repeats)
    return (statistics.median(ta), min(ta)), (statistics.median(tb), min(tb))


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--methods", default=",".join(ROWS))
    ap.add_argument("--weights", default=str(ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224"))
    add_timing_options(ap, repeats=3)
    args = ap.parse_args(argv)
    machine = setup_threads(args)
    model = explainers.load_model("deit_tiny_patch16_224", weights=args.weights, device=args.device)
    from PIL import Image

    x = model.preprocess(Image.open(ROOT / "vit_explain_studio" / "assets" / "samples" / "both.png"))
    with torch.inference_mode():
        cls = int(model.forward(x).argmax())
    print(f"DeiT-Tiny on {model.device}, class {cls}, torch {torch.__version__}, {machine}")
    print(f"{'method':22s} {'package s':>10s} {'ours s':>8s} {'÷ (medians)':>12s} | {'package min':>11s} "
          f"{'ours min':>9s} {'÷ (minima)':>11s}")
    rows = []
    for row in args.methods.split(","):
        name, _, twin = row.partition(":")
        params, on = PARAMS.get(name, {}), relu_twin(model) if twin == "relu" else model

        def ours(name=name, params=params, on=on):
            return explainers.explain(on, x, name, target=cls, **params)

        pkg = package_call(name, on, x, cls)
        heavy = name in ("scorecam", "lime", "kernel_shap", "occlusion", "integrated_gradients", "gradient_shap")
        (p_med, p_min), (o_med, o_min) = interleaved_stats(pkg, ours, max(1, args.repeats // 2) if heavy
                                                           else args.repeats)
        rows.append({"method": row, "package_s": p_med, "ours_s": o_med, "ratio": p_med / o_med,
                     "ratio_min": p_min / o_min})
        print(f"{row:22s} {p_med:10.3f} {o_med:8.3f} {p_med / o_med:12.2f} | {p_min:11.3f} {o_min:9.3f} "
              f"{p_min / o_min:11.2f}", flush=True)
    return rows


if __name__ == "__main__":
    main()
