"""Every method module registers itself in ``explainers.METHODS`` on import (one file per method family)."""

from . import attention, attnlrp, cam, gradients, gradmask, legrad, lrp, rise, similarity_graph, tis, vit_cx  # noqa: F401
