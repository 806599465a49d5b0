"""A test-only entry of the app whose pages fail: ``streamlit run tests/faulty_app.py`` from the repository root
(so ``.streamlit/config.toml`` applies, as for ``app.py``). Used by ``test_browser_errors.py`` to check what a
visitor's browser shows when something goes wrong that no check caught. A visitor cannot reach this: it is not the
app's entry, and nothing in the app reads it.

* The Overview page raises a ``RuntimeError`` whose text names a server path (as ``OSError`` messages do).
* The sidebar gets a button whose ``on_click`` callback raises: callbacks run before the script, outside the
  app's catch-all, so only ``client.showErrorDetails`` stands between them and the visitor.
"""

from pathlib import Path

import streamlit as st

from vit_explain_studio import landing, navigation

SECRET = str(Path.cwd() / "server-only" / "secret-config.py")


def fail() -> None:
    raise RuntimeError(f"could not read {SECRET}")


landing.home_page = fail  # app_pages/home.py looks it up on every run
navigation.run()
st.sidebar.button("Fail in a callback", key="faulty.callback", on_click=fail)
