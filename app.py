"""vit-explain-studio: the Streamlit app. Run with ``streamlit run app.py`` (or ``make run``).

The entry point draws the shared sidebar (model, device, image, target class) on every rerun and routes to
the pages with ``st.navigation``. The page scripts live in ``app_pages/``, not ``pages/``: Streamlit treats
a ``pages/`` folder as a legacy (v1) multipage app and can then run a page script without this entry point.
On a cold server the main area shows the title and the loading progress at once (PyTorch and the model load
for several seconds), before the heavy imports. Offline: set ``VIT_EXPLAIN_WEIGHTS`` to local weights of the
default model.
"""

import sys

import streamlit as st

st.set_page_config(page_title="ViT Explain Studio", page_icon=":material/visibility:", layout="wide")

boot = st.empty()  # the loading progress while PyTorch and the model load; emptied by the sidebar
if "studio.state" not in sys.modules:  # the first run in this process: the imports below take seconds
    with boot.container():
        st.title("ViT Explain Studio")
        st.progress(0.1, text="Starting the server: loading PyTorch and the explainers…")

from studio import settings, state  # noqa: E402  (heavy: torch, timm, transformers)

explainer_pages = [st.Page(f"app_pages/{spec.key}.py", title=spec.title, icon=spec.icon)
                   for spec in settings.EXPLAINER_PAGES if spec.available()]
analysis = [st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
            st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
            st.Page("app_pages/attention_browser.py", title="Attention browser", icon=":material/grid_on:")]
if (settings.ROOT / "app_pages" / "sanity.py").exists():
    analysis.append(st.Page("app_pages/sanity.py", title="Sanity checks", icon=":material/rule:"))
navigation = st.navigation({
    "Start": [st.Page("app_pages/home.py", title="Overview", icon=":material/home:", default=True)],
    "Explainers": explainer_pages,
    "Analysis": analysis,
}, expanded=True)  # every page listed: no "View more" hiding Evaluate and the attention browser
# The landing page has its own class buttons, Evaluate explains each image's predicted class and the attention
# browser shows raw attention (the same for every class): the sidebar's target would do nothing there.
state.sidebar(boot, show_target=navigation.title not in ("Overview", "Evaluate", "Attention browser"))
navigation.run()
