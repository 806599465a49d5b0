"""vit-explain-studio: the Streamlit app. Run with ``streamlit run app.py`` (or ``make run``); an installed
distribution runs the same app with the ``vit-explain-studio`` command. The pages, the sidebar and the routing
are in :mod:`vit_explain_studio.navigation`."""

from vit_explain_studio.navigation import run

run()
