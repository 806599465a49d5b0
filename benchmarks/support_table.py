"""Writes the model-family support table of docs/models.md from real runs on the test models (tests/model_zoo.py):
loads, traced outputs equal the model's own forward (native size, and another size where the family allows it),
the methods that give a finite non-constant map, the pooling the methods read, and the inside views (logit lens: its
last block equals the model's own score; head importance: every (layer, head) finite, in forward passes; token
norms, with the registers counted).

    python benchmarks/support_table.py            # prints the table
    python benchmarks/support_table.py --write    # and replaces the table in docs/models.md
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from model_zoo import DESCRIPTIONS, FAMILIES, build, fast_params  # noqa: E402

import explainers  # noqa: E402
from explainers.errors import ExplainerError  # noqa: E402
from explainers.targets import Similarity  # noqa: E402

MARK = "<!-- SUPPORT-TABLE -->"


def row(name: str) -> str:
    m = build(name)
    native = m.verify()
    ph, pw = m.patch_size
    other = (ph * 14, pw * 18)
    if not m.any_size:
        sizes = f"{native:.0e}; native size only"
    elif m.source == "torchvision":
        sizes = f"{native:.0e}; other sizes on our path only"
    else:
        sizes = f"{native:.0e}; {other[0]}x{other[1]}: {m.verify(size=other):.0e}"
    x = torch.randn(1, 3, *(other if m.any_size else m.input_size), generator=torch.Generator().manual_seed(1))
    target = None if m.num_classes else Similarity.to_region((0, 0, 3, 3))
    ok, refused = 0, []
    for method in explainers.METHODS:
        try:
            e = explainers.explain(m, x, method, target=target, **fast_params(method))
            ok += int(np.isfinite(e.patch_map).all() and (e.patch_map.std() > 0 or bool(e.warnings)))
        except ExplainerError:
            refused.append(method)
    runs = f"{ok}/{len(explainers.METHODS)}" + (f" (refused: {', '.join(refused)})" if refused else "")
    # what explain(target=None) does (docs/targets.md): the predicted class; without classes, class-agnostic
    # methods explain no target and the others ask for one (the table's runs give them a similarity target)
    target_kind = "predicted class" if m.num_classes else "none: class-agnostic methods need none, others a similarity"
    return f"| {DESCRIPTIONS[name]} | yes | {sizes} | {runs} | {m.pooling.kind} | {target_kind} | {inside(m, x)} |"


def inside(m, x) -> str:
    """The three inside-the-model columns for one model."""
    target = None if m.num_classes else Similarity(reference=m.outputs(x).embedding[0].detach().flip(0))
    lens = explainers.logit_lens(m, x, target)
    with torch.inference_mode():
        out = m.outputs(x)
        own = float(explainers.targets.bind(m, target, out, x).score(out)[0])
    err = abs(float(lens.pooled[-1]) - own) / max(abs(own), 1e-6)
    heads = explainers.head_importance(m, x, target)
    ok = np.isfinite(heads.scores).all() and np.isfinite(heads.layer_scores).all()
    norms = explainers.token_norms(m, x)
    regs = f"; {norms.num_registers} register{'s' if norms.num_registers > 1 else ''}" if norms.num_registers else ""
    return (f"last block = output ({err:.0e}) | {'yes' if ok else 'NOT FINITE'}, {m.num_layers}x{m.num_heads}, "
            f"{heads.forward_passes:.0f} forwards | yes{regs}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="replace the table in docs/models.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    lines = ["| family | loads | traced vs own forward (max relative difference) | methods that run | pooling | "
             "default target | logit lens | head importance | artefact tokens |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name in FAMILIES:
        lines.append(row(name))
        print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(f"\n{len(FAMILIES)} families in {time.perf_counter() - t0:.0f} s")
    if args.write:
        readme = ROOT / "docs" / "models.md"
        parts = readme.read_text().split(MARK)
        if len(parts) != 3:
            raise SystemExit(f"docs/models.md needs the table between two {MARK} lines")
        readme.write_text(parts[0] + MARK + "\n" + table + "\n" + MARK + parts[2])


if __name__ == "__main__":
    main()
