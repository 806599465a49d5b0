"""All methods on the current image, side by side."""

from studio.views import compare_page

compare_page()
