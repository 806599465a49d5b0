"""The reference runs behind docs/benchmark-results.md and the app's Benchmark page, resumable from any checkout.

Both real models, the 100 ImageNet validation images with their boxes, the default preset, every registered
method and the two reference maps (``random``, ``gaussian``), insertion/deletion AUC, both pointing games and the
extra faithfulness metrics (``evaluate --extra-metrics``); then the sanity checks (cascading and independent
randomisation, random logit) on the first 20 images, the many-pass methods on the first 5 (RISE with a
quarter of its masks: ``SANITY_PARAMS``). The outputs go to
``results/<model>/evaluate/`` and ``results/<model>/sanity/`` at the repository root, which are committed:

    python benchmarks/run_reference.py                 # everything still missing, niced, cheap methods first
    python benchmarks/run_reference.py --threads 1     # the same on a CPU shared with other work
    python benchmarks/run_reference.py --device cuda   # the same files on a GPU machine
    python benchmarks/run_reference.py --dry-run       # the commands, in their order
    python benchmarks/run_reference.py --methods lime,kernel_shap --first 20   # an early look at two methods
    python benchmarks/results_tables.py --write        # then the docs tables and results/summary.json

Every command is ``python -m explainers evaluate`` or ``sanity``: they skip the (image, method) pairs the folder
already holds and refuse a folder written with other settings, so an interrupted run (a closed laptop, a replaced
machine) goes on from the last committed chunk when run again. Paths are relative to the repository root
(``../shared``: the weights and images beside the checkout), so every checkout resumes the same folders.
The work is ordered cheap first: the one-to-three-pass methods on both models, then the medium ones, then the
many-pass methods; DeiT-Tiny before ViT-Tiny within each tier, and per model the sanity checks (the smaller job)
before the evaluation.
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "results"
IMAGES = "../shared/images/imagenet-val100"
EVAL_IMAGES = 100  # every validation image
SANITY_IMAGES = 20  # the first 20, for the one-to-three-pass and medium methods
HEAVY_SANITY_IMAGES = 5  # the many-pass methods (hundreds to thousands of passes per map, 31 maps per image)
REFERENCE = ("random", "gaussian")


@dataclass(frozen=True)
class Model:
    key: str  # the model name given to the commands, and the folder under results/
    title: str
    weights: str  # relative to the repository root


MODELS = (
    Model("deit_tiny_patch16_224", "DeiT-Tiny", "../shared/weights/deit_tiny_patch16_224"),
    Model("vit_tiny_patch16_224", "ViT-Tiny AugReg", "../shared/weights/vit_tiny_patch16_224.augreg_in21k_ft_in1k"),
)

# Cost tiers (seconds per map on DeiT-Tiny, 2-core CPU): under half a second, a few seconds, many passes.
TIERS = (
    ("cheap", ("attention_rollout", "gradient_rollout", "chefer_rollout", "attention_last_layer", "attention_gradcam",
               "generic_attention", "transformer_attribution", "lrp_last_layer", "lrp_full", "attnlrp", "cp_lrp",
               "gradcam", "gradcam_pp", "layercam", "eigencam", "saliency", "legrad", "similarity_graph",
               "gradient_x_input", "guided_backprop", "deeplift")
     + REFERENCE),
    ("medium", ("vit_cx", "gradmask", "integrated_gradients", "smoothgrad", "bt_token", "bt_head", "gradient_shap")),
    ("heavy", ("scorecam", "occlusion", "vit_reciprocam", "rise", "tis", "lime", "kernel_shap")),
)
# the sanity table's many-pass methods (issue 25): fewer images, stated in the table
MANY_PASS = ("rise", "tis", "occlusion", "scorecam", "integrated_gradients", "smoothgrad", "bt_token", "bt_head",
             "gradient_shap", "vit_reciprocam", "lime", "kernel_shap")


# the sanity table's smaller budgets (issue 25 allows them, stated in the table): RISE's 4000 masks cost 73 s a map
# on one thread, 31 maps an image; 1000 masks keep the check (the same masks for the model and its randomised
# copies) at a quarter of the cost. The evaluation uses every method's defaults.
SANITY_PARAMS = {"rise": {"masks": 1000}}


def methods() -> list[str]:
    """Every method of the plan, in tier order."""
    return [m for _, ms in TIERS for m in ms]


def sanity_images(method: str) -> int:
    return HEAVY_SANITY_IMAGES if method in MANY_PASS else SANITY_IMAGES


def check_plan() -> list[str]:
    """Registered methods missing from the tiers, and names in the tiers that are not registered."""
    from explainers import METHODS

    planned = set(methods())
    return ([f"{m}: registered but not in benchmarks/run_reference.py's TIERS" for m in METHODS if m not in planned]
            + [f"{m}: in TIERS but not registered" for m in planned if m not in METHODS and m not in REFERENCE])


def commands(models=MODELS, device: str = "auto", parts=("evaluate", "sanity"), only=None,
             first: int | None = None) -> list[list[str]]:
    """The commands of the plan, in their order (each one resumable). ``only``: a subset of the methods; ``first``:
    at most that many images per command (an early look at some methods; a later run without it completes them)."""
    py = [sys.executable, "-m", "explainers"]
    out = []
    for _tier, tier_methods in TIERS:
        ms = tuple(x for x in tier_methods if only is None or x in only)
        if not ms:
            continue
        for m in models:
            folder = Path("results") / m.key
            common = ["--model", m.key, "--weights", m.weights, "--device", device, "--images", IMAGES, "--quiet"]
            if "sanity" in parts:  # the smaller job first: it completes a table sooner
                for limit in sorted({sanity_images(x) for x in ms}, reverse=True):
                    group = [x for x in ms if sanity_images(x) == limit]
                    budgets = [f"--param={x}.{k}={v}" for x in group for k, v in SANITY_PARAMS.get(x, {}).items()]
                    out.append(py + ["sanity", *common, "--methods", ",".join(group), "--limit",
                                     str(min(limit, first or limit)), "--mode", "both", *budgets,
                                     "--out", str(folder / "sanity")])
            if "evaluate" in parts:
                out.append(py + ["evaluate", *common, "--methods", ",".join(ms), "--limit",
                                 str(min(EVAL_IMAGES, first or EVAL_IMAGES)), "--extra-metrics", "--out",
                                 str(folder / "evaluate")])
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=",".join(m.key for m in MODELS), help="comma-separated subset")
    ap.add_argument("--parts", default="evaluate,sanity", help="evaluate, sanity or both (default)")
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda (the same files either way)")
    ap.add_argument("--nice", type=int, default=19, help="niceness of the runs (default 19)")
    ap.add_argument("--threads", type=int, default=0, help="CPU threads per command (OMP_NUM_THREADS; default: "
                                                           "torch's choice). 1 on a CPU shared with other work: "
                                                           "threads waiting on each other there burn the CPU")
    ap.add_argument("--methods", default="", help="comma-separated subset of the plan's methods (default: all)")
    ap.add_argument("--first", type=int, default=0, help="at most this many images per command: an early look at "
                                                         "--methods; a run without it completes them")
    ap.add_argument("--dry-run", action="store_true", help="print the commands and stop")
    args = ap.parse_args(argv)
    keys = [k.strip() for k in args.models.split(",") if k.strip()]
    unknown = [k for k in keys if k not in {m.key for m in MODELS}]
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    if unknown or not keys or not set(parts) <= {"evaluate", "sanity"} or not parts:
        ap.error(f"--models takes {', '.join(m.key for m in MODELS)}; --parts takes evaluate, sanity")
    only = [x.strip() for x in args.methods.split(",") if x.strip()] or None
    if only and set(only) - set(methods()):
        ap.error(f"--methods: {', '.join(sorted(set(only) - set(methods())))} not in the plan; it has "
                 f"{', '.join(methods())}")
    if args.first < 0:
        ap.error("--first takes a positive number of images (0: all)")
    problems = check_plan()
    if problems:
        ap.error("the plan does not match the registry: " + "; ".join(problems))
    cmds = commands([m for m in MODELS if m.key in keys], args.device, parts, only, args.first or None)
    if args.dry_run:
        print("\n".join(shlex.join(c) for c in cmds))
        return 0
    if args.nice:
        os.nice(args.nice)  # the commands inherit it
    env = dict(os.environ)
    if args.threads > 0:
        env.update(OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    for i, cmd in enumerate(cmds, 1):
        print(f"[{i}/{len(cmds)}] {shlex.join(cmd[1:])}", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT, env=env)
        if rc:
            print(f"stopped: exit status {rc}; run the same command again to resume", file=sys.stderr)
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
