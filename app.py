"""vit-explain-studio: the Streamlit app. Run with ``streamlit run app.py`` (or ``make run``).

The entry point draws the shared sidebar (model, device, image, target class) on every rerun and routes to
the pages with ``st.navigation``. The page scripts live in ``app_pages/``, not ``pages/``: Streamlit treats
a ``pages/`` folder as a legacy (v1) multipage app and can then run a page script without this entry point.
Offline: set ``VIT_EXPLAIN_WEIGHTS`` to local weights of the default model.
"""

import streamlit as st

from studio import settings, state

st.set_page_config(page_title="ViT Explain Studio", page_icon=":material/visibility:", layout="wide")

explainer_pages = [st.Page(f"app_pages/{spec.key}.py", title=spec.title, icon=spec.icon)
                   for spec in settings.EXPLAINER_PAGES if spec.available()]
navigation = st.navigation({
    "Start": [st.Page("app_pages/home.py", title="Overview", icon=":material/home:", default=True)],
    "Explainers": explainer_pages,
    "Analysis": [st.Page("app_pages/compare.py", title="Compare", icon=":material/compare:"),
                 st.Page("app_pages/evaluate.py", title="Evaluate", icon=":material/analytics:")],
})
state.sidebar()
navigation.run()
