"""The attention browser: see studio.attention_browser."""

from vit_explain_studio.attention_browser import page

page()
