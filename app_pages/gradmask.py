"""Explainer page: see studio.settings.EXPLAINER_PAGES["gradmask"]."""

from studio.views import method_page

method_page("gradmask")
