"""Random damage to a finished ``evaluate`` and ``sanity`` folder (issue 24): a rerun either resumes to exactly the
uninterrupted result or refuses with a message (and then leaves the folder as it was); never a traceback, never a
mixed result. Truncation at every byte offset of the last record, random byte flips and truncations (hypothesis),
files swapped between folders and runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from run_support import evaluate, evaluate_content, image_folder, sanity, sanity_content, tiny_model

from explainers.errors import ExplainerError

EV_FILES = ("run.json", "results.csv", "curves.csv")
SA_FILES = ("run.json", "sanity.csv")


class _Page:
    def to_html(self, **kw):
        return ""


@pytest.fixture(autouse=True)
def cheap_reports(monkeypatch):
    """The Plotly pages are views of the CSV files, rewritten by every run: left out here to keep reruns fast."""
    import explainers.evaluation.files as F
    import explainers.sanity as S

    monkeypatch.setattr(F, "curves_figure", lambda *a, **k: _Page())
    monkeypatch.setattr(S, "figure", lambda *a, **k: _Page())


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import explainers.evaluation.files as F
    import explainers.sanity as S

    mp = pytest.MonkeyPatch()
    mp.setattr(F, "curves_figure", lambda *a, **k: _Page())
    mp.setattr(S, "figure", lambda *a, **k: _Page())
    root = tmp_path_factory.mktemp("damage")
    model, images = tiny_model(), image_folder(root / "images")
    ev, sa, other = root / "ev", root / "sa", root / "other"
    evaluate(model, images, ev)
    sanity(model, images, sa)
    evaluate(model, images, other, steps=3)  # files of another configuration, to swap in
    mp.undo()
    return {"model": model, "images": images, "ev": ev, "sa": sa, "other": other, "ev_ref": evaluate_content(ev),
            "sa_ref": sanity_content(sa)}


def _fresh(src: Path, dst: Path, names) -> Path:
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for n in names:
        shutil.copyfile(src / n, dst / n)
    return dst


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file() and p.name != ".lock"}


def _rerun(setup, kind: str, out: Path) -> str:
    """Rerun on a damaged folder: "resumed" (to exactly the uninterrupted result) or "refused" (with a message,
    and the folder's files as they were). Anything else, a traceback included, fails the test."""
    before = _snapshot(out)
    run, content, ref = ((evaluate, evaluate_content, "ev_ref") if kind == "ev" else
                         (sanity, sanity_content, "sa_ref"))
    try:
        run(setup["model"], setup["images"], out)
    except ExplainerError as e:
        assert str(e) and ("--out" in str(e) or "Delete that line" in str(e)), str(e)
        assert _snapshot(out) == before, "a refused run changed the folder"
        return "refused"
    assert content(out) == setup[ref]
    return "resumed"


def _last_record_start(data: bytes, lines: int) -> int:
    """Offset where the last ``lines`` lines begin."""
    pos = len(data) - 1  # the final newline
    for _ in range(lines):
        pos = data.rindex(b"\n", 0, pos)
    return pos + 1


def _resume_only(kind: str, out: Path):
    """The part of a rerun that reads the damaged files: the complete pairs it keeps, and the files it rewrites."""
    from explainers.evaluation.core import result_columns
    from explainers.evaluation.records import CURVE_COLUMNS, resume_state
    from explainers.run_folder import IMAGE_HASH, table_of
    from explainers.sanity_run import FIELDS, _resume

    if kind == "ev":
        res = table_of(out / "results.csv", (*result_columns(False), IMAGE_HASH))
        done, _ = resume_state(res, table_of(out / "curves.csv", CURVE_COLUMNS))
    else:
        done, _ = _resume(table_of(out / "sanity.csv", [*FIELDS, IMAGE_HASH]), ("cascading",), True)
    return frozenset(done), tuple((out / n).read_bytes() for n in sorted(_snapshot(out)) if n.endswith(".csv"))


@pytest.mark.slow
@pytest.mark.parametrize("kind, name, lines", [("ev", "results.csv", 1), ("ev", "curves.csv", 3),
                                               ("sa", "sanity.csv", 12)])
def test_truncating_the_last_record_at_every_byte_offset_resumes(setup, tmp_path, kind, name, lines):
    """Every offset goes through the reading step (what keeps whole records and drops a cut one); one full rerun
    per distinct outcome of that step shows that it resumes to exactly the uninterrupted result."""
    files = EV_FILES if kind == "ev" else SA_FILES
    data = (setup[kind] / name).read_bytes()
    start = _last_record_start(data, lines)
    if kind == "sa":  # the last record: every line of the last image
        last = data[start:].split(b",", 1)[0]
        assert all(line.startswith(last + b",") for line in data[start:].splitlines())
    originals = {n: (setup[kind] / n).read_bytes() for n in files if n.endswith(".csv")}
    outcomes = {}
    for cut in range(start, len(data)):
        out = _fresh(setup[kind], tmp_path / "t", files)
        (out / name).write_bytes(data[:cut])
        done, kept = _resume_only(kind, out)
        for n, b in zip(sorted(originals), kept):  # whole records only: a prefix of the file, ending in a newline
            assert originals[n].startswith(b) and b.endswith(b"\n"), (cut, n)
        outcomes.setdefault((done, kept), cut)
    assert outcomes and all(len(done) < 6 for done, _ in outcomes)  # each outcome leaves a pair to compute
    for cut in outcomes.values():
        out = _fresh(setup[kind], tmp_path / "t", files)
        (out / name).write_bytes(data[:cut])
        assert _rerun(setup, kind, out) == "resumed", cut


_damage = st.one_of(
    st.tuples(st.just("truncate"), st.integers(0, 10 ** 6), st.just(0)),
    st.tuples(st.just("flip"), st.integers(0, 10 ** 6), st.integers(1, 255)),
    st.tuples(st.just("flip2"), st.integers(0, 10 ** 6), st.integers(0, 10 ** 6)),
)


def _apply(path: Path, how: str, a: int, b: int) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        del data[a % (len(data) + 1):]
    elif how == "flip":
        data[a % len(data)] ^= b
    else:
        for pos in (a, b):
            data[pos % len(data)] ^= 1 << (pos % 8)
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("kind", ["ev", "sa"])
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_damage_to_a_finished_folder(setup, tmp_path, kind, data):
    files = EV_FILES if kind == "ev" else SA_FILES
    name, damage = data.draw(st.sampled_from(files)), data.draw(_damage)
    out = _fresh(setup[kind], tmp_path / "h", files)
    _apply(out / name, *damage)
    _rerun(setup, kind, out)


SWAPS = {
    "results.csv <-> curves.csv": ("ev", [("ev", "results.csv", "curves.csv"), ("ev", "curves.csv", "results.csv")]),
    "results.csv of another run": ("ev", [("other", "results.csv", "results.csv")]),
    "curves.csv of another run": ("ev", [("other", "curves.csv", "curves.csv")]),
    "run.json of another run": ("ev", [("other", "run.json", "run.json")]),
    "run.json of a sanity run": ("ev", [("sa", "run.json", "run.json")]),
    "sanity.csv as results.csv": ("ev", [("sa", "sanity.csv", "results.csv")]),
    "run.json of an evaluate run": ("sa", [("ev", "run.json", "run.json")]),
    "results.csv as sanity.csv": ("sa", [("ev", "results.csv", "sanity.csv")]),
}


@pytest.mark.parametrize("case", list(SWAPS))
def test_swapped_files_are_refused(setup, tmp_path, case):
    kind, swaps = SWAPS[case]
    out = _fresh(setup[kind], tmp_path / "s", EV_FILES if kind == "ev" else SA_FILES)
    for src, name, dst in swaps:
        (out / dst).write_bytes((setup[src] / name).read_bytes())
    assert _rerun(setup, kind, out) == "refused"
