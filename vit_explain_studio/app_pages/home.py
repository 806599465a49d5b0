"""Landing page: the two-class story on a bundled photo with no clicks."""

from vit_explain_studio.landing import home_page

home_page()
