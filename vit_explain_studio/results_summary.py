"""Reading results/summary.json (the reference runs, ``benchmarks/results_data.collect``) without Streamlit: the
formatting of a mean with its interval, the paired comparisons with the reference rows, the ranking by a metric and
the reading of the results in words. One source for docs/benchmark-results.md (``benchmarks/results_tables.py``)
and the app's Benchmark page: the same numbers, sentences and wording in both."""

from __future__ import annotations

TITLES = {"insertion_auc": "insertion AUC", "deletion_auc": "deletion AUC"}


def fmt(stat: dict | None, digits: int = 3) -> str:
    """"0.504 ± 0.047" (mean ± 95 % CI half-width), "0.504" for one value, "n/a" without one."""
    if not stat or stat.get("mean") is None:
        return "n/a"
    s = f"{stat['mean']:.{digits}f}"
    return s + (f" ± {stat['ci95']:.{digits}f}" if stat.get("ci95") is not None else "")


def stat(model: dict, method: str, metric: str) -> dict | None:
    """A method's statistic of ``metric`` (mean, ci95, n), None without a mean."""
    s = model["evaluate"]["methods"].get(method, {}).get("metrics", {}).get(metric)
    return s if s and s.get("mean") is not None else None


def seconds(model: dict, method: str) -> float | None:
    """A method's seconds per image (the explanation alone): the median of its rows, robust to the minutes a
    shared machine was loaded (the mean where a summary has no median); None without timings."""
    s = stat(model, method, "seconds")
    return None if s is None else s.get("median", s["mean"])


def ranked(model: dict, metric: str, higher_is_better: bool, keep_missing: bool = False) -> list[str]:
    """Methods with a value of ``metric``, best first; with ``keep_missing`` the others follow in plan order."""
    ms = model["evaluate"]["methods"]
    with_value = [m for m in ms if stat(model, m, metric)]
    order = sorted(with_value, key=lambda m: stat(model, m, metric)["mean"] * (-1 if higher_is_better else 1))
    return order + ([m for m in ms if m not in with_value] if keep_missing else [])


def versus(entry: dict, ref: str) -> str:
    """On which AUCs a method beats reference row ``ref`` by a paired 95 % interval: "insertion and deletion",
    "insertion", "deletion", "no"; "n/a" with fewer than two images in common, "—" without a comparison."""
    p = entry.get("versus", {}).get(ref)
    if not p:
        return "—"
    if any(p[k]["ci95"] is None for k in ("insertion_auc", "deletion_auc")):
        return "n/a"
    won = [w for w, k in (("insertion", "insertion_auc"), ("deletion", "deletion_auc")) if p[k]["better"]]
    return " and ".join(won) if won else "no"


def params_text(params: dict | None) -> str:
    """"masks=1000, cells=5": a method's parameters other than its defaults (a sanity budget), "" without any."""
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items())


def names(methods: list[str]) -> str:
    """"a", "a and b", "a, b and c" (code-formatted)."""
    ms = [f"`{m}`" for m in methods]
    return ms[0] if len(ms) == 1 else ", ".join(ms[:-1]) + " and " + ms[-1]


def beats(entry: dict, ref: str) -> list[str]:
    """The compared metrics (insertion, deletion AUC) on which a method is better than ``ref`` (paired 95 % CI)."""
    return [k for k, p in entry.get("versus", {}).get(ref, {}).items() if p["better"]]


def reading(model: dict, reference=("random", "gaussian")) -> list[str]:
    """Sentences (markdown) about one model's results; empty when it has no evaluation rows."""
    ev, san = model["evaluate"], model["sanity"]
    methods = {m: e for m, e in ev["methods"].items() if m not in reference}
    out = []
    if methods:
        out.append(f"On {model['title']}, {ev['images']} image{'s' if ev['images'] != 1 else ''} "
                   f"({len(methods)} method{'s' if len(methods) != 1 else ''} with rows; the model is right on "
                   f"{ev['correct']} of them).")
        counts = sorted({e["images"] for e in methods.values()})
        if len(counts) > 1:  # a partial run: means over different images, not to be ranked against each other
            out.append(f"The methods do not have the same images yet ({counts[0]} to {counts[-1]} each, the "
                       "`images` column): each mean is over its own images, the comparisons below are paired over "
                       "the images two methods share, and the ranking is provisional until every method has "
                       "every image.")
    for k, lead in ev.get("leaders", {}).items():
        best = methods[lead["leader"]]["metrics"][k]
        own = methods[lead["leader"]]["images"]
        text = (f"On {TITLES[k]}, `{lead['leader']}` leads ({fmt(best)}"
                + (f", on its {own} images)" if own < ev["images"] else ")"))
        tied = lead["tied"]
        if len(methods) == 1:
            pass
        elif tied:
            text += (f"; {names(tied)} {'is' if len(tied) == 1 else 'are'} within its paired 95 % interval, "
                     f"so the lead over {'it' if len(tied) == 1 else 'them'} is not established")
        else:
            text += " and is ahead of every other method by a paired 95 % interval"
        out.append(text + ".")
    if methods and "random" in ev["methods"]:
        compared = {m: e for m, e in methods.items() if e.get("versus", {}).get("random")
                    and all(p["ci95"] is not None for p in e["versus"]["random"].values())}  # 2+ images
        others = [r for r in reference if r != "random"]
        no_random = [m for m, e in compared.items() if not beats(e, "random")]
        neither = [m for m in no_random if not any(beats(compared[m], r) for r in others)]
        only_random = [m for m in no_random if m not in neither]
        below = [m for m, e in compared.items() if m not in no_random
                 and any(e.get("versus", {}).get(r) and not beats(e, r) for r in others)]
        if neither:
            out.append(f"{names(neither)} beat{'s' if len(neither) == 1 else ''} neither reference row (the random "
                       "map nor the centred Gaussian) on insertion or deletion AUC (paired 95 % intervals).")
        if only_random:
            out.append(f"No better than the random map on either AUC: {names(only_random)}.")
        if below:
            out.append(f"Better than the random map but not than the centred Gaussian: {names(below)}.")
        if compared and not no_random:
            out.append("Every method beats the random map on insertion or deletion AUC (paired 95 % intervals).")
    checked = {m: e for m, e in san["methods"].items() if "passes" in e}
    if checked:
        flagged = [m for m, e in checked.items() if not e["passes"] and m not in reference]
        n = max(e["images"] for e in checked.values())
        if flagged:
            out.append(f"The sanity check (cascading randomisation, up to {n} images) flags {names(flagged)}: "
                       "their maps keep a Spearman similarity of 0.5 or more to the original once the head and "
                       "the top half of the blocks are random.")
        else:
            out.append(f"Every method checked passes the sanity check (up to {n} images).")
        refs = [r for r in reference if r in checked]
        if refs and all(not checked[r]["passes"] for r in refs):
            out.append(f"The reference maps ({names(refs)}) are flagged, as the check is built to do.")
    return out
