"""Explainer page: see studio.settings.EXPLAINER_PAGES["generic_attention"]."""

from studio.views import method_page

method_page("generic_attention")
