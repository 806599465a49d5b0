"""Explainer page: see studio.settings.EXPLAINER_PAGES["vit_cx"]."""

from studio.views import method_page

method_page("vit_cx")
