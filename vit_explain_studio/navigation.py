"""The app's entry: the page list, the shared sidebar and the routing, run on every rerun.

``app.py`` at the repository root (``streamlit run app.py``, Hugging Face Spaces) and ``streamlit_app.py`` in
this package (the ``vit-explain-studio`` command of an installed distribution) are both two-line scripts that
call :func:`run`. The page scripts live in ``app_pages/`` of this package, not ``pages/``: Streamlit treats a
``pages/`` folder beside the main script as a legacy (v1) multipage app and can then run a page without this
entry. On a cold server the main area shows the title and the loading progress at once (PyTorch and the model
load for several seconds), before the heavy imports. Offline: set ``VIT_EXPLAIN_WEIGHTS`` to local weights of
the default model.
"""

from __future__ import annotations

import sys

import streamlit as st


def run() -> None:
    st.set_page_config(page_title="ViT Explain Studio", page_icon=":material/visibility:", layout="wide")
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
