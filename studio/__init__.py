"""The Streamlit app's own helpers (the library, ``explainers``, never imports Streamlit).

* :mod:`studio.settings`: environment variables, the curated model list, the pages, the sample gallery;
* :mod:`studio.state`: the shared sidebar (model, device, image, target) and the cached model loading;
* :mod:`studio.compute`: captures, curves and perturbed images, cached across reruns and sessions;
* :mod:`studio.widgets`: parameter widgets built from the method registry;
* :mod:`studio.plots`: Plotly figures; :mod:`studio.report`: downloads;
* :mod:`studio.views`: the bodies of the pages (``app_pages/*.py`` are one-line calls into it).
"""
