"""The app's entry: the page list, the shared sidebar and the routing, run on every rerun.

``app.py`` at the repository root (``streamlit run app.py``, Hugging Face Spaces) and ``streamlit_app.py`` in
this package (the ``vit-explain-studio`` command of an installed distribution) are both two-line scripts that
call :func:`run`. The page scripts live in ``app_pages/`` of this package, not ``pages/``: Streamlit treats a
``pages/`` folder beside the main script as a legacy (v1) multipage app and can then run a page without this
entry. On a cold server the main area shows the title and the loading progress at once (PyTorch and the model
load for several seconds), before the heavy imports. Offline: set ``VIT_EXPLAIN_WEIGHTS`` to local weights of
the default model.

Nothing a visitor does may show them a traceback: :func:`run` catches any exception the sidebar or a page lets
through and shows a short message with a reference that the server's log repeats beside the full traceback
(Streamlit's stop and rerun signals derive from ``BaseException`` and pass through). What escapes even this (a widget
callback, which runs before the script) meets ``client.showErrorDetails = "none"`` in ``config.toml``: Streamlit's
own generic message, without the exception's text or trace. The test suite sets ``VIT_EXPLAIN_STRICT_ERRORS=1``
(an operator's setting, never a visitor's) so that the error is also raised and fails the test that met it.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid

import streamlit as st

LOG = logging.getLogger("studio")


def run() -> None:
    st.set_page_config(page_title="ViT Explain Studio", page_icon=":material/visibility:", layout="wide")
    try:
        _route()
    except Exception as e:  # noqa: BLE001 - the last line of defence: a message for the visitor, the trace logged
        show_failure(e)
        if os.environ.get("VIT_EXPLAIN_STRICT_ERRORS") == "1":  # set by the test suite (tests/conftest.py) only
            raise


def show_failure(error: Exception) -> None:
    """An unexpected error as a visitor sees it: what happened in plain words and a reference for the operator
    (the log holds the traceback under the same reference); never the exception's text (it may name server
    paths) nor its trace."""
    ref = uuid.uuid4().hex[:8]
    LOG.error("unexpected error (reference %s)", ref, exc_info=error)
    st.error(f"Something went wrong on this page ({type(error).__name__}). Try again, or pick another model, "
             f"image or method; if it keeps happening, tell the operator the reference **{ref}**.",
             icon=":material/error:")


def _route() -> None:
    boot = st.empty()  # the loading progress while PyTorch and the model load; emptied by the sidebar
    if "vit_explain_studio.state" not in sys.modules:  # the first run in this process: the imports take seconds
        with boot.container():
            st.title("ViT Explain Studio")
            st.progress(0.1, text="Starting the server: loading PyTorch and the explainers…")

    from . import settings, state  # heavy: torch, timm, transformers

    page = settings.page
    explainer_pages = [st.Page(page(spec.key), title=spec.title, icon=spec.icon)
                       for spec in settings.EXPLAINER_PAGES if spec.available()]
    analysis = [st.Page(page("compare"), title="Compare", icon=":material/compare:"),
                st.Page(page("evaluate"), title="Evaluate", icon=":material/analytics:"),
                st.Page(page("attention_browser"), title="Attention browser", icon=":material/grid_on:"),
                st.Page(page("inside"), title="Inside the model", icon=":material/neurology:"),
                st.Page(page("sanity"), title="Sanity checks", icon=":material/rule:"),
                st.Page(page("benchmark"), title="Benchmark", icon=":material/leaderboard:")]
    navigation = st.navigation({
        "Start": [st.Page(page("home"), title="Overview", icon=":material/home:", default=True)],
        "Explainers": explainer_pages,
        "Analysis": analysis,
    }, expanded=True)  # every page listed: no "View more" hiding Evaluate and the attention browser
    # The landing page has its own class buttons, Evaluate explains each image's predicted class and the attention
    # browser shows raw attention (the same for every class) and Benchmark the committed reference runs: the
    # sidebar's target would do nothing there.
    state.sidebar(boot, show_target=navigation.title not in ("Overview", "Evaluate", "Attention browser", "Benchmark"))
    navigation.run()
