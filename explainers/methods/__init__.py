"""Every method module registers itself in ``explainers.METHODS`` on import (one file per method family)."""

from . import (  # noqa: F401
    attention,
    attnlrp,
    beyond_intuition,
    cam,
    captum_baselines,
    captum_sampling,
    gradients,
    gradmask,
    legrad,
    lrp,
    reciprocam,
    rise,
    similarity_graph,
    tis,
    vit_cx,
)
