"""Text prompts for CLIP and SigLIP (explainers.text) on tiny randomly initialised models, offline: the CLIP BPE
vocabulary ships with open_clip, the SigLIP tokenizer is a sentencepiece model trained here on a few sentences.

Checked: zero-shot logits equal the models' own ``logits_per_image``; a text target explains exactly what a class
target explains on the zero-shot classifier built from the same text embeddings; contrasts are antisymmetric; every
method and the perturbation metrics run with text targets and leave the model unchanged; open_clip towers."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from model_zoo import fast_params, perturb

import explainers
from explainers import text
from explainers.errors import InvalidParameterError, ModelLoadError
from explainers.targets import ClassLogit, ClassProbability, Contrast

PROMPTS = ["a photo of a dog", "a cat", "a red car on the road", "a bird in the sky"]
# start from the cosine rule, not a linear head
LRP = {m for m, spec in explainers.METHODS.items() if spec.family == "lrp"}


def _clip_tokenizer():
    import transformers as T
    from open_clip.tokenizer import SimpleTokenizer

    t = SimpleTokenizer()
    rename = {"<start_of_text>": "<|startoftext|>", "<end_of_text>": "<|endoftext|>"}
    vocab = {rename.get(k, k): v for k, v in t.encoder.items()}
    return T.CLIPTokenizer(vocab=vocab, merges=sorted(t.bpe_ranks, key=t.bpe_ranks.get))


def _siglip_tokenizer(tmp):
    import sentencepiece as spm
    import transformers as T

    f = io.BytesIO()
    sents = PROMPTS + ["the quick brown fox jumps over the lazy dog", "a photo of the big red dog"]
    spm.SentencePieceTrainer.train(sentence_iterator=iter(sents * 20), model_writer=f, vocab_size=40,
                                   model_type="unigram", pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>",
                                   hard_vocab_limit=False, minloglevel=2)
    path = tmp / "spiece.model"
    path.write_bytes(f.getvalue())
    return T.SiglipTokenizer(vocab_file=str(path))


def _module(kind):
    import transformers as T

    torch.manual_seed(0)
    vis = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=128, image_size=224,
               patch_size=16)
    txt = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    if kind == "clip":
        cfg = T.CLIPConfig(vision_config=vis, text_config={**txt, "vocab_size": 49408}, projection_dim=32)
        return perturb(T.CLIPModel(cfg))
    return perturb(T.SiglipModel(T.SiglipConfig(vision_config=vis, text_config={
        **txt, "vocab_size": 64, "projection_size": 64, "pad_token_id": 0, "bos_token_id": None, "eos_token_id": 1})))


@pytest.fixture(scope="module", params=["clip", "siglip"])
def tiny(request, tmp_path_factory):
    kind = request.param
    m = explainers.models.wrap(_module(kind), f"tiny-{kind}", device="cpu")
    tok = _clip_tokenizer() if kind == "clip" else _siglip_tokenizer(tmp_path_factory.mktemp("spm"))
    text.text_tower(m, tokenizer=tok)
    return kind, m


_TAKES_TARGETS: dict = {}


def methods_taking_target_objects(m) -> list[str]:
    """The methods that explain an embedding model's similarity target (the contract every method is moving to;
    methods that still resolve targets from class logits are left out here and covered in test_families)."""
    key = m.name
    if key not in _TAKES_TARGETS:
        ref = explainers.targets.Similarity(reference=torch.ones(m.outputs(_x()).embedding.shape[-1]))
        ok = []
        for method in explainers.METHODS:
            try:
                explainers.explain(m, _x(), method, target=ref, **fast_params(method))
                ok.append(method)
            except (TypeError, AttributeError):
                pass
        _TAKES_TARGETS[key] = ok
    return _TAKES_TARGETS[key]


def _x(size=(224, 224), seed=1):
    return torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(224, 224), (160, 192)])
@pytest.mark.parametrize("n", [1, 4])
def test_zero_shot_logits_equal_the_models_own(tiny, size, n):
    kind, m = tiny
    x = torch.cat([_x(size, 1), _x(size, 2)])
    prompts = PROMPTS[:n]
    tok = text.text_tower(m).tokens(prompts)
    with torch.inference_mode():
        own = m.module(pixel_values=x, interpolate_pos_encoding=True, **tok).logits_per_image
        ours = text.zero_shot_logits(m, m.outputs(x).embedding, prompts)
    assert ours.shape == (2, n)
    torch.testing.assert_close(ours, own, rtol=1e-4, atol=1e-4 * float(own.abs().max()))


def test_template_ensemble_and_cache(tiny, monkeypatch):
    _, m = tiny
    tmpl = ["a photo of a {}.", "a drawing of a {}."]
    tower = text.text_tower(m)
    f = torch.nn.functional.normalize(tower.encode([t.format("dog") for t in tmpl]), dim=-1)
    expected = torch.nn.functional.normalize(f.mean(0), dim=-1)
    got = text.text_embeddings(m, ["dog"], tmpl)[0]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    calls = []
    monkeypatch.setattr(tower, "encode", lambda texts, **kw: calls.append(texts))
    assert text.text_embeddings(m, ["dog"], tmpl) is not None and not calls  # cached: no text pass
    assert len(text.resolve_templates("imagenet")) == 80 and len(text.imagenet_classnames()) == 1000


class _ZeroShotHead:
    """A linear classifier over the normalised image embedding: rows = scale * normalised text embeddings."""

    def __init__(self, T, scale, bias):
        self.T, self.scale, self.bias = T, scale, bias
        self.weight = T * scale
        self.out_features = T.shape[0]

    def __call__(self, e):
        z = torch.nn.functional.normalize(e, dim=-1) @ self.weight.T.to(e.dtype)
        return z + self.bias if self.bias is not None else z


class _SigmoidLogit(ClassLogit):
    """A class logit scored, on masked images, by its sigmoid (SigLIP's zero-shot probability)."""

    def bind(self, model, outputs, x=None):
        b = super().bind(model, outputs, x)
        b._score = lambda out, c=int(self.index): out.logits[:, c].float().sigmoid()
        return b

    def per_image(self, bound, b):
        sub = super().per_image(bound, b)
        sub._score = bound._score
        return sub


def _classifier(m, labels):
    clf = copy.deepcopy(m)
    tower = text.text_tower(m)
    clf.pooling.head = _ZeroShotHead(text.text_embeddings(m, labels), tower.logit_scale, tower.logit_bias)
    clf.num_classes, clf.labels = len(labels), list(labels)
    return clf


def _close(a, b, what):
    np.testing.assert_allclose(a, b, rtol=2e-3, atol=2e-4 * max(float(np.abs(b).max()), 1e-12), err_msg=what)


def test_text_target_is_the_zero_shot_classifier(tiny):
    kind, m = tiny
    labels = PROMPTS
    clf = _classifier(m, labels)
    x = _x(seed=3)
    ours_t = text.TextSimilarity("a cat", labels=labels)
    theirs_t = _SigmoidLogit(1) if kind == "siglip" else ClassLogit(1)
    for method in methods_taking_target_objects(m):
        if method in LRP:
            continue
        kw = fast_params(method)
        a = explainers.explain(m, x, method, target=ours_t, **kw)
        b = explainers.explain(clf, x, method, target=theirs_t, **kw)
        _close(a.patch_map, b.patch_map, method)
        assert a.probability == pytest.approx(b.probability, rel=1e-4), method
    if kind == "clip":  # the probability target is the classifier's softmax probability
        a = explainers.explain(m, x, "attention_gradcam", target=text.TextProbability("a cat", labels=labels))
        b = explainers.explain(clf, x, "attention_gradcam", target=ClassProbability(1))
        _close(a.patch_map, b.patch_map, "attention_gradcam, probability")
        c = explainers.explain(m, x, "generic_attention", target=text.TextContrast("a cat", "a bird in the sky",
                                                                                   labels=labels))
        d = explainers.explain(clf, x, "generic_attention", target=Contrast(1, 3))
        _close(c.patch_map, d.patch_map, "generic attention, contrast")


def test_lrp_starts_from_the_cosine_with_the_text_embedding(tiny):
    _, m = tiny
    x = _x(seed=4)
    T = text.text_embeddings(m, ["a cat"])
    a = explainers.explain(m, x, "lrp_full", target=text.TextSimilarity("a cat"))
    b = explainers.explain(m, x, "lrp_full", target=explainers.targets.Similarity(reference=T[0]))
    _close(a.patch_map, b.patch_map, "lrp")
    assert np.abs(a.patch_map).max() > 0


@pytest.mark.parametrize("method", ["attention_gradcam", "gradcam", "saliency"])
def test_contrast_is_antisymmetric(tiny, method):
    _, m = tiny
    if method not in methods_taking_target_objects(m):
        pytest.skip(f"{method} does not take target objects yet")
    if method == "saliency":  # the input gradient's magnitude: a sign flip leaves it unchanged
        ab = explainers.explain(m, _x(seed=5), method, target=text.TextContrast("a cat", "a photo of a dog"))
        ba = explainers.explain(m, _x(seed=5), method, target=text.TextContrast("a photo of a dog", "a cat"))
        np.testing.assert_allclose(ba.patch_map, ab.patch_map, rtol=1e-4, atol=1e-9)
        return
    x = _x(seed=5)
    kw = {"relu": False}
    kw = {k: v for k, v in kw.items() if k in {p.name for p in explainers.METHODS[method].params}}
    ab = explainers.explain(m, x, method, target=text.TextContrast("a cat", "a photo of a dog"), **kw).patch_map
    ba = explainers.explain(m, x, method, target=text.TextContrast("a photo of a dog", "a cat"), **kw).patch_map
    assert np.abs(ab).max() > 0
    np.testing.assert_allclose(ba, -ab, rtol=1e-4, atol=1e-6 * float(np.abs(ab).max()))


def test_every_method_and_metric_runs_and_the_model_is_unchanged(tiny):
    kind, m = tiny
    x = _x(seed=6)
    before = {k: v.clone() for k, v in m.module.state_dict().items()}
    target = text.TextProbability("a cat", labels=PROMPTS)
    for method in methods_taking_target_objects(m):
        e = explainers.explain(m, x, method, target=target, **fast_params(method))
        assert e.patch_map.shape == m.grid(x) and np.isfinite(e.patch_map).all(), method
        assert e.label == "p(text 'a cat')" and 0 < e.probability < 1, method
    sal = explainers.explain(m, x, "generic_attention", target=target).patch_map
    curves = explainers.metrics.insertion_deletion(m, x, sal, target, steps=8)
    assert np.isfinite(curves.insertion_auc) and np.isfinite(curves.deletion_auc)
    with torch.inference_mode():
        p = text.zero_shot_logits(m, m.outputs(x).embedding, target.labels)
        p = p.sigmoid() if kind == "siglip" else p.softmax(-1)
    assert curves.insertion[-1] == pytest.approx(float(p[0, target.labels.index("a cat")]), rel=1e-3)
    for k, v in m.module.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not m.module.training and not any(mod._forward_hooks or mod._backward_hooks
                                             for mod in m.module.modules())


def test_refusals(tiny):
    kind, m = tiny
    x = _x()
    if kind == "clip":
        with pytest.raises(InvalidParameterError, match="other labels"):
            explainers.explain(m, x, "generic_attention", target=text.TextProbability("a cat"))
    with pytest.raises(InvalidParameterError, match="two different"):
        text.TextContrast("a cat", "a cat ")
    with pytest.raises(InvalidParameterError, match="template"):
        text.TextSimilarity("a cat", templates=["no placeholder"])
    with pytest.raises(InvalidParameterError, match="non-empty"):
        text.TextSimilarity("  ")
    backbone = explainers.models.wrap(perturb(_module("clip").vision_model), "vision only", device="cpu")
    with pytest.raises(InvalidParameterError, match="no text tower"):
        explainers.explain(backbone, x, "generic_attention", target=text.TextSimilarity("a cat"))


def test_zero_shot_ranks_labels(tiny):
    kind, m = tiny
    top = text.zero_shot(m, _x(), PROMPTS, templates=None, top=3)
    assert len(top) == 3 and all(lab in PROMPTS for lab, _ in top)
    assert [p for _, p in top] == sorted([p for _, p in top], reverse=True)
    if kind == "clip":
        assert sum(p for _, p in text.zero_shot(m, _x(), PROMPTS, templates=None, top=4)) == pytest.approx(1.0)


def _open_clip_model():
    from open_clip.model import CLIP

    torch.manual_seed(0)
    return perturb(CLIP(embed_dim=32, vision_cfg=dict(image_size=64, layers=2, width=64, patch_size=16, head_width=32),
                        text_cfg=dict(context_length=77, vocab_size=49408, width=32, heads=2, layers=1)))


def test_open_clip_tower_matches_encode_image_and_its_own_logits():
    module = _open_clip_model()
    m = explainers.models.wrap(module, "tiny-open-clip", device="cpu")
    assert m.family.startswith("open_clip") and m.pooling.kind == "token" and m.verify() < 1e-4
    x = torch.cat([_x((64, 64), 1), _x((64, 64), 2)])
    tok = text.text_tower(m).tokens(PROMPTS)["text"]
    with torch.inference_mode():
        torch.testing.assert_close(m.outputs(x).embedding, module.encode_image(x), rtol=1e-4, atol=1e-5)
        img, txt, scale = module(x, tok)
        own = scale * img @ txt.T
        ours = text.zero_shot_logits(m, m.outputs(x).embedding, PROMPTS)
    torch.testing.assert_close(ours, own, rtol=1e-4, atol=1e-4 * float(own.abs().max()))
    e = explainers.explain(m, x[:1], "generic_attention", target=text.TextSimilarity("a cat"))
    assert e.patch_map.shape == (4, 4) and np.abs(e.patch_map).max() > 0


def test_open_clip_names_are_checked_without_network():
    with pytest.raises(ModelLoadError, match="unknown open_clip model"):
        explainers.load_model("open_clip:NoSuchNet/openai", device="cpu")
    with pytest.raises(ModelLoadError, match="pretrained tag"):
        explainers.load_model("open_clip:ViT-B-32", device="cpu")
    with pytest.raises(ModelLoadError, match="151 M parameters"):  # counted on the meta device
        explainers.load_model("open_clip:ViT-B-32/openai", weights="random", device="cpu", max_params="10M")
    with pytest.raises(explainers.errors.WeightsUnavailableError, match="hub"):  # HF_HUB_OFFLINE in conftest
        explainers.load_model("hf-hub:timm/ViT-B-16-SigLIP", device="cpu")


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    """A Hugging Face CLIP folder (model and tokenizer files) and a folder of two random photos."""
    from PIL import Image

    tmp = tmp_path_factory.mktemp("clip")
    folder = tmp / "tiny-clip"
    _module("clip").save_pretrained(folder)
    _clip_tokenizer().save_pretrained(folder)
    images = tmp / "images"
    images.mkdir()
    for i in range(2):
        arr = np.random.default_rng(i).integers(0, 255, (240, 260, 3), dtype=np.uint8)
        Image.fromarray(arr).save(images / f"img{i}.png")
    return folder, images


@pytest.mark.parametrize("precision", ["float32", "float64"])
def test_lrp_methods_run_on_the_zero_shot_classifier(tiny, precision):
    """The zero-shot head's text embeddings are no module parameter: the float64 copy used to leave them float32
    and the LRP head rule failed on the dtype mismatch (full LRP computes in float64 by default)."""
    _, m = tiny
    clf = text.zero_shot_classifier(m, PROMPTS, templates=None)
    x = _x(seed=5)
    for method in sorted(LRP):
        kw = {"precision": precision} if "precision" in explainers.METHODS[method].defaults() else {}
        e = explainers.explain(clf, x, method, target=1, **kw)
        assert np.isfinite(e.patch_map).all() and np.ptp(e.patch_map) > 0, method


def test_zero_shot_classifier_predicts_the_top_label(tiny):
    from PIL import Image

    from explainers.evaluate import evaluate_images

    _, m = tiny
    clf = text.zero_shot_classifier(m, PROMPTS, templates=None)
    pils = [Image.fromarray(np.random.default_rng(i).integers(0, 255, (230, 250, 3), dtype=np.uint8))
            for i in range(2)]
    x = torch.cat([m.preprocess(p) for p in pils])
    with torch.inference_mode():
        logits = clf.forward(x)
        zs = text.zero_shot_logits(m, m.outputs(x).embedding, PROMPTS)
    torch.testing.assert_close(logits, zs, rtol=1e-5, atol=1e-5)
    assert clf.num_classes == 4 and clf.labels == PROMPTS and m.num_classes == 0  # the model itself is unchanged
    rows = evaluate_images(clf, [("a", pils[0]), ("b", pils[1])], "attention_rollout", steps=4)
    assert [r["target"] for r in rows] == logits.argmax(-1).tolist()
    assert all(np.isfinite(r["insertion_auc"]) and not r["error"] for r in rows)


def test_command_line_evaluates_zero_shot(clip_folder, tmp_path, capsys):
    import csv

    from explainers.cli import main

    folder, images = clip_folder
    out = tmp_path / "eval"
    assert main(["evaluate", "--model", str(folder), "--images", str(images), "--methods", "attention_rollout",
                 "--zero-shot", "a cat,a photo of a dog,a bird in the sky", "--zero-shot-templates", "none",
                 "--steps", "4", "--device", "cpu", "--quiet", "--out", str(out)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 2 and all(r["target_label"] in ("a cat", "a photo of a dog", "a bird in the sky")
                                  and not r["error"] for r in rows)


def test_command_line_explains_a_prompt(clip_folder, tmp_path, capsys):
    import json

    from PIL import Image

    from explainers.cli import main

    folder, images = clip_folder
    img = images / "img0.png"
    args = ["explain", "--model", str(folder), "--image", str(img), "--method", "attention_gradcam", "--device",
            "cpu", "--out", str(tmp_path / "map.png"), "--npy", str(tmp_path / "map.npy")]
    assert main(args + ["--text", "a cat", "--labels", "a photo of a dog,a cat,a bird in the sky"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["label"] == "text: 'a cat'" and 0 < out["probability"] < 1
    m = explainers.load_model(str(folder), device="cpu")
    lib = explainers.explain(m, Image.open(img), "attention_gradcam", target=text.TextSimilarity(
        "a cat", labels=["a photo of a dog", "a cat", "a bird in the sky"]))
    _close(np.load(tmp_path / "map.npy"), lib.patch_map, "command line")
    assert main(args + ["--text", "a cat", "--text-contrast", "a photo of a dog"]) == 0
    assert "rather than" in json.loads(capsys.readouterr().out)["label"]
    assert main(args + ["--text-prob", "--text", "a cat"]) == 2  # CLIP: a probability needs other labels
    assert "other labels" in capsys.readouterr().err


def test_generic_attention_is_chefers_clip_explanation():
    """Chefer et al.'s multimodal repository explains CLIP by ``R += mean_h((dy/dA * A)^+) R`` over the image
    blocks, y = logits_per_image[image, prompt], image relevance = R[0, 1:] (their notebook's start_layer=0).
    Computed here on the Hugging Face model's own attention probabilities (eager attention, output_attentions)."""
    module = _module("clip")
    module.set_attn_implementation("eager")
    m = explainers.models.wrap(module, "tiny-clip-eager", device="cpu")
    text.text_tower(m, tokenizer=_clip_tokenizer())
    x = _x(seed=9)
    out = module(pixel_values=x, output_attentions=True, **text.text_tower(m).tokens(PROMPTS))
    attns = out.vision_model_output.attentions
    grads = torch.autograd.grad(out.logits_per_image[0, 1], attns)
    N = attns[0].shape[-1]
    R = torch.eye(N)
    for A, G in zip(attns, grads):
        R = R + (G * A).clamp(min=0).mean(1)[0] @ R
    expected = R[0, 1:].reshape(m.grid(x)).detach().numpy()
    ours = explainers.explain(m, x, "generic_attention", target=text.TextSimilarity("a cat", labels=PROMPTS))
    _close(ours.patch_map, expected, "Chefer's CLIP rule")
