"""The README's sanity-check table, from the ``sanity.csv`` files of ``python -m explainers sanity`` runs.

Each ``--model NAME=DIR[,DIR...]`` names a model and the output folders of its runs (several folders: runs over
disjoint sets of images, e.g. run in parallel; an image seen twice counts once). Per method and model: the mean
Spearman similarity after randomising the head and the top block, the top half of the blocks and all blocks
(cascading), the mean random-logit similarity and the verdict (:func:`explainers.sanity.summarize`: passes when
the top-half mean is below 0.5).

    python benchmarks/sanity_table.py --model DeiT-Tiny=sanity-deit --model ViT-Tiny=sanity-vit
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explainers import sanity  # noqa: E402
from explainers.metrics import randomisation as R  # noqa: E402


def read_results(folders) -> list[sanity.SanityResult]:
    """SanityResult objects (cascading mode, with their random-logit row) rebuilt from sanity.csv files."""
    rows: dict[tuple, list[dict]] = {}
    for folder in folders:
        with open(Path(folder) / "sanity.csv", newline="") as f:
            for r in csv.DictReader(f):
                rows.setdefault((r["image"], r["method"]), []).append(r)
    out = []
    for (image, method), rs in rows.items():
        casc = {int(r["step"]): r for r in rs if r["mode"] == "cascading"}  # a repeated image keeps one copy
        if not casc:
            continue
        plan = R.cascading_steps(max(int(r["blocks_randomised"]) for r in casc.values()))
        if sorted(casc) != [s.index for s in plan]:
            raise SystemExit(f"{image} / {method}: the steps in sanity.csv are not a whole cascading run")
        vals = {k: [float(casc[s.index][k]) for s in plan] for k in R.SIMILARITIES}
        res = sanity.SanityResult(method=method, image=image, mode="cascading", target=int(casc[0]["target"]),
                                  steps=plan, num_layers=plan[-1].blocks, **vals)
        rl = [r for r in rs if r["mode"] == "random_logit"]
        if rl:
            res.random_logit = {k: float(rl[0][k]) for k in R.SIMILARITIES}
        out.append(res)
    return out


def table(models: dict[str, list[sanity.SanityResult]]) -> str:
    """One markdown table: a row per method, the five summary cells per model."""
    summ = {name: {s["method"]: s for s in sanity.summarize(res)} for name, res in models.items()}
    methods = list(dict.fromkeys(m for s in summ.values() for m in s))
    n_img = {name: len({r.image for r in res}) for name, res in models.items()}
    head = ["method"]
    for name in models:
        head += [f"{name} ({n_img[name]} images): top block", "top half", "all blocks", "random logit", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|---:|---:|---:|---|" * len(models)]
    for m in methods:
        cells = [m]
        for name in models:
            s = summ[name].get(m)
            if s is None:
                cells += ["n/a"] * 5
                continue
            cells += [f"{s[f'spearman_{k}']:.2f}" for k in ("top_block", "top_half", "all_blocks", "random_logit")]
            cells.append("pass" if s["passes"] else "**flagged**")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> str:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR[,DIR...]")
    args = ap.parse_args(argv)
    models = {}
    for spec in args.model:
        name, _, dirs = spec.partition("=")
        if not dirs:
            ap.error(f"--model {spec!r}: expected NAME=DIR[,DIR...]")
        models[name] = read_results(d for d in dirs.split(",") if d)
    text = table(models)
    print(text, end="")
    return text


if __name__ == "__main__":
    main()
