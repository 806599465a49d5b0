"""Time every registered method on any supported model (DeiT-Tiny on the CPU by default) against the model's
own passes, and check each against its speed target (issues 2, 3 and 12).

Prints, per method: median seconds per image (single image, and batch of 16 divided by 16), the ratio to one
forward pass and to one forward+backward pass of the same batch size, the number of images pushed through
the model (``passes``), time ÷ (passes × one batched forward per image), and the ratio the method's target is
stated in, with the target:

* ``f+b``: time ÷ one forward+backward of the same image (gradient and attention methods);
* ``fwd``: time ÷ one forward (attention-only methods);
* ``passes``: time ÷ (passes × one batched forward per image) (mask methods: ViT-CX, GradMask, RISE,
  Score-CAM, occlusion, LIME, KernelSHAP: the masked forwards themselves are the floor; LIME and KernelSHAP also
  fit their surrogate regression, hence 1.5);
* ``steps``: time ÷ (steps or samples × one batched forward+backward per image) (integrated gradients,
  SmoothGrad, GradientSHAP);
* ``partial``: time ÷ (forward equivalents × one batched forward per image), where the forward equivalents count
  a pass through k of the L blocks as k / L of a forward (ViT-ReciproCAM: 1 + patches × 2 / L);
* ``tokens``: time ÷ (masks × one batched forward of the token-dropped sequence per input) (TIS,
  similarity graph).

    python benchmarks/bench_methods.py [--model NAME] [--weights PATH|random] [--num-classes N] [--device cpu]
        [--repeats 5]
        [--methods a,b] [--param rise:masks=1000 ...]
    python benchmarks/bench_methods.py --text [--text-size tiny|small] [--methods a,b] [--repeats 3] [--device cpu]

``--text`` prints instead the cost of a text target (a CLIP prompt) relative to a class target per method, with
its target (within 10% for every method; the text pass excluded and cached): the comparison of
``benchmarks/bench_text.py``, on its randomly initialised CLIP model (``--model``/``--weights``/``--param`` do not
apply).

``--weights`` defaults to ``../shared/weights/NAME`` when that folder exists, else the hub.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import explainers  # noqa: E402

# method -> (what the ratio is taken against, the target)
TARGETS = {
    "attention_rollout": ("fwd", 1.5), "chefer_rollout": ("fwd", 1.5), "attention_last_layer": ("fwd", 1.5),
    "gradient_rollout": ("f+b", 1.5), "attention_gradcam": ("f+b", 1.5), "generic_attention": ("f+b", 1.5),
    "transformer_attribution": ("f+b", 3.0), "lrp_full": ("f+b", 3.0), "lrp_last_layer": ("f+b", 3.0),
    "attnlrp": ("f+b", 1.5), "cp_lrp": ("f+b", 1.5),
    "vit_cx": ("passes", 1.3), "gradmask": ("passes", 1.3), "similarity_graph": ("tokens", 1.3),
    "legrad": ("f+b", 1.5), "tis": ("tokens", 1.3),
    "gradcam": ("f+b", 1.3), "gradcam_pp": ("f+b", 1.3), "layercam": ("f+b", 1.3), "eigencam": ("f+b", 1.3),
    "scorecam": ("passes", 1.3), "rise": ("passes", 1.3), "occlusion": ("passes", 1.3),
    "saliency": ("f+b", 1.3), "integrated_gradients": ("steps", 1.1), "smoothgrad": ("steps", 1.1),
    # issue 26 (captum baselines): DeepLIFT adds one forward of the baseline to the image's forward+backward
    "gradient_x_input": ("f+b", 1.3), "guided_backprop": ("f+b", 1.3), "deeplift": ("f+b", 1.6),
    "gradient_shap": ("steps", 1.1), "lime": ("passes", 1.5), "kernel_shap": ("passes", 1.5),
    "vit_reciprocam": ("partial", 1.3), "bt_token": ("steps", 1.3), "bt_head": ("steps", 1.3),
}


def median_time(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def default_weights(model_name: str) -> str | None:
    p = ROOT.parent / "shared" / "weights" / model_name
    return str(p) if p.exists() else None


def parse_params(items: list[str]) -> dict[str, dict]:
    """``method:key=value`` -> {method: {key: value}} (values as strings: the registry coerces them)."""
    out: dict[str, dict] = {}
    for item in items:
        try:
            method, kv = item.split(":", 1)
            key, value = kv.split("=", 1)
        except ValueError:
            raise SystemExit(f"--param takes method:key=value, got {item!r}") from None
        out.setdefault(method, {})[key] = value
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="deit_tiny_patch16_224", help="any name load_model takes")
    ap.add_argument("--weights", default=None, help="a local file/folder, or 'random' (default: ../shared/weights/"
                    "MODEL when it exists, else the hub)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--num-classes", type=int, default=None,
                    help="a classifier head of N classes (for backbones such as eva02_tiny_patch14_224)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--methods", default="all")
    ap.add_argument("--param", action="append", default=[], help="method:key=value, e.g. rise:masks=1000")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch default)")
    ap.add_argument("--text", action="store_true", help="the cost of a text target relative to a class target "
                    "(benchmarks/bench_text.py on its CLIP model); target within 10%%, text pass excluded and cached")
    ap.add_argument("--text-size", default="small", choices=("tiny", "small"), help="--text: the CLIP image tower")
    args = ap.parse_args(argv)
    if args.text:
        return text_comparison(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    overrides = parse_params(args.param)

    weights = args.weights if args.weights is not None else default_weights(args.model)
    model = explainers.load_model(args.model, weights=weights, device=args.device, num_classes=args.num_classes)
    from PIL import Image

    img = Image.open(ROOT / "vit_explain_studio" / "assets" / "samples" / "both.png")
    x1 = model.preprocess(img)
    xb = x1.repeat(args.batch, 1, 1, 1) + 0.01 * torch.randn(args.batch, *x1.shape[1:], device=x1.device)
    with torch.inference_mode():
        cls = int(model.forward(x1).argmax())

    def fwd(x):
        with torch.inference_mode():
            model.forward(x)

    def fwd_bwd(x):
        xg = x.detach().clone().requires_grad_(True)
        logits = model.forward(xg)
        torch.autograd.grad(logits[:, cls].sum(), xg)

    f1 = median_time(lambda: fwd(x1), args.repeats * 4)
    fb1 = median_time(lambda: fwd_bwd(x1), args.repeats * 4)
    fB = median_time(lambda: fwd(xb), args.repeats)
    fbB = median_time(lambda: fwd_bwd(xb), args.repeats)
    x32 = x1.repeat(32, 1, 1, 1)
    per_img_batched = median_time(lambda: fwd(x32), args.repeats) / 32
    fb_batched = median_time(lambda: fwd_bwd(x32), args.repeats) / 32
    with torch.inference_mode():
        tokens = model.embed(x32)
    P, n = model.num_prefix_tokens, tokens.shape[1] - model.num_prefix_tokens
    token_fwd = {}

    def token_forward(keep: int) -> float:
        """One batched forward of prefix + ``keep`` patch tokens, per input."""
        if keep not in token_fwd:
            idx = torch.arange(keep, device=tokens.device).expand(32, -1)
            t = torch.cat([tokens[:, :P], tokens[:, P:P + keep]], 1)

            def run():
                with torch.inference_mode():
                    model.forward_tokens(t, keep=idx)

            token_fwd[keep] = median_time(run, args.repeats) / 32
        return token_fwd[keep]

    print(f"model {model.name} ({weights or 'hub weights'}) on {model.device}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads")
    print(f"forward: {f1 * 1e3:.1f} ms (1 image), {fB / args.batch * 1e3:.1f} ms/image (batch {args.batch}), "
          f"{per_img_batched * 1e3:.1f} ms/image (batch 32)")
    print(f"forward+backward: {fb1 * 1e3:.1f} ms (1 image), {fbB / args.batch * 1e3:.1f} ms/image "
          f"(batch {args.batch}), {fb_batched * 1e3:.1f} ms/image (batch 32)")
    print()
    hdr = (f"{'method':24s} {'1 img ms':>9s} {'÷fwd':>6s} {'÷f+b':>6s} | {'batch ms/img':>12s} {'÷fwd':>6s} "
           f"{'÷f+b':>6s} | {'passes':>6s} {'÷(passes×fwd)':>13s} | {'target ratio':>18s}")
    print(hdr)
    print("-" * len(hdr))
    names = list(explainers.METHODS) if args.methods == "all" else args.methods.split(",")
    for name in names:
        method = explainers.METHODS[name]
        params = overrides.get(name, {})
        kind, limit = TARGETS.get(name, ("f+b", float("nan")))
        heavy = kind in ("passes", "tokens", "steps", "partial")
        reps = max(1, args.repeats // 2) if heavy else args.repeats
        cap_box = {}

        def run(x, name=name, box=cap_box, params=params):
            box["cap"] = explainers.capture(model, x, name, **params)
            explainers.render(box["cap"], model)

        # always one untimed run first: a method's first call pays one-off costs (ViT-CX imports scikit-learn's
        # clustering, ~1 s), which a single timed run of a heavy method would otherwise count
        t1 = median_time(lambda: run(x1), reps)
        cap = cap_box["cap"]
        passes = cap.forward_passes
        if heavy:  # batching images does not change a mask method's per-image work
            tB = t1
        else:
            tB = median_time(lambda: run(xb), reps) / args.batch
        ratio = t1 / (passes * per_img_batched) if passes else float("nan")
        full = method.validate(params, model)
        if kind == "fwd":
            target_ratio = t1 / f1
        elif kind == "f+b":
            target_ratio = t1 / fb1
        elif kind == "passes":
            target_ratio = ratio
        elif kind == "partial":  # masked copies through the last blocks only, counted in whole forwards
            target_ratio = t1 / (cap.state["forward_equivalents"] * per_img_batched)
        elif kind == "steps":
            target_ratio = t1 / (full.get("steps", full.get("samples", 1)) * fb_batched)
        else:  # tokens: the masks' token-dropped forwards
            keep = max(1, int(full.get("token_ratio", 0.5) * n))
            count = passes - 1
            target_ratio = t1 / (count * token_forward(keep + (1 if name == "similarity_graph" else 0)))
        verdict = "ok" if target_ratio <= limit else ("--" if limit != limit else "MISS")
        print(f"{name:24s} {t1 * 1e3:9.1f} {t1 / f1:6.2f} {t1 / fb1:6.2f} | {tB * 1e3:12.1f} "
              f"{tB / (fB / args.batch):6.2f} {tB / (fbB / args.batch):6.2f} | {passes:6d} {ratio:13.2f} | "
              f"{target_ratio:5.2f} {kind:>6s} ≤{limit:<3g} {verdict}", flush=True)


def text_comparison(args) -> list[dict]:
    """``--text``: run ``bench_text`` with this command's methods, repeats, device and threads."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_text

    methods = "" if args.methods == "all" else args.methods
    return bench_text.main(["--size", args.text_size, "--methods", methods, "--repeats", str(args.repeats),
                            "--device", args.device, "--threads", str(args.threads)])


if __name__ == "__main__":
    main()
