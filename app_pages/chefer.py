"""Explainer page: see studio.settings.EXPLAINER_PAGES["chefer"]."""

from studio.views import method_page

method_page("chefer")
