"""Explainer page: see studio.settings.EXPLAINER_PAGES["attention"]."""

from studio.views import method_page

method_page("attention")
