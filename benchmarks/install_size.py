"""Installed size of a set of requirements, measured on the distributions installed in this environment.

    python benchmarks/install_size.py requirements.txt            # a requirements file (``.[extras]`` lines too)
    python benchmarks/install_size.py --extras app,clip           # this project's core + extras (pyproject.toml)

It follows ``Requires-Dist`` (markers evaluated, requested extras only) through the installed distributions and
sums the sizes of the files each one's RECORD lists. Torch is whatever build this environment holds (e.g. CUDA).
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]


def project_requirements(extras: set[str]) -> list[Requirement]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs, todo, seen = [Requirement(r) for r in project["dependencies"]], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for r in map(Requirement, project["optional-dependencies"][extra]):
            if canonicalize_name(r.name) == canonicalize_name(project["name"]):
                todo.extend(r.extras)
            else:
                reqs.append(r)
    return reqs


def file_requirements(path: Path) -> list[Requirement]:
    reqs = []
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"(?:-e\s+)?\.\[([\w,]+)\]", line)
        reqs.extend(project_requirements(set(m.group(1).split(","))) if m else [Requirement(line)])
    return reqs


def closure(reqs: list[Requirement]) -> dict[str, metadata.Distribution]:
    found, todo = {}, [(r, frozenset(r.extras)) for r in reqs]
    done = set()
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if (name, extras) in done:
            continue
        done.add((name, extras))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            print(f"not installed here: {req.name}", file=sys.stderr)
            continue
        found[name] = dist
        for text in dist.requires or []:
            sub = Requirement(text)
            envs = [{"extra": e} for e in extras] or [{"extra": ""}]
            if sub.marker is None or any(sub.marker.evaluate(env) for env in envs):
                todo.append((sub, frozenset(sub.extras)))
    return found


def size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        p = Path(dist.locate_file(f))
        if p.is_file():
            total += p.stat().st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("requirements", nargs="?", type=Path)
    ap.add_argument("--extras", default=None, help="comma-separated extras of this project (core when empty)")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    if args.requirements is not None:
        reqs = file_requirements(args.requirements)
    else:
        reqs = project_requirements(set(filter(None, (args.extras or "").split(","))))
    dists = closure(reqs)
    sizes = sorted(((size(d), n) for n, d in dists.items()), reverse=True)
    total = sum(s for s, _ in sizes)
    print(f"{len(sizes)} distributions, {total / 2**20:,.0f} MiB installed")
    torch_stack = set(closure([Requirement("torch")])) - {"numpy"}
    rest = [(s, n) for s, n in sizes if n not in torch_stack]
    print(f"  of which {sum(s for s, _ in rest) / 2**20:,.0f} MiB in {len(rest)} distributions outside torch and "
          f"what torch pulls in ({len(torch_stack)} distributions)")
    for s, n in sizes[: args.top]:
        print(f"  {s / 2**20:8,.1f} MiB  {n}")


if __name__ == "__main__":
    main()
