"""Inside the model: the logit lens (:func:`logit_lens`), attention-head importance (:func:`head_importance`) and
high-norm artefact tokens (:func:`token_norms`), for every supported family and every target kind."""

from .heads import ABLATIONS, HeadResult, head_importance
from .lens import LensResult, logit_lens
from .norms import RATIO, NormResult, high_norm, token_norms

__all__ = ["ABLATIONS", "HeadResult", "LensResult", "NormResult", "RATIO", "head_importance", "high_norm",
           "logit_lens", "token_norms"]
