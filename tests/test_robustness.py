"""Bad input gets a clear error naming the problem (never a traceback from deep inside Pillow or torch),
and the library keeps working afterwards: images, parameters, targets, model names and weights files.

Issue 6 ("Robustness"). Tests never reach the network: ``no_network`` makes any connection attempt fail
loudly and records it.
"""

from __future__ import annotations

import io
import pickle
import socket
import struct
import time
import zlib

import numpy as np
import pytest
import torch
from conftest import WEIGHTS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import explainers
from explainers import METHODS, ImageError, InvalidParameterError, ModelLoadError, explain, load_image
from explainers import images as images_mod

CHEAP_METHOD = "attention_rollout"


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def encode(img: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A valid PNG that *declares* w x h RGB pixels: a decompression bomb when w*h is huge."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (1 + 3 * min(w, 1000)))  # a sliver of data: a bomb is small on disk
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")


def check_explanation(model, exp) -> None:
    assert exp.heatmap.shape == tuple(model.input_size)
    assert np.isfinite(exp.heatmap).all() and exp.heatmap.min() >= 0 and exp.heatmap.max() <= 1
    assert np.isfinite(exp.patch_map).all()
    assert 0 <= exp.target < model.num_classes and 0 <= exp.probability <= 1


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails and is recorded."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access is disabled in the tests")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return attempts


@pytest.fixture(scope="module")
def cat_png(cat_image) -> bytes:
    return encode(cat_image.resize((160, 120)))


# ----------------------------------------------------------------------------------------------------------
# Files that are not (usable) images
# ----------------------------------------------------------------------------------------------------------
def test_zero_byte_file(deit_tiny, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    for source in (b"", empty, io.BytesIO(b"")):
        with pytest.raises(ImageError, match=r"empty \(0 bytes\)"):
            explain(deit_tiny, source, CHEAP_METHOD)


def test_truncated_jpeg(deit_tiny, cat_image):
    data = encode(cat_image, "JPEG")
    with pytest.raises(ImageError, match="truncated or corrupt"):
        explain(deit_tiny, data[: len(data) // 2], CHEAP_METHOD)
    with pytest.raises(ImageError):  # only the header left
        load_image(data[:200])


def test_text_file_named_png(deit_tiny, tmp_path):
    fake = tmp_path / "holiday.png"
    fake.write_text("this is a shopping list, not a picture\n" * 20)
    with pytest.raises(ImageError, match=r"holiday\.png is not an image in a supported format \(PNG, JPEG"):
        explain(deit_tiny, fake, CHEAP_METHOD)


def test_formats_that_would_run_programs_are_refused():
    """EPS would be rendered by Ghostscript (an external program): only raster formats are decoded."""
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nnewpath 0 0 moveto 10 10 lineto stroke\n"
    with pytest.raises(ImageError, match="not an image in a supported format"):
        load_image(eps)
    assert "EPS" not in images_mod.FORMATS and "PNG" in images_mod.FORMATS


def test_missing_path_and_wrong_types(deit_tiny, tmp_path):
    with pytest.raises(ImageError, match="does not exist"):
        explain(deit_tiny, tmp_path / "nope.jpg", CHEAP_METHOD)
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path)  # a folder
    with pytest.raises(ImageError, match="cannot read an image from a int"):
        explain(deit_tiny, 12345, CHEAP_METHOD)
    with pytest.raises(ImageError, match="text mode"):
        load_image(io.StringIO("abc"))


def test_file_size_limit(monkeypatch, tmp_path, cat_png):
    monkeypatch.setattr(images_mod, "MAX_FILE_BYTES", 1000)
    p = tmp_path / "big.png"
    p.write_bytes(cat_png)
    with pytest.raises(ImageError, match="the limit is 0 MB|MB limit"):
        load_image(p)
    with pytest.raises(ImageError, match="MB limit"):
        load_image(cat_png)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize("side", [12_000, 20_000, 50_000])
def test_decompression_bomb_refused_before_decoding(monkeypatch, side):
    """12000² (144 MP: Pillow only warns), 20000² (400 MP) and 50000² (2.5 GP: Pillow's own check fires)
    are all refused from the header, with the limit named, without decoding a single pixel."""
    from PIL import ImageFile

    def no_decoding(self):
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    data = png_header_only(side, side)
    assert len(data) < 10_000
    t0 = time.perf_counter()
    with pytest.raises(ImageError, match=r"more than the 100-megapixel limit; refused before decoding"):
        load_image(data)
    assert time.perf_counter() - t0 < 1.0


def test_oversized_pil_image_and_array_refused(monkeypatch):
    monkeypatch.setattr(images_mod, "MAX_PIXELS", 10_000)
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(Image.new("RGB", (200, 100)))
    with pytest.raises(ImageError, match="megapixel limit"):
        load_image(np.zeros((100, 200, 3), np.uint8))


# ----------------------------------------------------------------------------------------------------------
# Unusual but valid images: decoded to upright 8-bit RGB with the right pixels
# ----------------------------------------------------------------------------------------------------------
def _modes() -> dict[str, tuple[bytes, tuple[int, int, int]]]:
    """name -> (encoded file, the RGB value expected at pixel (0, 0))."""
    pal = Image.new("P", (16, 16), 1)
    pal.putpalette([0, 0, 0, 200, 30, 40] + [0] * 762)
    pal_t = Image.new("P", (16, 16), 0)
    pal_t.putpalette([10, 20, 30] * 256)
    g16 = Image.fromarray(np.full((16, 16), 32896, np.uint16))  # 32896 / 65535 * 255 = 128
    return {
        "grayscale": (encode(Image.new("L", (16, 16), 77)), (77, 77, 77)),
        "grayscale+alpha (opaque)": (encode(Image.new("LA", (16, 16), (90, 255))), (90, 90, 90)),
        "grayscale+alpha (transparent)": (encode(Image.new("LA", (16, 16), (90, 0))), (255, 255, 255)),
        "palette": (encode(pal), (200, 30, 40)),
        "palette with transparency": (encode(pal_t, transparency=0), (255, 255, 255)),
        "RGBA half transparent": (encode(Image.new("RGBA", (16, 16), (0, 0, 0, 128))), (127, 127, 127)),
        "CMYK (TIFF)": (encode(Image.new("CMYK", (16, 16), (255, 0, 0, 0)), "TIFF"), (0, 255, 255)),
        "CMYK (JPEG)": (encode(Image.new("CMYK", (16, 16), (0, 255, 0, 0)), "JPEG", quality=95), (255, 0, 255)),
        "16-bit PNG": (encode(g16), (128, 128, 128)),
        "1-bit": (encode(Image.new("1", (16, 16), 1)), (255, 255, 255)),
        "1x1": (encode(Image.new("RGB", (1, 1), (5, 200, 9))), (5, 200, 9)),
        "WebP": (encode(Image.new("RGB", (16, 16), (0, 0, 255)), "WEBP", lossless=True), (0, 0, 255)),
    }


@pytest.mark.parametrize("name", list(_modes()))
def test_unusual_modes_decode_to_rgb_and_explain(deit_tiny, name):
    data, expected = _modes()[name]
    img = load_image(data)
    assert img.mode == "RGB"
    assert np.abs(np.subtract(img.getpixel((0, 0)), expected)).max() <= 3, img.getpixel((0, 0))
    check_explanation(deit_tiny, explain(deit_tiny, data, CHEAP_METHOD))


def test_16bit_uses_the_full_range():
    ramp = np.array([[0, 257, 32896, 65535]], np.uint16)
    out = np.asarray(load_image(encode(Image.fromarray(ramp))))[0, :, 0]
    assert out.tolist() == [0, 1, 128, 255]


def test_float_image_with_nan_is_finite():
    a = np.full((8, 8), np.nan, np.float32)
    a[0, 0], a[0, 1] = 0.0, 2.0
    out = np.asarray(load_image(Image.fromarray(a, "F")))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 255


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(io.BytesIO(data)).n_frames == 3
    assert load_image(data).getpixel((10, 10)) == (255, 0, 0)
    # a GIF left on a later frame by the caller is also read from its first frame
    opened = Image.open(io.BytesIO(data))
    opened.seek(2)
    assert load_image(opened).getpixel((10, 10)) == (255, 0, 0)


def test_exif_rotated_photo_is_shown_upright(deit_tiny):
    stored = Image.new("RGB", (64, 32), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 32, 32))  # left half red, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90° clockwise to display
    data = encode(stored, "PNG", exif=exif)
    up = load_image(data)
    assert up.size == (32, 64)  # portrait once upright
    assert up.getpixel((16, 5)) == (255, 0, 0) and up.getpixel((16, 58)) == (0, 0, 255)  # stored left = top
    upright = stored.transpose(Image.Transpose.ROTATE_270)
    a = explain(deit_tiny, data, CHEAP_METHOD)
    b = explain(deit_tiny, upright, CHEAP_METHOD)
    np.testing.assert_array_equal(a.patch_map, b.patch_map)


def test_large_images_are_downscaled(deit_tiny):
    wide = load_image(encode(Image.new("RGB", (5000, 200), (9, 9, 9))))
    assert wide.size == (4096, 164)
    jpeg = encode(Image.linear_gradient("L").resize((8400, 300)).convert("RGB"), "JPEG")
    big = load_image(jpeg)  # decoded at half scale (draft), then fitted to 4096
    assert max(big.size) == images_mod.DOWNSCALE_TO and big.mode == "RGB"
    check_explanation(deit_tiny, explain(deit_tiny, jpeg, CHEAP_METHOD))


def test_extreme_aspect_ratio_is_cheap(deit_tiny):
    """A 20000x1 strip once made preprocessing allocate a 1M x 256 image (1 GB, 8 s)."""
    t0 = time.perf_counter()
    x = deit_tiny.preprocess(Image.new("RGB", (20000, 1), (50, 60, 70)))
    assert time.perf_counter() - t0 < 3.0  # was 8 s unloaded
    assert tuple(x.shape) == (1, 3, *deit_tiny.input_size)
    # ordinary shapes keep the exact resize-then-crop of the reference pipeline
    img = Image.linear_gradient("L").convert("RGB").resize((300, 200))
    r, (H, W) = deit_tiny.preprocessing.resize, deit_tiny.input_size
    rw, rh = round(300 * r / 200), r
    left, top = (rw - W) // 2, (rh - H) // 2
    ref = img.resize((rw, rh), Image.BICUBIC).crop((left, top, left + W, top + H))
    got = deit_tiny.preprocessing.to_pixels(deit_tiny.preprocess(img).cpu())[0]
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy() * 255, np.asarray(ref, np.float32), atol=0.6)


def test_numpy_arrays(deit_tiny):
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(load_image(u8)), u8)
    np.testing.assert_array_equal(np.asarray(load_image(u8 / 255.0)), u8)  # float in [0, 1]
    assert load_image(np.zeros((5, 6), bool)).size == (6, 5)
    check_explanation(deit_tiny, explain(deit_tiny, u8, CHEAP_METHOD))
    with pytest.raises(ImageError, match=r"float images must be in \[0, 1\]"):
        explain(deit_tiny, u8.astype(np.float32), CHEAP_METHOD)
    with pytest.raises(ImageError, match="NaN"):
        load_image(np.full((4, 4), np.nan))
    with pytest.raises(ImageError, match="has shape"):
        load_image(np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(ImageError, match="signed dtype"):
        load_image(np.zeros((4, 4), np.int16))


def test_bad_tensors(deit_tiny):
    with pytest.raises(ImageError, match="multiple of the patch size"):
        explain(deit_tiny, torch.zeros(3, 100, 100), CHEAP_METHOD)
    with pytest.raises(ImageError, match=r"\(B, 3, H, W\)"):
        explain(deit_tiny, torch.zeros(1, 1, 224, 224), CHEAP_METHOD)
    with pytest.raises(ImageError, match="smaller than one"):
        explain(deit_tiny, torch.zeros(1, 3, 8, 8), CHEAP_METHOD)


def test_library_keeps_working_after_errors(deit_tiny, cat_image):
    before = explain(deit_tiny, cat_image, CHEAP_METHOD)
    for bad in (b"", b"GIF89a" + b"\0" * 5, png_header_only(30000, 30000), "no/such/file.png"):
        with pytest.raises(ImageError):
            explain(deit_tiny, bad, CHEAP_METHOD)
    with pytest.raises(InvalidParameterError):
        explain(deit_tiny, cat_image, CHEAP_METHOD, discard_ratio=1.5)
    after = explain(deit_tiny, cat_image, CHEAP_METHOD)
    np.testing.assert_array_equal(before.patch_map, after.patch_map)


# ----------------------------------------------------------------------------------------------------------
# Parameters, targets, method names
# ----------------------------------------------------------------------------------------------------------
def test_named_out_of_range_parameters(deit_tiny, cat_image):
    with pytest.raises(InvalidParameterError, match=r"'discard_ratio' must be in \[0.0, 0.99\]; got 1.5"):
        explain(deit_tiny, cat_image, "attention_rollout", discard_ratio=1.5)
    with pytest.raises(InvalidParameterError, match=r"'start_layer' must be in \[0, 11\]; got -1"):
        explain(deit_tiny, cat_image, "gradient_rollout", start_layer=-1)
    with pytest.raises(InvalidParameterError, match=r"'start_layer' must be in \[0, 11\]; got 12"):
        explain(deit_tiny, cat_image, "chefer_rollout", start_layer=12)
    with pytest.raises(InvalidParameterError, match="'discard_ratio' must be a float; got 'lots'"):
        explain(deit_tiny, cat_image, "attention_rollout", discard_ratio="lots")
    with pytest.raises(InvalidParameterError, match="'discard_ratio' must be a float; got nan"):
        explain(deit_tiny, cat_image, "attention_rollout", discard_ratio=float("nan"))
    with pytest.raises(InvalidParameterError, match="'start_layer' must be an integer; got 1.5"):
        explain(deit_tiny, cat_image, "attention_rollout", start_layer=1.5)
    with pytest.raises(InvalidParameterError, match="must be one of mean, max, min; got 'median'"):
        explain(deit_tiny, cat_image, "attention_rollout", head_fusion="median")
    with pytest.raises(InvalidParameterError, match="has no parameter 'discard'; its parameters are"):
        explain(deit_tiny, cat_image, "attention_rollout", discard=0.5)
    with pytest.raises(InvalidParameterError, match="unknown method 'rollout'; available: attention_rollout"):
        explain(deit_tiny, cat_image, "rollout")


@pytest.mark.parametrize("method", ["gradmask", "similarity_graph"])
def test_masks_layer_zero_is_refused(deit_tiny, cat_image, method):
    if method not in METHODS:
        pytest.skip(f"{method} is not registered in this checkout")
    with pytest.raises(InvalidParameterError, match=r"'masks_layer' must be in \[1, \d+\]; got 0"):
        explain(deit_tiny, cat_image, method, masks_layer=0)


def _bad_values(p, model) -> list:
    """Values every method must refuse for parameter ``p``: below/above the range, wrong types."""
    lo, hi = p.bounds(model)
    if p.kind == "bool":
        return ["maybe", 2, 0.5]
    if p.kind == "choice":
        return ["definitely-not-a-choice"]
    bad = ["abc", [1], float("inf")] + (["nan"] if p.kind == "float" else [0.5])
    if lo is not None:
        bad.append(lo - 1)
    if hi is not None:
        bad.append(hi + 1)
    return bad


@pytest.mark.parametrize("method", list(METHODS))
def test_every_parameter_refuses_bad_values_before_any_work(deit_tiny, cat_image, method, monkeypatch):
    """Checked up front: no forward pass runs for a bad value (the model is never called)."""
    m = METHODS[method]

    def no_forward(*a, **k):
        raise AssertionError("the model ran before the parameters were checked")

    monkeypatch.setattr(deit_tiny, "trace", no_forward)
    monkeypatch.setattr(deit_tiny, "forward", no_forward)
    monkeypatch.setattr(deit_tiny, "forward_tokens", no_forward)
    for p in m.params:
        for value in _bad_values(p, deit_tiny):
            with pytest.raises(InvalidParameterError, match=repr(p.name)):
                explain(deit_tiny, cat_image, method, **{p.name: value})


@pytest.mark.parametrize("target", [1000, -1, 10**9, 2.5, "cat", True, [3, 4]])
def test_target_outside_the_classes(deit_tiny, cat_image, target):
    with pytest.raises(InvalidParameterError, match=r"outside this model's classes \(0\.\.999\)|integer|targets"):
        explain(deit_tiny, cat_image, "gradient_rollout", target=target)


def test_target_accepts_numpy_and_integral_floats(deit_tiny, cat_image):
    ref = explain(deit_tiny, cat_image, "gradient_rollout", target=281)
    for t in (np.int64(281), 281.0, torch.tensor(281)):
        np.testing.assert_array_equal(explain(deit_tiny, cat_image, "gradient_rollout", target=t).patch_map,
                                      ref.patch_map)


# ----------------------------------------------------------------------------------------------------------
# Model names and weights files
# ----------------------------------------------------------------------------------------------------------
def test_unknown_model_name_without_network(no_network):
    with pytest.raises(ModelLoadError, match="unknown model 'vit_nonexistent_model_9'.*Try e.g."):
        explainers.load_model("vit_nonexistent_model_9", device="cpu")
    with pytest.raises(ModelLoadError, match="non-empty string"):
        explainers.load_model("  ", device="cpu")
    assert no_network == []


def test_hub_model_offline_names_the_fix(no_network):
    for name in ("deit_tiny_patch16_224", "someone/no-such-vit"):
        with pytest.raises(explainers.WeightsUnavailableError, match=r"pass weights=<path"):
            explainers.load_model(name, device="cpu")
    assert no_network == []  # HF_HUB_OFFLINE (set in conftest): not even an attempt


def test_weights_of_another_architecture(no_network):
    with pytest.raises(ModelLoadError, match="do not fit the timm architecture 'vit_small_patch16_224'"):
        explainers.load_model("vit_small_patch16_224", weights=WEIGHTS, device="cpu")
    with pytest.raises(ModelLoadError, match="do not fit"):  # HF-layout weights given to a timm name
        explainers.load_model("deit_tiny_patch16_224", weights=WEIGHTS / "hf" / "model.safetensors", device="cpu")


def test_missing_or_garbage_weights(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        explainers.load_model("deit_tiny_patch16_224", weights=tmp_path / "nothing.safetensors", device="cpu")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a tensor file")
    with pytest.raises(ModelLoadError, match="could not read weights file"):
        explainers.load_model("deit_tiny_patch16_224", weights=junk, device="cpu")
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(ModelLoadError, match="no weights file"):
        explainers.load_model("deit_tiny_patch16_224", weights=tmp_path / "empty_folder", device="cpu")


class _Payload:
    """Unpickling this would run code (create a file)."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pth_weights_are_never_unpickled_as_code(tmp_path, deit_tiny):
    marker = tmp_path / "pwned"
    _Payload.marker = marker
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps({"head.weight": _Payload()}))
    with pytest.raises(ModelLoadError, match=r"weights_only=True\) and never run as code"):
        explainers.load_model("deit_tiny_patch16_224", weights=evil, device="cpu")
    assert not marker.exists()
    # a plain state dict in a .pth loads (weights_only=True accepts tensors)
    good = tmp_path / "deit.pth"
    torch.save(deit_tiny.module.state_dict(), good)
    model = explainers.load_model("deit_tiny_patch16_224", weights=good, device="cpu")
    ref = dict(deit_tiny.module.state_dict())
    assert all(torch.equal(v, ref[k]) for k, v in model.module.state_dict().items())


def test_non_vit_architecture_is_unsupported():
    with pytest.raises(explainers.UnsupportedModelError, match="not a Vision Transformer with global attention"):
        explainers.load_model("resnet18", weights="random", device="cpu")


# ----------------------------------------------------------------------------------------------------------
# Property-based: random image sizes, modes and parameter values through explain
# ----------------------------------------------------------------------------------------------------------
# Methods cheap enough for many examples (a few passes; the masked-forward methods are covered by
# validate() below and by the concurrency/determinism tests).
FEW_PASS = [n for n, m in METHODS.items()
            if "forwards" not in m.cost and "passes" not in m.cost and " per " not in m.cost]
MODES = {"RGB": ("PNG", "JPEG", "BMP", "WEBP"), "L": ("PNG", "JPEG", "GIF"), "LA": ("PNG",), "RGBA": ("PNG", "WEBP"),
         "P": ("PNG", "GIF", "BMP"), "CMYK": ("JPEG", "TIFF"), "I;16": ("PNG",), "1": ("PNG", "BMP"),
         "F": ("TIFF",), "I": ("TIFF",)}


def _random_image(rng: np.random.Generator, w: int, h: int, mode: str) -> Image.Image:
    rgb = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.normal(size=(h, w)).astype(np.float32), "F")
    if mode == "I":
        return Image.fromarray(rng.integers(-1000, 1000, (h, w)).astype(np.int32), "I")
    if mode in ("RGBA", "LA"):
        img = rgb.convert(mode)
        img.putalpha(Image.fromarray(rng.integers(0, 256, (h, w), dtype=np.uint8), "L"))
        return img
    return rgb.convert(mode)


@st.composite
def param_values(draw, method, model, allow_invalid: bool):
    """(params, valid) for ``method``: in-range values, or (sometimes) one out-of-range/wrong-typed one."""
    params = {}
    for p in METHODS[method].params:
        if not draw(st.booleans()):
            continue  # leave at its default
        lo, hi = p.bounds(model)
        if p.kind == "bool":
            params[p.name] = draw(st.booleans())
        elif p.kind == "choice":
            params[p.name] = draw(st.sampled_from(p.choices))
        elif p.kind == "int":
            hi_ = min(hi if hi is not None else lo + 8, lo + 64) if p.name == "batch_size" else hi
            params[p.name] = draw(st.integers(lo, hi_ if hi_ is not None else lo + 8))
        else:
            params[p.name] = draw(st.floats(lo, hi, allow_nan=False))
    valid = True
    if allow_invalid and METHODS[method].params and draw(st.integers(0, 3)) == 0:
        p = draw(st.sampled_from(METHODS[method].params))
        params[p.name] = draw(st.sampled_from(_bad_values(p, model)))
        valid = False
    return params, valid


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(size=st.tuples(st.integers(1, 320), st.integers(1, 320)), mode=st.sampled_from(sorted(MODES)),
       encoded=st.booleans(), seed=st.integers(0, 2**32 - 1), method=st.sampled_from(FEW_PASS), data=st.data())
def test_property_random_images_and_parameters_through_explain(deit_tiny, size, mode, encoded, seed, method,
                                                               data):
    rng = np.random.default_rng(seed)
    img = _random_image(rng, *size, mode)
    source = img
    if encoded:
        fmt = data.draw(st.sampled_from(MODES[mode]))
        source = encode(img, fmt)
    params, valid = data.draw(param_values(method, deit_tiny, allow_invalid=True))
    if not valid:
        with pytest.raises(InvalidParameterError):
            explain(deit_tiny, source, method, **params)
        return
    exp = explain(deit_tiny, source, method, **params)
    check_explanation(deit_tiny, exp)
    assert exp.method == method and exp.patch_map.shape == deit_tiny.grid()


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), method=st.sampled_from(list(METHODS)))
def test_property_validate_accepts_the_range_and_refuses_the_rest(deit_tiny, data, method):
    """For every method (also the many-pass ones): in-range values come back unchanged, anything else is
    refused with InvalidParameterError (never another exception)."""
    params, valid = data.draw(param_values(method, deit_tiny, allow_invalid=True))
    m = METHODS[method]
    if valid:
        out = m.validate(params, deit_tiny)
        assert {k: out[k] for k in params} == params
        assert set(out) == {p.name for p in m.params}
    else:
        with pytest.raises(InvalidParameterError):
            m.validate(params, deit_tiny)
