"""Every method module registers itself in ``explainers.METHODS`` on import (one file per method family)."""

from . import attention, lrp  # noqa: F401
