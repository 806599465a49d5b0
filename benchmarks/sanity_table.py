"""The sanity-check table of docs/sanity-checks.md, from the ``sanity.csv`` files of ``vit-explain sanity`` runs.

Each ``--model NAME=DIR[,DIR...]`` names a model and the output folders of its runs (several folders: runs over
disjoint sets of images, e.g. run in parallel; an image seen twice counts once). Per method and model: the mean
Spearman similarity after randomising the head and the top block, the top half of the blocks and all blocks
(cascading), the mean random-logit similarity and the verdict (:func:`explainers.sanity.summarize`: passes when
the top-half mean is below 0.5).

    python benchmarks/sanity_table.py --model DeiT-Tiny=sanity-deit --model ViT-Tiny=sanity-vit
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from explainers import sanity  # noqa: E402
from explainers.sanity_run import read_results as read_sanity  # noqa: E402


def read_results(folders) -> list[sanity.SanityResult]:
    """Cascading results (with their random-logit values) from sanity.csv files."""
    return [r for r in read_sanity(list(folders)) if r.mode == "cascading"]


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
