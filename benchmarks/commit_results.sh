#!/usr/bin/env bash
# Commit the reference runs' data as it is now (the runs may go on writing), with docs/benchmark-results.md and
# results/summary.json made from exactly the files committed (a snapshot of the index, not the live files), so
# tests/test_benchmark_results.py holds for the commit. A snapshot caught in the middle of a write is retried.
#
#   benchmarks/commit_results.sh ["commit message"]      (PYTHON=.venv/bin/python to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
message=${1:-"Reference results: the runs so far (benchmarks/run_reference.py)"}
for try in 1 2 3 4 5; do
  git add results
  snap=$(mktemp -d)
  git ls-files -z results | xargs -0 git checkout-index --prefix="$snap/" --
  if "$PY" benchmarks/results_tables.py --root "$snap/results" --write --summary results/summary.json; then
    rm -rf "$snap"
    git add results/summary.json docs/benchmark-results.md
    if git diff --cached --quiet; then
      echo "nothing new to commit"
    else
      git commit -q -m "$message" && git log --oneline -1
    fi
    exit 0
  fi
  rm -rf "$snap"
  echo "try $try: the snapshot caught a write in progress; again in 20 s" >&2
  sleep 20
done
exit 1
