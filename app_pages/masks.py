"""Explainer page: see studio.settings.EXPLAINER_PAGES["masks"]."""

from studio.views import method_page

method_page("masks")
