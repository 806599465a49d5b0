"""Every method module registers itself in ``explainers.METHODS`` on import (one file per method family)."""

from . import attention, gradmask, lrp, similarity_graph, vit_cx  # noqa: F401
