"""Explainer page: see studio.settings.EXPLAINER_PAGES["gradmask"]."""

from vit_explain_studio.views import method_page

method_page("gradmask")
