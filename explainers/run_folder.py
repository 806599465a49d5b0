"""Run folders of the ``evaluate`` and ``sanity`` commands: a fingerprint of everything that changes the numbers,
checksummed CSV records, atomic writes and a lock.

``run.json`` holds the fingerprint (model name, a SHA-256 of the weights, input size, classes, labels, zero-shot
labels and templates, the command's settings, :data:`RESULTS_VERSION`) and the parameters of every method in the
folder. A rerun with another fingerprint is refused, naming the differences; the same fingerprint resumes.

Every line of a CSV file after its header ends in a ``checksum`` column: the CRC-32 of the line's bytes before it,
seeded with the run's id (a hash of the fingerprint), so a changed line, or a file copied from another run, is
found. Records are appended whole (one write per record); a last line cut by an interruption is dropped and its
record computed again; any other damaged line is reported with its number and the fix, never skipped silently.
Files that are replaced whole (``run.json``, summaries) are written to a temporary file and renamed.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .errors import InvalidParameterError
from .identity import weights_digest

FORMAT = "vit-explain-run/1"
RESULTS_VERSION = 1  # raise it when a change of the library changes the numbers a run folder holds
CHECKSUM = "checksum"
IMAGE_HASH = "input_sha256"  # of the inputs of a row: the image file (and its boxes.json entry)


class RunFolderError(InvalidParameterError):
    """A run folder that cannot be used as it is: another configuration, damaged or foreign files, a lock."""


def canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def file_digest(path) -> str:
    """First 16 hex digits of the SHA-256 of a file ("" when it cannot be read)."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return ""
    return h.hexdigest()[:16]


def model_fingerprint(model) -> dict:
    """What identifies the numbers a model gives: name, weights hash, input size, classes and labels (and the
    zero-shot labels and templates of a zero-shot classifier). A Ray pool passes what its workers computed."""
    given = getattr(model, "run_fingerprint", None)
    if isinstance(given, dict):
        return dict(given)
    labels = getattr(model, "labels", None)
    return {"model": str(getattr(model, "name", type(model).__name__)),
            "weights_sha256": weights_digest(model.module),
            "input_size": [int(v) for v in getattr(model, "input_size", ()) or ()],
            "num_classes": getattr(model, "num_classes", None),
            "labels_sha256": sha256_text(canonical([str(v) for v in labels])) if labels else None,
            "zero_shot": json.loads(canonical(getattr(model, "zero_shot", None)))}


def method_params(names, overrides: dict | None = None) -> dict:
    """{method: its parameters (the registry's defaults, updated with ``overrides[method]``)} as plain JSON."""
    from .registry import METHODS

    out = {}
    for n in names:
        p = dict(METHODS[n].defaults()) if n in METHODS else {}
        p.update((overrides or {}).get(n, {}))
        out[n] = json.loads(canonical(p))
    return out


def with_added_params(name: str, recorded: dict) -> dict:
    """The parameters of ``name`` a folder recorded, with the parameters added to the method since (``Param.added``)
    at their defaults: those defaults are the method as it ran before, so its rows stay valid."""
    from .registry import METHODS

    if name not in METHODS or not isinstance(recorded, dict):
        return recorded
    later = {p.name: json.loads(canonical(p.default)) for p in METHODS[name].params
             if p.added and p.name not in recorded}
    return {**recorded, **later}


def refuse_random_weights(weights) -> None:
    """``--weights random`` draws new weights on every load: its rows could neither be resumed nor reproduced."""
    if isinstance(weights, str) and weights.strip() == "random":
        raise RunFolderError(
            "--weights random draws new weights on every load, so the run could neither be resumed nor repeated; "
            "save one random model (torch.save(model.module.state_dict(), 'random.pth')) and pass that file")


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write a whole file through a temporary file and a rename: readers see the old or the new file, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as e:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise RunFolderError(f"cannot write {path} ({e.strerror or e}); if it is a folder or read-only, move it "
                             "away, or use another --out folder") from None


def _short(v) -> str:
    if isinstance(v, str) and len(v) >= 32 and all(c in "0123456789abcdef" for c in v):
        return v[:12] + "…"
    text = repr(v)
    return text if len(text) <= 80 else text[:77] + "…"


def _a(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def differences(old: dict, new: dict) -> list[str]:
    return [f"{k}: {_short(old.get(k))} in the folder, {_short(new.get(k))} now"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]


@dataclass
class Record:
    line: int
    cells: dict
    raw: bytes


class Table:
    """A checksummed CSV file: a header line (the columns and ``checksum``), then one record per line."""

    def __init__(self, path: Path, columns, seed: int):
        self.path, self.columns, self.seed = Path(path), tuple(columns) + (CHECKSUM,), seed
        self.header = (",".join(self.columns) + "\n").encode()

    def encode(self, cells: list) -> bytes:
        import io

        buf = io.StringIO()
        csv.writer(buf, lineterminator="").writerow([_text(c) for c in cells])
        body = buf.getvalue().encode("utf-8")
        return body + b"," + _crc(body, self.seed) + b"\n"

    def damaged(self, line: int, why: str) -> RunFolderError:
        return RunFolderError(
            f"{self.path} line {line} is damaged ({why}): it was changed after it was written (a disk error, an edit, "
            "or a file copied from another run). Delete that line to compute its rows again, or use another --out "
            "folder.")

    def read(self) -> tuple[list[Record], bool]:
        """(records, whether a last line cut by an interruption was left out). Raises :class:`RunFolderError`
        for anything else that is not a whole record of this run."""
        if not self.path.exists():
            return [], False
        if not self.path.is_file():
            raise RunFolderError(f"{self.path} is not a file; move it away, or use another --out folder")
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise RunFolderError(f"cannot read {self.path} ({e.strerror or e})") from None
        lines = data.split(b"\n")
        tail = lines.pop()
        if not lines:  # nothing or a cut header
            if self.header.startswith(tail):
                return [], bool(tail)
            raise self.damaged(1, "it is not the header of this file")
        if lines[0] != self.header[:-1]:
            why = "a file written before run folders had checksums" if CHECKSUM.encode() not in lines[0] else \
                "not the header of this file"
            raise self.damaged(1, f"{why}; expected {self.header[:-1].decode()!r}")
        out = []
        for i, line in enumerate(lines[1:], start=2):
            body, sep, crc = line.rpartition(b",")
            if not sep or crc != _crc(body, self.seed):
                raise self.damaged(i, "its checksum does not match")
            try:
                text = body.decode("utf-8")
                csv.field_size_limit(max(csv.field_size_limit(), len(text) + 1))
                cells = next(csv.reader([text]))
            except (UnicodeDecodeError, csv.Error, StopIteration) as e:
                raise self.damaged(i, f"not a CSV record: {e}") from None
            if len(cells) != len(self.columns) - 1:
                raise self.damaged(i, f"{len(cells)} fields instead of {len(self.columns) - 1}")
            out.append(Record(i, dict(zip(self.columns, cells)), line + b"\n"))
        return out, bool(tail)

    def rewrite(self, records: list[Record]) -> None:
        write_atomic(self.path, self.header + b"".join(r.raw for r in records))

    def start(self) -> None:
        """Write the header of a new or empty file."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            write_atomic(self.path, self.header)

    def append(self, lines: list[bytes]) -> None:
        """Append whole records with one write (each line carries its checksum)."""
        if lines:
            with open(self.path, "ab") as fh:
                fh.write(b"".join(lines))
                fh.flush()


def _crc(body: bytes, seed: int) -> bytes:
    import zlib

    return f"{zlib.crc32(body, seed):08x}".encode()


def _text(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    return str(v).replace("\r", " ").replace("\n", " ").replace("\0", " ")


class RunFolder:
    """An output folder bound to one fingerprint: ``open()`` takes the lock and checks ``run.json`` against the
    fingerprint; :meth:`write_run_json` records it once the data files were checked too."""

    def __init__(self, out, command: str, fingerprint: dict, methods: dict, info: dict | None = None,
                 data_files: tuple[str, ...] = ()):
        self.out, self.command = Path(out), command
        self.fingerprint = json.loads(canonical(fingerprint))
        self.methods, self.info, self.data_files = json.loads(canonical(methods)), info or {}, data_files
        self.run_id = sha256_text(canonical({"format": FORMAT, "command": command,
                                             "fingerprint": self.fingerprint}))[:16]
        import zlib

        self.seed = zlib.crc32(self.run_id.encode())
        self._lock = None

    def table(self, name: str, columns) -> Table:
        return Table(self.out / name, columns, self.seed)

    def open(self) -> RunFolder:
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create the --out folder {str(self.out)!r} ({e.strerror or e})") from None
        if not self.out.is_dir():
            raise RunFolderError(f"--out {str(self.out)!r} is not a folder")
        self._take_lock()
        try:
            self._check()
        except BaseException:
            self.close()
            raise
        return self

    def _take_lock(self) -> None:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no lock
            return
        try:
            fh = open(self.out / ".lock", "a+")
        except OSError as e:
            raise RunFolderError(f"cannot write in {self.out} ({e.strerror or e})") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise RunFolderError(f"another run is writing to {self.out} now; wait for it to finish, or use another "
                                 "--out folder") from None
        self._lock = fh

    def close(self) -> None:
        if self._lock is not None:
            self._lock.close()  # releases the lock
            self._lock = None

    def __enter__(self):
        return self.open()

    def __exit__(self, *exc):
        self.close()

    def _check(self) -> None:
        path = self.out / "run.json"
        refuse = f"use another --out folder (or the settings of {path} to resume it)"
        if path.exists() or path.is_symlink():
            old = read_run_json(path)
            if old["command"] != self.command:
                raise RunFolderError(f"{self.out} holds a {old['command']} run, not {_a(self.command)} run; {refuse}")
            diff = differences(old["fingerprint"], self.fingerprint)
            old["methods"] = {m: with_added_params(m, p) for m, p in old["methods"].items()}
            for m in sorted(set(old["methods"]) & set(self.methods)):
                if old["methods"][m] != self.methods[m]:
                    diff.append(f"parameters of {m}: " + "; ".join(differences(old["methods"][m], self.methods[m])))
            if diff:
                raise RunFolderError(f"{self.out} holds results of another configuration ({'; '.join(diff)}); these "
                                     f"change the numbers, so the runs are not mixed: {refuse}")
            self.methods = {**old["methods"], **self.methods}
        else:
            present = [n for n in self.data_files if (self.out / n).exists() and
                       (not (self.out / n).is_file() or (self.out / n).stat().st_size)]
            if present:
                raise RunFolderError(f"{self.out} holds {', '.join(present)} but no run.json, so the configuration "
                                     "of those rows cannot be checked; use another --out folder (or move them away)")

    def write_run_json(self) -> None:
        """Record the fingerprint (and the methods, old and new): once the folder's files were found sound."""
        from . import __version__

        body = {"format": FORMAT, "command": self.command, "run_id": self.run_id, "fingerprint": self.fingerprint,
                "methods": self.methods, "info": {"explainers": __version__, **self.info}}
        body["checksum"] = sha256_text(canonical(body))
        write_atomic(self.out / "run.json", json.dumps(body, indent=1, sort_keys=True) + "\n")


def read_run_json(path) -> dict:
    """The content of a run folder's ``run.json``, checked; :class:`RunFolderError` says what is wrong."""
    path = Path(path)
    fix = "move the folder away, or use another --out folder"
    if not path.is_file():
        raise RunFolderError(f"{path} is not a file; {fix}")
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise RunFolderError(f"{path} is damaged (not readable JSON: {str(e)[:120]}); {fix}") from None
    if not isinstance(body, dict):
        raise RunFolderError(f"{path} is damaged (a JSON {type(body).__name__}, not an object); {fix}")
    if "format" not in body:
        raise RunFolderError(f"{path} was written before run folders carried a fingerprint (no weights hash), so "
                             f"its rows cannot be checked against this run; {fix}")
    if body.get("format") != FORMAT:
        raise RunFolderError(f"{path} has format {_short(body.get('format'))}, this version reads {FORMAT}; {fix}")
    want = body.pop("checksum", None)
    if want != sha256_text(canonical(body)):
        raise RunFolderError(f"{path} was changed after it was written (its checksum does not match); {fix}")
    if not (isinstance(body.get("command"), str) and isinstance(body.get("fingerprint"), dict)
            and isinstance(body.get("methods"), dict) and isinstance(body.get("run_id"), str)):
        raise RunFolderError(f"{path} lacks the fields of a run folder; {fix}")
    return body


def table_of(path, columns) -> Table:
    """The :class:`Table` of a run folder's CSV file, seeded with the id in the ``run.json`` beside it."""
    import zlib

    path = Path(path)
    run = read_run_json(path.parent / "run.json")
    return Table(path, columns, zlib.crc32(run["run_id"].encode()))
