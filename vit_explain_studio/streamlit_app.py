"""The main script of an installed app (``vit-explain-studio`` runs ``streamlit run`` on this file); the
repository's ``app.py`` is the same two lines."""

from vit_explain_studio.navigation import run

run()
