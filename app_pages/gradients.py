"""Explainer page: see studio.settings.EXPLAINER_PAGES["gradients"]."""

from studio.views import method_page

method_page("gradients")
