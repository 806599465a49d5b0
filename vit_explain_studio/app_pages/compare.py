"""All methods on the current image, side by side."""

from vit_explain_studio.compare import compare_page

compare_page()
