"""Sanity checks: model parameter randomisation and the random-logit test."""

from studio.sanity_page import sanity_page

sanity_page()
