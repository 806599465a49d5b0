"""``results.csv`` and ``curves.csv`` of an evaluate run folder: checksummed records, reading and resuming.

results.csv: the columns of :func:`~explainers.evaluation.core.result_columns`, then ``input_sha256`` (SHA-256
of the image file and its boxes.json entry, first 16 hex digits) and ``checksum``; one line per (image, method).
curves.csv: ``image, method, curve, values, checksum``; three lines per pair without an error (curve
``fractions``, ``insertion``, ``deletion``; values space-separated), written before the pair's results line.
"""

from __future__ import annotations

from pathlib import Path

from ..run_folder import CHECKSUM, IMAGE_HASH, RunFolderError, Table, canonical, table_of

CURVE_COLUMNS = ("image", "method", "curve", "values")
CURVES = ("fractions", "insertion", "deletion")


def input_digest(data: bytes | None, entry) -> str:
    """What a results row's inputs were: the image's bytes and its boxes.json entry ("" for an unreadable file)."""
    import hashlib

    if data is None:
        return ""
    h = hashlib.sha256(data)
    h.update(canonical(entry).encode())
    return h.hexdigest()[:16]


def record_lines(res: Table, cur: Table, row: dict, columns, digest: str) -> tuple[bytes, list[bytes]]:
    """(the results line, the curves lines) of one row."""
    curves = []
    if row.get("insertion_curve"):
        for name, key in zip(CURVES, ("fractions", "insertion_curve", "deletion_curve")):
            curves.append(cur.encode([row["image"], row["method"], name, " ".join(repr(float(v)) for v in row[key])]))
    return res.encode([row.get(c) for c in columns] + [digest]), curves


def _by_pair(table: Table, records, key) -> dict:
    out = {}
    for r in records:
        k = key(r.cells)
        if k in out:
            raise table.damaged(r.line, f"it repeats {' / '.join(k)} of line {out[k].line}")
        out[k] = r
    return out


def resume_state(res: Table, cur: Table) -> tuple[dict[tuple[str, str], str], list[str]]:
    """The complete pairs of a folder ({(image, method): input digest}) and notes on what was left out.

    A pair is complete when its results line is whole and, unless it records an error, its three curves are too.
    A last line cut by an interruption and the lines of incomplete pairs are removed (both files rewritten
    atomically), so that the rerun computes those pairs again; any other damage raises :class:`RunFolderError`."""
    rows, res_cut = res.read()
    curves, cur_cut = cur.read()
    by_pair = _by_pair(res, rows, lambda c: (c["image"], c["method"]))
    for r in curves:
        if r.cells["curve"] not in CURVES:
            raise cur.damaged(r.line, f"unknown curve {r.cells['curve']!r}")
    by_curve = _by_pair(cur, curves, lambda c: (c["image"], c["method"], c["curve"]))
    complete = {k: r for k, r in by_pair.items() if r.cells["error"] or all((*k, c) in by_curve for c in CURVES)}
    keep_rows = [r for r in rows if (r.cells["image"], r.cells["method"]) in complete]
    keep_curves = [r for r in curves if (k := (r.cells["image"], r.cells["method"])) in complete
                   and not complete[k].cells["error"]]
    notes = []
    if res_cut or cur_cut:
        notes.append(f"a last line cut by an interruption was left out of "
                     f"{' and '.join(t.path.name for t, c in ((res, res_cut), (cur, cur_cut)) if c)}")
    if len(keep_rows) < len(rows):
        lost = [k for k in by_pair if k not in complete]
        notes.append(f"{len(lost)} pair(s) in results.csv lacked their curves in curves.csv "
                     f"(e.g. {' / '.join(lost[0])})")
    if len(keep_curves) < len(curves):
        notes.append(f"{len(curves) - len(keep_curves)} line(s) of curves.csv had no results row")
    if notes:
        res.rewrite(keep_rows)
        cur.rewrite(keep_curves)
        notes = [f"resuming {res.path.parent}: " + "; ".join(notes) + "; those pairs are computed again"]
    return {k: r.cells[IMAGE_HASH] for k, r in complete.items()}, notes


def _table(path: Path) -> Table | None:
    """The checksummed table of a folder's CSV (None: a file written before checksums, read as plain CSV)."""
    try:
        with open(path, "rb") as fh:
            head = fh.readline()
    except OSError as e:
        raise RunFolderError(f"cannot read {path} ({e.strerror or e}); move it away, or use another --out "
                             "folder") from None
    columns = head.decode("utf-8", "replace").strip().split(",")
    if not columns or columns[-1] != CHECKSUM:
        return None
    return table_of(path, columns[:-1])


def _legacy(path: Path) -> list[dict]:
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as f:
        return list(csv.DictReader(f))


def read_results(path) -> list[dict]:
    """Rows of a results.csv (checked against the run.json beside it; a last line cut by an interruption is left
    out). Files written before checksums existed are read as they are."""
    path = Path(path)
    if not path.exists():
        return []
    table = _table(path)
    if table is None:
        rows = {(r.get("image"), r.get("method")): r for r in _legacy(path) if r.get("error") is not None}
        return list(rows.values())
    records, _ = table.read()
    by_pair = _by_pair(table, records, lambda c: (c["image"], c["method"]))
    return [{k: v for k, v in r.cells.items() if k != CHECKSUM} for r in by_pair.values()]


def read_curves(path) -> dict:
    """{(image, method, curve): [values]} of a curves.csv (checked like :func:`read_results`)."""
    path = Path(path)
    if not path.exists():
        return {}
    table = _table(path)
    records = [(0, r) for r in _legacy(path)] if table is None else [(r.line, r.cells) for r in table.read()[0]]
    out = {}
    for line, r in records:
        try:
            out[(r["image"], r["method"], r["curve"])] = [float(v) for v in r["values"].split()]
        except (ValueError, AttributeError, KeyError):
            if table is None:  # an old file's cut line
                continue
            raise table.damaged(line, "its values are not numbers") from None
    return out
