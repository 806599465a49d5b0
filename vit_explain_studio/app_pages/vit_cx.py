"""Explainer page: see studio.settings.EXPLAINER_PAGES["vit_cx"]."""

from vit_explain_studio.views import method_page

method_page("vit_cx")
