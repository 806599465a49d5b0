"""The attention browser: see studio.attention_browser."""

from studio.attention_browser import page

page()
