"""Explainer page: see studio.settings.EXPLAINER_PAGES["masks"]."""

from vit_explain_studio.views import method_page

method_page("masks")
