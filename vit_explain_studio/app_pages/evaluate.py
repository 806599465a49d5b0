"""Batch evaluation over several images."""

from vit_explain_studio.evaluate_view import evaluate_page

evaluate_page()
