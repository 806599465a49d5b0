"""Explainer page: see studio.settings.EXPLAINER_PAGES["attribution"]."""

from vit_explain_studio.views import method_page

method_page("attribution")
