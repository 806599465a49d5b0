"""Batch evaluation over several images."""

from studio.evaluate_view import evaluate_page

evaluate_page()
