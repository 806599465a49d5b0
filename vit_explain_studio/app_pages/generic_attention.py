"""Explainer page: see studio.settings.EXPLAINER_PAGES["generic_attention"]."""

from vit_explain_studio.views import method_page

method_page("generic_attention")
