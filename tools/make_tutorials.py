import nbformat as nbf
from pathlib import Path

SETUP = '''import os
from pathlib import Path

import explainers
import vit_explain_studio  # only for its bundled sample photos; it imports no Streamlit


def find_shared() -> Path:
    """The shared data (DeiT-Tiny's weights, validation images): $VIT_EXPLAIN_SHARED, or a `shared` folder
    beside the checkout (found from the notebook's folder upwards)."""
    if os.environ.get("VIT_EXPLAIN_SHARED"):
        return Path(os.environ["VIT_EXPLAIN_SHARED"])
    for folder in [Path.cwd(), *Path.cwd().parents]:
        if (folder / "shared" / "weights").is_dir():
            return folder / "shared"
    raise FileNotFoundError("put the shared data beside the checkout, or set VIT_EXPLAIN_SHARED")


SHARED = find_shared()
SAMPLES = Path(vit_explain_studio.__file__).parent / "assets" / "samples"
model = explainers.load_model("deit_tiny_patch16_224", weights=SHARED / "weights" / "deit_tiny_patch16_224",
                              device="cpu")
model.name, model.num_classes'''


def nb(cells):
    n = nbf.v4.new_notebook()
    n.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                  "language_info": {"name": "python"}}
    n.cells = [nbf.v4.new_markdown_cell(c[3:]) if c.startswith("md:") else nbf.v4.new_code_cell(c) for c in cells]
    return n


books = {}
books["explain_one_photo"] = nb([
"""md:# Explain one photo with several methods

This tutorial loads the real DeiT-Tiny ImageNet classifier from local weights, explains the bundled photo of a bull
mastiff and a tiger cat with four methods, and compares the maps with the insertion and deletion curves: a
faithful map makes the class probability rise fast when its top pixels are revealed (insertion, higher is better)
and fall fast when they are removed (deletion, lower is better).""",
SETUP,
"""from PIL import Image

image = Image.open(SAMPLES / "both.png").convert("RGB")
x = model.preprocess(image)                     # (1, 3, 224, 224), the model's own normalisation
top = explainers.explain(model, x, method="attention_rollout")
print(f"predicted: {top.label} ({top.probability:.2f})")""",
"""md:Each method explains the predicted class (`target=None`). Attention rollout is class-agnostic; the other
three weight the attention by gradients for the class.""",
"""methods = ["attention_rollout", "gradient_rollout", "generic_attention", "transformer_attribution"]
explanations = {m: explainers.explain(model, x, method=m) for m in methods}
for m, e in explanations.items():
    print(f"{m:25s} {e.seconds:.2f} s  map {tuple(e.patch_map.shape)}  {explainers.METHODS[m].cost}")""",
"""import matplotlib.pyplot as plt

from explainers.viz import overlay

fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 4))
for ax, (m, e) in zip(axes, explanations.items()):
    ax.imshow(overlay(image, e.heatmap))
    ax.set_title(explainers.METHODS[m].display_name)
    ax.axis("off")""",
"""md:## Insertion and deletion curves

`explainers.metrics.insertion_deletion` ranks the pixels by the map and scores the perturbed images in batches.
Ten steps keep this cheap; the default `standard` preset uses twenty. The two reference maps (a seeded random map
and a centred Gaussian) give every number a floor.""",
"""from explainers import metrics

target = top.target
maps = {m: e.heatmap for m, e in explanations.items()}
grid = top.patch_map.shape                      # the patch grid, (14, 14)
maps["random"] = metrics.random_map(grid, seed=0)
maps["gaussian"] = metrics.gaussian_map(grid)
curves = {m: metrics.insertion_deletion(model, x, s, target, steps=10) for m, s in maps.items()}
for m, c in sorted(curves.items(), key=lambda kv: -kv[1].insertion_auc):
    print(f"{m:25s} insertion AUC {c.insertion_auc:.3f}   deletion AUC {c.deletion_auc:.3f}")""",
"""fig, (ins, dele) = plt.subplots(1, 2, figsize=(11, 4))
for m, c in curves.items():
    ins.plot(c.fractions, c.insertion, label=m)
    dele.plot(c.fractions, c.deletion, label=m)
ins.set(title="insertion (higher is better)", xlabel="fraction revealed", ylabel="class probability")
dele.set(title="deletion (lower is better)", xlabel="fraction removed")
ins.legend(fontsize=8)""",
"""md:## Other cheap parameters without new passes

`explainers.capture` runs the model passes once; `explainers.render` redraws with other post-processing
parameters (the parameters marked "recomputes the passes: no" on the method pages) without any model pass.""",
"""cap = explainers.capture(model, x, "attention_rollout")
for ratio in (0.0, 0.5, 0.9):
    e = explainers.render(cap, model, discard_ratio=ratio)
    print(ratio, float(e.patch_map.max()))""",
])

books["batch_evaluation"] = nb([
"""md:# Batch evaluation and the pointing game

`explainers.evaluate.evaluate_images` explains every image with every method and scores each map: insertion and
deletion AUC, and, where the image has ground-truth boxes, the pointing game (does the map's maximum fall in an
object box?) and its energy variant (the share of the map inside the boxes). This tutorial runs it on three of the
ImageNet validation images in `../shared/images/imagenet-val100` with DeiT-Tiny. The same evaluation runs on the
command line (`vit-explain evaluate`), sharded on Ray with `--ray`.""",
SETUP,
"""import json

from PIL import Image

folder = SHARED / "images" / "imagenet-val100"
boxes = json.loads((folder / "boxes.json").read_text())
names = sorted(boxes)[:3]
images = [(n, Image.open(folder / n).convert("RGB")) for n in names]
[(n, boxes[n]["label"], len(boxes[n]["boxes_xyxy"])) for n in names]""",
"""md:## One image by hand

The pointing game needs the boxes in the model-input frame (the model sees a resized, centre-cropped image):
`boxes_to_input_frame` maps them there.""",
"""from explainers import metrics

name, image = images[0]
x = model.preprocess(image)
e = explainers.explain(model, x, method="generic_attention")
frame_boxes = metrics.boxes_to_input_frame(boxes[name]["boxes_xyxy"], (boxes[name]["width"], boxes[name]["height"]),
                                           model.preprocessing)
hit = metrics.pointing_game(e.heatmap, frame_boxes, x.shape[-2:])
print(e.label, "| pointing game hit:", hit, "| energy in the boxes:",
      round(metrics.energy_pointing_game(e.heatmap, frame_boxes, x.shape[-2:]), 3))""",
"""md:## All images, several methods

`random` and `gaussian` are the reference rows. Ten curve steps keep the run short; `summarize` gives the mean and
95 % confidence interval per method and metric (three images make wide intervals: this shows the workflow, it is
not a benchmark).""",
"""from explainers.evaluate import evaluate_images, summarize, summary_markdown

rows = evaluate_images(model, images, ["attention_rollout", "generic_attention", "random", "gaussian"],
                       boxes=boxes, steps=10)
print(len(rows), "rows; columns:", sorted(k for k in rows[0] if not k.endswith("curve")))""",
"""from IPython.display import Markdown

Markdown(summary_markdown(summarize(rows)))""",
])

books["text_prompts"] = nb([
"""md:# Text prompts with a CLIP-style model

With a CLIP or SigLIP model loaded whole (image and text towers), a map can explain where the photo matches a few
typed words (see [Text prompts](../text.md)). Real CLIP weights are a 600 MB download; this tutorial runs
offline, so it builds a **tiny randomly initialised CLIP** (two blocks, 64 wide) with the real CLIP tokenizer
vocabulary that ships with open_clip. Its zero-shot answers are meaningless: the tutorial shows the calls, not a
result. With network access, replace the model by
`explainers.load_model("openai/clip-vit-base-patch16")`.

It needs the `clip` extra (`pip install "vit-explain-studio[clip]"`).""",
"""from pathlib import Path

import torch
import transformers as T
from open_clip.tokenizer import SimpleTokenizer
from PIL import Image

import explainers
import vit_explain_studio
from explainers import text

torch.manual_seed(0)
config = T.CLIPConfig(
    vision_config=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128,
                       image_size=224, patch_size=16),
    text_config=dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                     vocab_size=49408),
    projection_dim=32)
clip = T.CLIPModel(config)          # random weights: a stand-in for a real CLIP
model = explainers.models.wrap(clip, "tiny-random-clip", device="cpu")

# the CLIP BPE vocabulary, from open_clip, as a Hugging Face tokenizer
bpe = SimpleTokenizer()
rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
tokenizer = T.CLIPTokenizer(vocab={rename.get(k, k): v for k, v in bpe.encoder.items()},
                            merges=sorted(bpe.bpe_ranks, key=bpe.bpe_ranks.get))
text.text_tower(model, tokenizer=tokenizer)   # a real model brings its own tokenizer
image = Image.open(Path(vit_explain_studio.__file__).parent / "assets" / "samples" / "both.png").convert("RGB")""",
"""md:## Zero-shot

The score is the model's own: `exp(logit_scale) * cos(image, text)`, a softmax over the prompts for CLIP.""",
"""labels = ["a dog", "a cat", "a bird"]
text.zero_shot(model, image, labels)""",
"""md:## Explain a prompt

`TextSimilarity` explains the prompt's zero-shot logit, `TextProbability` its probability among the labels,
`TextContrast` the difference of two prompts' logits. Any method takes these targets.""",
"""import matplotlib.pyplot as plt

targets = {"similarity to 'a dog'": text.TextSimilarity("a dog", labels=labels),
           "probability of 'a dog'": text.TextProbability("a dog", labels=labels),
           "'a dog' rather than 'a cat'": text.TextContrast("a dog", "a cat")}
fig, axes = plt.subplots(1, 3, figsize=(12, 4))
for ax, (title, target) in zip(axes, targets.items()):
    e = explainers.explain(model, image, "generic_attention", target=target)
    ax.imshow(e.heatmap, cmap="inferno")
    ax.set_title(title)
    ax.axis("off")""",
"""md:`text.zero_shot_classifier(model, labels)` turns the model into a classifier over the labels, so class indices,
the metrics and the batch evaluation work on it as on an ImageNet model.""",
"""classifier = text.zero_shot_classifier(model, labels)
e = explainers.explain(classifier, image, "attention_gradcam")
e.label, round(e.probability, 3)""",
])

books["sanity_checks"] = nb([
"""md:# Sanity checks

Insertion/deletion says how a map scores, not whether the method reads the model at all. The model parameter
randomisation test (Adebayo et al., NeurIPS 2018) randomises a copy of the model from the head down and explains
the same class again: a method that depends on the weights gives a different map. The random-logit test (Sixt et
al., ICML 2020) explains a random other class: a class-specific method gives a different map. See
[Sanity checks](../sanity-checks.md).""",
SETUP,
"""from PIL import Image

from explainers import sanity

image = Image.open(SAMPLES / "chelsea.png").convert("RGB")
methods = ["attention_rollout", "attention_gradcam", "gaussian"]
# steps=7: the head, then the top half of DeiT-Tiny's 12 blocks (what the verdict needs; leave it out for all)
results = sanity.sanity_check(model, image, methods, mode="cascading", seed=0, steps=7)
for r in results:
    print(f"{r.method:20s} passes: {r.passes()!s:5s}  random logit: {r.random_logit.get('spearman', float('nan')):.2f}")""",
"""md:The Spearman similarity of each step's map to the original, as the head and then the blocks from the last
down are randomised (the first seven steps here). The centred Gaussian does not depend on the model at all, so it stays at 1 and is flagged:
that is what the check is built to catch.""",
"""import matplotlib.pyplot as plt

fig, ax = plt.subplots(figsize=(8, 4))
for r in results:
    ax.plot(range(len(r.spearman)), r.spearman, marker="o", label=r.method)
ax.axhline(sanity.PASS_THRESHOLD, color="grey", linestyle="--", label="pass threshold")
ax.set(xlabel="randomisation step (0 = original)", ylabel="Spearman similarity")
ax.legend(fontsize=8)""",
])

out = Path("docs/tutorials")
for name, book in books.items():
    nbf.write(book, out / f"{name}.ipynb")
    print(name, len(book.cells))
