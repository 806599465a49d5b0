"""Sanity checks: model parameter randomisation and the random-logit test."""

from vit_explain_studio.sanity_page import sanity_page

sanity_page()
