"""Cost of a text target (CLIP prompt) relative to a class target, per method.

The same randomly initialised CLIP model (ViT-Tiny-sized image tower by default: 12 layers, width 192, 224 px)
is explained twice per method: with ``explainers.text.TextSimilarity("a cat", labels=...)`` and, as the class
reference, with a class target on the zero-shot classifier built from the same text embeddings (a linear head over
the normalised image embedding). The text pass is excluded: the prompt embeddings are computed once before timing
and come from the cache afterwards. Target: within 10% (ratio <= 1.10) for every method.

The two timings are interleaved (A, B, A, B, ...) and the medians compared, so a busy machine slows both.
Methods that do not accept target objects are listed as such.

    python benchmarks/bench_text.py [--size tiny|small] [--repeats 3] [--methods a,b] [--device cpu] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "tests"))

from timing import add_timing_options, interleaved, setup_threads  # noqa: E402

import explainers  # noqa: E402
from explainers import text  # noqa: E402
from explainers.targets import ClassLogit  # noqa: E402

SIZES = {"tiny": dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128),
         "small": dict(hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768)}
LABELS = ["a photo of a dog", "a cat", "a red car on the road", "a bird in the sky"]


def build(size: str, device: str):
    import transformers as T
    from model_zoo import fast_params, perturb
    from test_text import _classifier, _clip_tokenizer

    torch.manual_seed(0)
    vis = dict(**SIZES[size], image_size=224, patch_size=16)
    txt = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64, vocab_size=49408)
    module = perturb(T.CLIPModel(T.CLIPConfig(vision_config=vis, text_config=txt, projection_dim=64)))
    m = explainers.models.wrap(module, f"clip-{size}", device=device)
    text.text_tower(m, tokenizer=_clip_tokenizer())
    return m, _classifier(m, LABELS), fast_params


def main(argv=None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="small", choices=sorted(SIZES))
    ap.add_argument("--methods", default="", help="comma-separated (default: all)")
    ap.add_argument("--full", action="store_true", help="the methods' default parameters (default: the cheapest)")
    add_timing_options(ap, repeats=3)
    args = ap.parse_args(argv)
    print(setup_threads(args))
    m, clf, fast_params = build(args.size, args.device)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)).to(args.device)
    target = text.TextSimilarity("a cat", labels=LABELS)
    t0 = time.perf_counter()
    text.text_embeddings(m, target.labels)  # the text pass: once, then cached
    text_s = time.perf_counter() - t0
    methods = [s for s in args.methods.split(",") if s] or list(explainers.METHODS)
    rows = []
    print(f"CLIP image tower {args.size} ({m.num_layers} layers, width {m.embed_dim}), {args.device}; text pass "
          f"{text_s * 1000:.1f} ms once for {len(LABELS)} prompts, cached (excluded below)")
    print(f"{'method':24s} {'class s':>9s} {'text s':>9s} {'ratio':>7s}")
    for name in methods:
        kw = {} if args.full else fast_params(name)
        try:
            t_text, t_cls = interleaved(lambda n=name, kw=kw: explainers.explain(m, x, n, target=target, **kw),
                                        lambda n=name, kw=kw: explainers.explain(clf, x, n, target=ClassLogit(1),
                                                                                 **kw), args.repeats)
        except (TypeError, AttributeError) as e:
            print(f"{name:24s} does not accept target objects yet ({type(e).__name__})")
            rows.append({"method": name, "ratio": None})
            continue
        ratio = t_text / t_cls
        flag = "" if ratio <= 1.10 else "  over the 10% target"
        print(f"{name:24s} {t_cls:9.3f} {t_text:9.3f} {ratio:7.3f}{flag}")
        rows.append({"method": name, "class_s": t_cls, "text_s": t_text, "ratio": ratio})
    done = [r["ratio"] for r in rows if r["ratio"] is not None]
    if done:
        print(f"median ratio {statistics.median(done):.3f}, worst {max(done):.3f} (target <= 1.10)")
    return rows


if __name__ == "__main__":
    main()
