"""Inside the model: see vit_explain_studio.inside_view."""

from vit_explain_studio.inside_view import page

page()
