"""Explainer page: see studio.settings.EXPLAINER_PAGES["gradients"]."""

from vit_explain_studio.views import method_page

method_page("gradients")
