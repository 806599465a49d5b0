"""Landing page: a result on a bundled photo with no clicks."""

from studio.views import home_page

home_page()
