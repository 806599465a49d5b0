"""Our ViT-ReciproCAM and Beyond Intuition (BT-T, BT-H) against their authors' code, on DeiT-Tiny with the same
weights, images and target (issue 26): Spearman correlation of the patch maps, per image, over the bundled sample
photos and 10 ImageNet validation images.

The reference code is never part of this repository: put a checkout of each beside the worktree (default
``../refs``, or ``--refs DIR``), and the comparisons whose checkout is absent are skipped with a message:

* ``refs/reciprocam/vit_recipro_cam.py``: the file holding ``ViTReciproCam`` (Byun & Lee, official code);
* ``refs/transformerinterp/ViT``: the ``ViT`` folder of ``jiaminchen-1031/transformerinterp`` (it imports
  ``einops``: ``pip install --target refs/pylib einops`` if the environment lacks it).

    python benchmarks/compare_references.py [--refs DIR] [--images 10] [--methods vit_reciprocam,bt_token,bt_head]

The reference runs on the CPU here (its ``.cuda()`` calls are redirected to the CPU for the run).
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
from pathlib import Path

import torch
from PIL import Image
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import explainers  # noqa: E402

WEIGHTS = ROOT.parent / "shared" / "weights" / "deit_tiny_patch16_224" / "timm" / "model.safetensors"
VAL = ROOT.parent / "shared" / "images" / "imagenet-val100"
SAMPLES = ROOT / "vit_explain_studio" / "assets" / "samples"


def images(n_val: int) -> list[Path]:
    return sorted(SAMPLES.glob("*.png")) + sorted(VAL.glob("*.JPEG"))[:n_val]


def timm_deit():
    import timm
    from safetensors.torch import load_file

    m = timm.create_model("deit_tiny_patch16_224", pretrained=False)
    m.load_state_dict(load_file(str(WEIGHTS)))
    return m.eval()


def reciprocam_reference(refs: Path):
    path = refs / "reciprocam" / "vit_recipro_cam.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location("vit_recipro_cam", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    cam = mod.ViTReciproCam(timm_deit(), device="cpu")  # its defaults: Gaussian, block -2, class token kept

    def run(x, cls):
        m, _ = cam(x, index=cls)
        return m.numpy()

    return run


def transformerinterp_reference(refs: Path, which: str):
    vit = refs / "transformerinterp" / "ViT"
    if not vit.exists():
        return None
    sys.path.insert(0, str(vit))
    if (refs / "pylib").exists():  # the reference's own dependency (einops), installed beside it
        sys.path.insert(0, str(refs / "pylib"))
    from baselines.ViT.ViT_explanation_generator import Baselines
    from baselines.ViT.ViT_new import VisionTransformer

    m = VisionTransformer(embed_dim=192, depth=12, num_heads=3, mlp_ratio=4, qkv_bias=True)
    from safetensors.torch import load_file

    m.load_state_dict(load_file(str(WEIGHTS)))
    gen = Baselines(m.eval())
    fn = gen.generate_ours_c if which == "bt_token" else gen.generate_ours

    def run(x, cls):
        # the reference hard-codes .cuda(): run it on the CPU by making .cuda() the identity for the call
        saved = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self
        try:
            return fn(x, index=cls, start_layer=4, steps=20).detach().reshape(14, 14).numpy()
        finally:
            torch.Tensor.cuda = saved

    return run


OURS = {"vit_reciprocam": {}, "bt_token": {"start_layer": 3, "steps": 20},
        "bt_head": {"start_layer": 3, "steps": 20}}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--refs", default=str(ROOT.parent / "refs"))
    ap.add_argument("--images", type=int, default=10, help="validation images (after the sample photos)")
    ap.add_argument("--methods", default=",".join(OURS))
    args = ap.parse_args(argv)
    refs = Path(args.refs)
    if not WEIGHTS.exists():
        print(f"skipped: the DeiT-Tiny weights are not at {WEIGHTS}")
        return {}
    torch.set_grad_enabled(True)
    model = explainers.load_model("deit_tiny_patch16_224", weights=str(WEIGHTS.parent.parent), device="cpu")
    out = {}
    for name in args.methods.split(","):
        if name == "vit_reciprocam":
            ref = reciprocam_reference(refs)
        else:
            ref = transformerinterp_reference(refs, name) if name in OURS else None
        if ref is None:
            print(f"{name}: skipped, the reference checkout is not under {refs} (see this script's docstring)")
            continue
        rhos = []
        for path in images(args.images):
            x = model.preprocess(Image.open(path))
            with torch.inference_mode():
                cls = int(model.forward(x).argmax(-1))
            ours = explainers.explain(model, x, name, target=cls, **OURS[name]).patch_map
            theirs = ref(x.clone(), cls)
            rho = float(spearmanr(ours.ravel(), theirs.ravel()).correlation)
            rhos.append(rho)
            print(f"  {name:16s} {path.name:32s} class {cls:4d}  Spearman {rho:.4f}", flush=True)
        out[name] = dict(median=statistics.median(rhos), worst=min(rhos), n=len(rhos))
        print(f"{name}: median Spearman {out[name]['median']:.4f}, worst {out[name]['worst']:.4f} over "
              f"{len(rhos)} images", flush=True)
    return out


if __name__ == "__main__":
    main()
