"""Benchmark: the committed reference runs (evaluation and sanity checks of every method on the real models)."""

from vit_explain_studio.benchmark_view import benchmark_page

benchmark_page()
