"""Our LibraGrad wrapper against its authors' code on DeiT-Tiny (issue 26): the same weights, the 8 sample photos
and 10 validation images, each image's top class as the target.

    python benchmarks/compare_libragrad.py --prepare      # writes ../refs/libragrad/inputs.pt (our preprocessing)
    (run benchmarks/libragrad_reference.py in the authors' environment: see its docstring)
    python benchmarks/compare_libragrad.py                # compares; --record also writes the test's fixture

Compared, for the plain gradient and for LibraGrad: the gradient x input of the first block's input tokens, the
gradient of the target's logit with respect to every block's attention probabilities (what gradient rollout,
generic attention, attention Grad-CAM and transformer attribution read) and the pixel gradient (saliency,
integrated gradients, gradient x input): relative error (Frobenius) and the worst per-image Spearman correlation.
``--record`` keeps the token gradient x input and the class-token rows of the attention gradients (head mean) in
``tests/data/libragrad_reference.pt`` (about 0.4 MB), which ``tests/test_libragrad.py`` checks on every run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from PIL import Image
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from compare_references import WEIGHTS, images  # noqa: E402

import explainers  # noqa: E402
from explainers.models.rules import libragrad  # noqa: E402

FIXTURE = ROOT / "tests" / "data" / "libragrad_reference.pt"


def ours(model, x: torch.Tensor, target: torch.Tensor, balanced: bool) -> dict:
    """Token gradient x input (B, N), attention gradients (L, B, H, N, N) and pixel gradients of the target logits."""
    with torch.enable_grad(), libragrad(balanced):
        xg = x.clone().requires_grad_(True)
        tr = model.trace(xg)
        y = tr.logits.gather(1, target[:, None]).sum()
        g = torch.autograd.grad(y, [tr.embedded, xg, *tr.attentions])
    return dict(tok_gxi=(tr.embedded * g[0]).sum(-1).detach(), pix_grad=g[1], attn_grad=torch.stack(g[2:]))


def cls_rows(attn_grad: torch.Tensor) -> torch.Tensor:
    return attn_grad[:, :, :, 0, :].mean(2)  # (L, B, N)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", default=str(ROOT.parent / "refs" / "libragrad"))
    ap.add_argument("--prepare", action="store_true", help="write the inputs for the reference run")
    ap.add_argument("--record", action="store_true", help="also write the test fixture")
    args = ap.parse_args(argv)
    refs = Path(args.refs)
    model = explainers.load_model("deit_tiny_patch16_224", weights=str(WEIGHTS.parent.parent), device="cpu")
    paths = images(10)
    x = torch.cat([model.preprocess(Image.open(p).convert("RGB")) for p in paths])
    if args.prepare:
        refs.mkdir(parents=True, exist_ok=True)
        with torch.inference_mode():
            target = model.forward(x).argmax(1)
        torch.save({"x": x, "target": target, "names": [p.name for p in paths]}, refs / "inputs.pt")
        print("wrote", refs / "inputs.pt")
        return {}
    if not (refs / "reference_libra.pt").exists():
        print(f"skipped: no reference gradients under {refs} (see this script's docstring)")
        return {}
    out, fixture = {}, {"names": [p.name for p in paths]}
    for mode in ("ng", "libra"):
        ref = torch.load(refs / f"reference_{mode}.pt")
        assert ref["names"] == fixture["names"], "the reference ran on other images: run --prepare again"
        mine = ours(model, x, ref["target"], balanced=mode == "libra")
        row = {}
        for k in ("tok_gxi", "attn_grad", "pix_grad"):
            a, b = mine[k], ref[k]
            rel = float((a - b).norm() / b.norm())
            per = a.transpose(0, 1).flatten(1) if k == "attn_grad" else a.flatten(1)
            rb = b.transpose(0, 1).flatten(1) if k == "attn_grad" else b.flatten(1)
            rho = min(float(spearmanr(p.numpy(), q.numpy()).correlation) for p, q in zip(per, rb))
            row[k] = dict(relative_error=rel, worst_spearman=rho)
            print(f"{mode:5s} {k:9s} relative error {rel:.2e}   worst per-image Spearman {rho:.6f}", flush=True)
        out[mode] = row
        fixture.update({"target": ref["target"], f"tok_gxi_{mode}": ref["tok_gxi"],
                        f"attn_grad_cls_{mode}": cls_rows(ref["attn_grad"])})
    if args.record:
        FIXTURE.parent.mkdir(parents=True, exist_ok=True)
        torch.save(fixture, FIXTURE)
        print("wrote", FIXTURE, f"({FIXTURE.stat().st_size / 1e6:.2f} MB)")
    return out


if __name__ == "__main__":
    main()
