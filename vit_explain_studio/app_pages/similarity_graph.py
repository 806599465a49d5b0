"""Explainer page: see studio.settings.EXPLAINER_PAGES["similarity_graph"]."""

from vit_explain_studio.views import method_page

method_page("similarity_graph")
