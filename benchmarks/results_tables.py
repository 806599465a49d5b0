"""Every results table of docs/benchmark-results.md, and results/summary.json, from the committed reference runs.

    python benchmarks/results_tables.py                    # print the tables (markdown)
    python benchmarks/results_tables.py --write            # replace them in the docs and rewrite summary.json
    python benchmarks/results_tables.py --check-complete   # list the (model, part, method) gaps; exit 1 if any
    benchmarks/commit_results.sh ["message"]               # commit the data so far with its tables (runs go on)

The runs are those of ``benchmarks/run_reference.py`` (``results/<model>/evaluate`` and ``.../sanity``);
tests/test_benchmark_results.py checks that the docs and summary.json equal what this prints from the committed
files. Per model: the evaluation (mean ± 95 % CI half-width per metric, paired comparison with the reference
rows, the sanity verdict), the extra faithfulness metrics, the sanity table, and the coverage against the plan.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import results_data as D  # noqa: E402

from explainers.errors import ExplainerError  # noqa: E402
from vit_explain_studio.results_summary import fmt, params_text, ranked, seconds, versus  # noqa: E402

DOC = D.plan.ROOT / "docs" / "benchmark-results.md"
BEGIN, END = "<!-- results-tables:begin -->", "<!-- results-tables:end -->"
EXTRA_SHOWN = ("road_morf_auc", "road_lerf_auc", "road_gap", "faithfulness_correlation", "sparseness",
               "relevance_rank_accuracy")  # relevance mass accuracy is the energy pointing game (same numbers)
SHORT = {"insertion_auc": "insertion AUC", "deletion_auc": "deletion AUC", "pointing_game": "pointing game",
         "energy_pointing_game": "energy pointing", "road_morf_auc": "ROAD MoRF", "road_lerf_auc": "ROAD LeRF",
         "road_gap": "ROAD gap", "faithfulness_correlation": "faithfulness corr.", "sparseness": "sparseness",
         "relevance_rank_accuracy": "relevance rank acc."}


def _head(summary: dict, k: str) -> str:
    return f"{SHORT[k]} {'↑' if summary['metrics'][k]['higher_is_better'] else '↓'}"


def _name(method: str, summary: dict) -> str:
    return f"*{method}*" if method in summary["plan"]["reference"] else method


def _ranked(model: dict, metric: str, summary: dict) -> list[str]:
    """Every method with rows, best first by ``metric`` (those without a value last, in plan order)."""
    return ranked(model, metric, summary["metrics"].get(metric, {}).get("higher_is_better", False), keep_missing=True)


def verdict(model: dict, method: str) -> str:
    s = model["sanity"]["methods"].get(method, {})
    if "passes" not in s:
        return "—"
    return ("pass" if s["passes"] else "**flagged**") + f" ({s['images']})"


def evaluation_table(model: dict, summary: dict) -> str:
    cols = D.MAIN_METRICS
    lines = ["| method | " + " | ".join(_head(summary, k) for k in cols)
             + " | median s / image | better than random | better than gaussian | sanity (images) | images |",
             "|---|" + "---:|" * len(cols) + "---:|---|---|---|---:|"]
    for m in _ranked(model, "insertion_auc", summary):
        e = model["evaluate"]["methods"][m]
        cells = [fmt(e["metrics"].get(k)) for k in cols]
        sec = seconds(model, m)
        cells.append("n/a" if sec is None else f"{sec:.2f}")
        cells += [versus(e, "random"), versus(e, "gaussian"), verdict(model, m), str(e["images"])]
        lines.append(f"| {_name(m, summary)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def extra_table(model: dict, summary: dict) -> str:
    cols = [k for k in EXTRA_SHOWN if any(k in e["metrics"] for e in model["evaluate"]["methods"].values())]
    if not cols:
        return ""
    lines = ["| method | " + " | ".join(_head(summary, k) for k in cols) + " | images |",
             "|---|" + "---:|" * len(cols) + "---:|"]
    for m in _ranked(model, "road_gap", summary):
        e = model["evaluate"]["methods"][m]
        lines.append(f"| {_name(m, summary)} | " + " | ".join(fmt(e["metrics"].get(k)) for k in cols)
                     + f" | {e['metrics'].get(cols[0], {}).get('n', 0)} |")
    return "\n".join(lines) + "\n"


def budget_note(entry: dict) -> str:
    """" (masks=1000)" for a method checked with parameters other than its defaults, else ""."""
    text = params_text(entry.get("budget"))
    return f" ({text})" if text else ""


def sanity_table(model: dict, summary: dict) -> str:
    keys = ("top_block", "top_half", "all_blocks", "independent_top_block", "independent_first_block",
            "random_logit")
    lines = ["| method | images | top block | top half | all blocks | top block alone | block 0 alone | random logit "
             "| verdict |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"]
    for m, s in model["sanity"]["methods"].items():
        if "passes" not in s:
            continue
        cells = ["n/a" if s.get(k) is None else f"{s[k]:.2f}" for k in keys]
        lines.append(f"| {_name(m, summary)}{budget_note(s)} | {s['images']} | " + " | ".join(cells)
                     + f" | {'pass' if s['passes'] else '**flagged**'} |")
    return "\n".join(lines) + "\n"


def coverage_table(summary: dict) -> str:
    lines = ["| model | part | methods complete | (image, method) pairs done | incomplete |", "|---|---|---:|---:|---|"]
    for m in summary["models"]:
        for part, cov in m["coverage"].items():
            done = sum(min(c["done"], c["expected"]) for c in cov.values())
            want = sum(c["expected"] for c in cov.values())
            full = sum(c["done"] >= c["expected"] for c in cov.values())
            short = [f"{x} {c['done']}/{c['expected']}" for x, c in cov.items() if 0 < c["done"] < c["expected"]]
            missing = [x for x, c in cov.items() if c["done"] == 0]
            note = "; ".join(filter(None, [", ".join(short), f"not started: {', '.join(missing)}" if missing else ""]))
            note = "not started" if len(missing) == len(cov) else note
            lines.append(f"| {m['title']} | {part} | {full} of {len(cov)} | {done} of {want} | {note or '—'} |")
    return "\n".join(lines) + "\n"


def _settings_line(model: dict) -> str:
    s = model["evaluate"]["settings"]
    if not s:
        return ""
    steps = s.get("steps") or "its default"
    return (f"Preset `{s.get('preset')}` ({steps} steps), pointing-game tolerance {s.get('tolerance')} px, extra "
            f"metrics {'on' if s.get('extra_metrics') else 'off'}; model `{s.get('model')}`.")


def markdown(summary: dict) -> str:
    """Every generated table and sentence of docs/benchmark-results.md (between its markers)."""
    p = summary["plan"]
    parts = ["### Coverage\n",
             f"The plan: {p['eval_images']} images per model for every method in the evaluation; the sanity checks "
             f"on the first {p['sanity_images']} images, the many-pass methods ({', '.join(p['many_pass'])}) on "
             f"the first {p['many_pass_sanity_images']}"
             + "".join(f", {m} with {params_text(ps)} (the evaluation: defaults)"
                       for m, ps in p.get("sanity_params", {}).items())
             + ". Counts below are what the committed files hold.\n",
             coverage_table(summary)]
    for m in summary["models"]:
        parts.append(f"### {m['title']}\n")
        if m["reading"]:
            parts.append(" ".join(m["reading"]) + "\n")
        if not m["evaluate"]["methods"]:
            parts.append("No evaluation rows yet.\n")
        else:
            parts += [f"**Evaluation** ({m['evaluate']['images']} images; mean ± 95 % CI half-width; sorted by "
                      "insertion AUC; reference rows in italics; \"better than\": the paired 95 % interval of the "
                      "per-image difference lies on the better side, on insertion (ins) or deletion (del) AUC). "
                      + _settings_line(m) + "\n", evaluation_table(m, summary)]
            extra = extra_table(m, summary)
            if extra:
                parts += ["**Extra faithfulness metrics** (sorted by ROAD gap; relevance mass accuracy equals the "
                          "energy pointing game and is left out):\n", extra]
        if any("passes" in s for s in m["sanity"]["methods"].values()):
            parts += ["**Sanity checks** (mean Spearman similarity to the original map: cascading randomisation "
                      "after the head and the top block, the top half, all blocks; independent randomisation of "
                      "the top block alone and of block 0 alone; a random other class; pass: top half < 0.5):\n",
                      sanity_table(m, summary)]
    return "\n".join(parts)


def replace_block(doc: str, text: str) -> str:
    if BEGIN not in doc or END not in doc:
        raise SystemExit(f"{DOC} lacks the markers {BEGIN} / {END}")
    head, rest = doc.split(BEGIN, 1)
    return head + BEGIN + "\n" + text + END + rest.split(END, 1)[1]


def docs_block(doc: str) -> str:
    """The generated part of a docs page (between the markers)."""
    return doc.split(BEGIN, 1)[1].split(END, 1)[0].removeprefix("\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default=str(D.plan.RESULTS), help="the results folder (default: results/)")
    ap.add_argument("--write", action="store_true", help="write the tables into docs/benchmark-results.md and "
                                                         "the summary into ROOT/summary.json")
    ap.add_argument("--summary", default=None, help="where --write puts summary.json (default: ROOT/summary.json)")
    ap.add_argument("--check-complete", action="store_true", help="list what the plan still lacks; exit 1 if any")
    args = ap.parse_args(argv)
    try:
        summary = D.collect(Path(args.root))
    except ExplainerError as e:  # a damaged or half-written file (the run folders check their records)
        print(f"cannot read the results: {e}", file=sys.stderr)
        return 2
    if args.check_complete:
        gaps = D.gaps(summary)
        print("\n".join(gaps) if gaps else "complete: every (model, part, method) has the planned images")
        for key, sec in D.remaining_evaluation(summary, Path(args.root)).items():
            if sec is None:
                print(f"{key} evaluate: still to run, no rows yet to estimate its time from")
            elif sec > 0:
                print(f"{key} evaluate: about {sec / 3600:.1f} hours still to run on one CPU core (medians of the "
                      "rows so far, explanation and metrics)")
        return 1 if gaps else 0
    text = markdown(summary)
    if args.write:
        DOC.write_text(replace_block(DOC.read_text(), text))
        out = Path(args.summary) if args.summary else Path(args.root) / "summary.json"
        D.write_json(summary, out)
        print(f"wrote {DOC} and {out}")
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
