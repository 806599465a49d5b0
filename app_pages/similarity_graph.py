"""Explainer page: see studio.settings.EXPLAINER_PAGES["similarity_graph"]."""

from studio.views import method_page

method_page("similarity_graph")
