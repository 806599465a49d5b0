"""The Streamlit app's own helpers (the library, ``explainers``, never imports Streamlit).

* :mod:`vit_explain_studio.settings`: environment variables, the curated model list, the pages, the sample gallery;
* :mod:`vit_explain_studio.state`: the shared sidebar (model, device, image, target) and the cached model loading;
* :mod:`vit_explain_studio.compute`: captures, curves and perturbed images, cached across reruns and sessions;
* :mod:`vit_explain_studio.widgets`: parameter widgets built from the method registry;
* :mod:`vit_explain_studio.plots`: Plotly figures; :mod:`vit_explain_studio.report`: downloads;
* :mod:`vit_explain_studio.views`: the bodies of the pages (``app_pages/*.py`` are one-line calls into it).
"""
