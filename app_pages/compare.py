"""All methods on the current image, side by side."""

from studio.compare import compare_page

compare_page()
