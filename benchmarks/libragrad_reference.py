"""LibraGrad's reference gradients from its authors' code, for ``benchmarks/compare_libragrad.py``.

Runs in a separate virtual environment holding the authors' timm fork (``NightMachinery/pytorch-image-models-
libragrad-v1``, installed editable with ``--no-deps``, plus ``pynight`` and the packages its imports need), never in
this project's environment. Reads ``<dir>/inputs.pt`` (written by ``compare_libragrad.py --prepare``) and writes
``<dir>/reference_ng.pt`` (plain gradient) and ``<dir>/reference_libra.pt`` (LibraGrad):

    cd ../refs/libragrad && venv/bin/python ../../main/benchmarks/libragrad_reference.py . </dev/null

(stdin from /dev/null: the fork's ``decompv.early_boot`` installs a debugger hook that waits for input on errors.)

The fork's gradient modes are global settings, chosen with ``configure_gradient_modes``: plain = ``NG``; LibraGrad
= ``LX1`` (LayerNorm variance, attention q and k, GELU gate detached) with ``DU`` (a gated MLP's product halved),
the logit as the target (``S0``) and no patch-embedding change (``patchifier_gbrand=None``), as this library's
wrapper does. The decompv presets add "dissent suppression" on the patch embedding and back-propagate from the
softmax probability (``S1``) for every preset, plain gradient included: those are experiment settings of the
authors' pipeline, not of LibraGrad, and are left out of both sides.
"""

import sys

import safetensors.torch
import timm
import torch
from timm.models.decomposition import configure_gradient_modes, fair_model_get

MODEL = "deit_tiny_patch16_224"
WEIGHTS = "../../shared/weights/deit_tiny_patch16_224/timm/model.safetensors"
MODES = {
    "ng": dict(gradient_mode_brand="NG", softmax_mode="S0", patchifier_gbrand=None, mlp_mul_gbrand=None),
    "libra": dict(gradient_mode_brand="LX1", softmax_mode="S0", patchifier_gbrand=None, mlp_mul_gbrand="DU"),
}


def main(folder: str, weights: str = WEIGHTS) -> None:
    torch.set_num_threads(1)
    inp = torch.load(f"{folder}/inputs.pt")
    x, target = inp["x"].float(), inp["target"].long()
    model = timm.create_model(MODEL, pretrained=False)
    model.load_state_dict(safetensors.torch.load_file(weights), strict=True)
    model = fair_model_get(model.eval()).new_model.eval().float()  # as the fork's decomposition.create_model
    for mode, config in MODES.items():
        configure_gradient_modes(model_name=MODEL, **config)
        model.zero_grad(set_to_none=True)
        xx = x.clone().requires_grad_(True)
        tok = model.pixels2patches(xx)  # the input of the first block (patches, class token, positions)
        tok.retain_grad()
        logits = model.forward_patch_level(tok)
        logits[torch.arange(len(x)), target].sum().backward()
        torch.save(dict(logits=logits.detach(), tok_gxi=(tok.detach() * tok.grad).sum(-1),
                        attn=torch.stack([b.attn.stored_rawattn for b in model.blocks]),
                        attn_grad=torch.stack([b.attn.stored_rawattn_grad for b in model.blocks]),
                        pix_grad=xx.grad.detach(), target=target, names=inp["names"], config=config),
                   f"{folder}/reference_{mode}.pt")
        print("wrote", f"{folder}/reference_{mode}.pt")


if __name__ == "__main__":
    main(*sys.argv[1:])
