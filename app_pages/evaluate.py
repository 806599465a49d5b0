"""Batch evaluation over several images."""

from studio.views import evaluate_page

evaluate_page()
