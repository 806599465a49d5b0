"""Reading and normalising input images: any decodable file or PIL image becomes an upright RGB image.

Only image decoding happens here (Pillow, restricted to the raster formats in ``FORMATS``: no EPS, which
would run Ghostscript, no vector or container formats); nothing uploaded is executed or unpickled.

Limits (each refusal raises :class:`~explainers.errors.ImageError` with a message naming the limit):

* ``MAX_FILE_BYTES``: the encoded file;
* the file's structure, walked before any decoder runs (:mod:`explainers.image_headers`): marker, chunk
  and tag floods, JPEG scan bombs, formats Pillow decodes in Python above a small size, files holding too
  little data for their declared size (forged headers);
* ``MAX_PIXELS``: the declared width x height (of every image inside an ICO too), from the header;
* ``MAX_DECODE_BYTES``: the estimated peak memory of decoding and converting the image, from its size,
  its mode's bytes per pixel and the decoder's own buffers (:func:`decode_cost`), also before decoding;
* ``DOWNSCALE_TO``: accepted images larger than this on their longer side are downscaled (JPEGs are
  decoded directly at a reduced scale) before any other conversion, so no later step works on more than
  ~17 megapixels.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import ImageError
from .image_headers import inspect

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "MAX_DECODE_BYTES", "DOWNSCALE_TO", "FORMATS", "load_image",
           "decode_image", "prepare_image", "from_array", "decode_cost", "check_decode_cost"]

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 100_000_000  # declared width x height above this is refused before decoding
DOWNSCALE_TO = 4096  # longer side, after decoding
MAX_DECODE_BYTES = 256 * 1024 * 1024  # estimated peak memory of decoding one image (see decode_cost)
MIN_SIDE = 1
# Raster formats an upload may be decoded as (Pillow plugin names; the JPEG plugin also reads MPO).
Image.init()
FORMATS = tuple(f for f in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "AVIF", "PPM", "TGA", "ICO")
                if f in Image.OPEN)
_FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP, TIFF or AVIF"

# Pillow's own bomb check (an error above 2 * MAX_IMAGE_PIXELS, raised while the header is read) is a
# backstop; ours below refuses anything above MAX_PIXELS with a clearer message.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS

_MB = 1024 * 1024
# Bytes per pixel of Pillow's in-memory modes (RGB is stored in 4 bytes), and of the full-size conversion a
# mode needs before it can be downscaled (palette -> RGB(A), 16-bit/float -> 8-bit L in strips, CMYK -> RGB).
_BPP = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}  # others: 4
_CONVERT_BPP = {"1": 1, "P": 4, "PA": 4, "La": 4, "RGBa": 4, "I;16": 1, "I;16B": 1, "I;16L": 1, "I;16N": 1, "I": 1,
                "F": 1, "CMYK": 4, "YCbCr": 4, "LAB": 4, "HSV": 4, "RGBX": 4}
_ALPHA_MODES = {"RGBA", "LA", "La", "PA", "RGBa", "P"}  # P: a palette may carry transparency


def load_image(source) -> Image.Image:
    """Path, bytes, file-like, numpy array or PIL image -> upright RGB PIL image.

    Raises :class:`ImageError` with a message naming the problem (and the limit, where one applies).
    """
    if isinstance(source, Image.Image):
        return prepare_image(source)
    if isinstance(source, np.ndarray):
        return from_array(source)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise ImageError(f"image file {str(p)!r} does not exist (or is not a file)")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{p.name} is {size / _MB:.0f} MB; the limit is {MAX_FILE_BYTES / _MB:.0f} MB")
        data = p.read_bytes()
        label = p.name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), "the upload"
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
        label = getattr(source, "name", None) or "the upload"
        if not isinstance(data, (bytes, bytearray)):
            raise ImageError(f"{label} was opened in text mode; open image files in binary mode ('rb')")
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}; pass a path, bytes, a file, "
                         "a PIL image or a numpy array")
    return decode_image(bytes(data), str(label))


def _bomb_message(label: str, w: int | None = None, h: int | None = None) -> str:
    size = f"{w}x{h} pixels ({w * h / 1e6:.0f} megapixels)" if w is not None else "an enormous size"
    return (f"{label} declares {size}, more than the {MAX_PIXELS / 1e6:.0f}-megapixel limit; refused before "
            f"decoding (a decompression bomb would exhaust memory). Resize it to at most "
            f"{MAX_PIXELS / 1e6:.0f} megapixels and upload it again")


def decode_image(data: bytes, label: str = "the upload") -> Image.Image:
    """Encoded image bytes -> upright RGB PIL image (see :func:`load_image`)."""
    if len(data) == 0:
        raise ImageError(f"{label} is empty (0 bytes); choose an image file ({_FORMAT_NAMES})")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label} is larger than the {MAX_FILE_BYTES / _MB:.0f} MB limit; "
                         "upload a smaller or more compressed image")
    declared = inspect(data, label)  # floods, scan bombs, slow Python decoders: refused from the structure
    for fw, fh, mode in declared.frames:  # before Image.open: it decodes an ICO's image to learn its size, and
        if fw * fh > MAX_PIXELS:  # allocates a WebP's canvases
            raise ImageError(_bomb_message(label, fw, fh))
        check_decode_cost(fw, fh, mode, label, declared.extra_bpp)
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only (ICO: see above)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(_bomb_message(label, w, h))
        if img.format in ("JPEG", "MPO") and max(w, h) > DOWNSCALE_TO:
            k = DOWNSCALE_TO / max(w, h)  # decode at 1/2, 1/4 or 1/8 scale where that suffices: less memory
            img.draft("RGB", (max(1, math.ceil(w * k)), max(1, math.ceil(h * k))))
        check_decode_cost(*img.size, img.mode, label, declared.extra_bpp, declared.extra_bytes, shown=(w, h))
        if declared.short_of_data:
            raise ImageError(declared.short_of_data)
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        px = f" ({int(m.group(1)) / 1e6:.0f} megapixels)" if m else ""
        raise ImageError(_bomb_message(label).replace("an enormous size", "an enormous size" + px)) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image in a supported format ({_FORMAT_NAMES}); "
                         "choose an image file") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        raise ImageError(f"{label} could not be decoded ({e}); the file may be truncated or corrupt: "
                         "re-export or re-download it") from None
    owned = [img]
    del img  # _finish holds the only reference, so each conversion frees the previous (full-size) image
    return _finish(owned, label)


def decode_cost(w: int, h: int, mode: str, extra_bpp: float = 0.0, extra_bytes: int = 0) -> int:
    """Estimated peak bytes of decoding a w x h image of Pillow mode ``mode`` and making it RGB: the decoded
    pixels, the decoder's own buffers (``extra_*``), the full-size conversion that must precede
    downscaling (palette, 16-bit, float, CMYK), the downscaled copy, and the last steps (an upright copy;
    for alpha, an RGB copy, a white background and the mask)."""
    px = w * h
    side = max(w, h, 1)
    last = 9 if mode in _ALPHA_MODES else 4
    full = px * (_BPP.get(mode, 4) + _CONVERT_BPP.get(mode, 0) + extra_bpp) + extra_bytes
    if side <= DOWNSCALE_TO:
        return int(full + px * last)
    return int(full + px * (DOWNSCALE_TO / side) ** 2 * (4 + last))


def check_decode_cost(w: int, h: int, mode: str, label: str = "the image", extra_bpp: float = 0.0,
                      extra_bytes: int = 0, shown: tuple[int, int] | None = None) -> None:
    """Raise :class:`ImageError` when :func:`decode_cost` is above ``MAX_DECODE_BYTES``."""
    cost = decode_cost(w, h, mode, extra_bpp, extra_bytes)
    if cost > MAX_DECODE_BYTES:
        sw, sh = shown or (w, h)
        raise ImageError(
            f"{label} is {sw}x{sh} pixels of mode {mode} ({_BPP.get(mode, 4)} bytes per pixel in memory): decoding "
            f"it would take about {cost / _MB:.0f} MB, more than the {MAX_DECODE_BYTES / _MB:.0f} MB allowed per "
            f"image; refused before decoding. Resize it ({DOWNSCALE_TO} px on the longer side is plenty: the model "
            "sees 224x224 pixels) or save it as an 8-bit RGB JPEG or PNG")


def from_array(arr: np.ndarray, label: str = "the array") -> Image.Image:
    """(H, W), (H, W, 1), (H, W, 3) or (H, W, 4) array -> RGB PIL image. uint8 is taken as is; floats must
    be in [0, 1]; bool is black/white; other integer types are scaled from their full range."""
    a = np.asarray(arr)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ImageError(f"{label} has shape {a.shape}; expected (H, W), (H, W, 3) or (H, W, 4)")
    if a.shape[0] < MIN_SIDE or a.shape[1] < MIN_SIDE:
        raise ImageError(f"{label} has no pixels (shape {a.shape})")
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        raise ImageError(f"{label} is {a.shape[1]}x{a.shape[0]}, more than the {MAX_PIXELS / 1e6:.0f}-megapixel "
                         "limit")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        finite = np.isfinite(a)
        if not finite.all():
            raise ImageError(f"{label} contains NaN or infinite values")
        if a.size and (a.min() < 0 or a.max() > 1):
            raise ImageError(f"{label} is a float array with values in [{a.min():.3g}, {a.max():.3g}]; "
                             "float images must be in [0, 1] (or pass uint8 in [0, 255])")
        a = np.round(a * 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer) and a.dtype != np.uint8:
        info = np.iinfo(a.dtype)
        if info.min < 0:
            raise ImageError(f"{label} has signed dtype {a.dtype}; pass uint8 (0-255) or floats in [0, 1]")
        a = (a.astype(np.float64) / info.max * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ImageError(f"{label} has dtype {a.dtype}; pass uint8 (0-255) or floats in [0, 1]")
    mode = {2: "L", 3: "RGB", 4: "RGBA"}[a.ndim if a.ndim == 2 else a.shape[2] + 0]
    return prepare_image(Image.fromarray(np.ascontiguousarray(a), mode), label)


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """16/32-bit integer and float grayscale -> 8-bit L (16-bit: full range; others: min-max over the finite
    values), in strips of about a megapixel so that no full-size float copy is ever made."""
    w, h = img.size
    rows = max(1, (1 << 20) // max(1, w))
    strips = [(y, min(h, y + rows)) for y in range(0, h, rows)]

    def strip(y0: int, y1: int) -> np.ndarray:
        return np.asarray(img.crop((0, y0, w, y1)), dtype=np.float32)

    if img.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        lo, hi = math.inf, -math.inf
        for y0, y1 in strips:
            a = strip(y0, y1)
            finite = a[np.isfinite(a)]
            if finite.size:
                lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if lo > hi:
            lo = hi = 0.0
    out = np.zeros((h, w), np.uint8)
    if hi > lo:
        for y0, y1 in strips:
            a = np.nan_to_num(strip(y0, y1), nan=lo, posinf=hi, neginf=lo)
            out[y0:y1] = np.clip((a - lo) * (255.0 / (hi - lo)), 0, 255).round()
    return Image.fromarray(out, "L")


def prepare_image(img: Image.Image, label: str = "the image") -> Image.Image:
    """Any PIL image -> upright 8-bit RGB: EXIF orientation applied, first frame of animations, alpha
    composited on white, palette/grayscale/CMYK/16-bit converted, huge images downscaled. The caller's
    image is not modified (except that an animation is rewound to its first frame)."""
    if not isinstance(img, Image.Image):
        raise ImageError(f"expected a PIL image, got {type(img).__name__}")
    return _finish([img], label)


def _finish(owned: list, label: str) -> Image.Image:
    """``owned`` holds the image; taking it out here lets each step free the previous one when the caller
    keeps no reference (decoding), so the peak is one full-size image plus one conversion."""
    img = owned.pop()
    w, h = img.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"{label} has no pixels ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(_bomb_message(label, w, h))
    try:
        if img.tell() != 0:  # an animation left on a later frame: show the first
            img.seek(0)
        orientation = _orientation(img)
        img = _to_8bit(img)
        if max(img.size) > DOWNSCALE_TO:  # before the remaining conversions: they then work on <= 17 MP
            img = img.resize(_thumbnail_size(img.size), Image.BICUBIC, reducing_gap=2.0)
        if orientation is not None:  # upright now: drop the tags, or the next reader would rotate it again
            img = img.transpose(orientation)
            img.info = {k: v for k, v in img.info.items() if k not in ("exif", "xmp", "XML:com.adobe.xmp")}
        if img.mode in ("RGBA", "LA"):  # composite on white: RGB copy + white background + alpha mask
            alpha = img.getchannel("A")
            rgb = img.convert("RGB")
            img = Image.new("RGB", img.size, (255, 255, 255))
            img.paste(rgb, mask=alpha)
        elif img.mode != "RGB":
            img = img.convert("RGB")
        return img
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        raise ImageError(f"{label} could not be converted to RGB ({e}); the file may be truncated or corrupt, "
                         "or its pixel format unusual: re-export it as PNG or JPEG") from None


_ORIENTATION = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
                4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270,
                7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_90}


def _orientation(img: Image.Image):
    """The EXIF orientation as a transpose method (as ``ImageOps.exif_transpose``), None when upright."""
    try:
        return _ORIENTATION.get(img.getexif().get(0x0112))
    except Exception:  # broken EXIF: keep the pixels as stored
        return None


def _to_8bit(img: Image.Image) -> Image.Image:
    """Modes that cannot be resized well -> L, LA, RGB or RGBA (the only full-size conversion)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_depth_to_l(img)
    if mode == "P":
        return img.convert("RGBA" if "transparency" in img.info else "RGB")
    if mode in ("PA", "RGBa", "La"):
        return img.convert("LA" if mode == "La" else "RGBA")
    if mode not in ("L", "LA", "RGB", "RGBA"):  # 1, CMYK, YCbCr, LAB, HSV, RGBX...
        return img.convert("L" if mode == "1" else "RGB")
    return img


def _thumbnail_size(size: tuple[int, int]) -> tuple[int, int]:
    """The size ``Image.thumbnail((DOWNSCALE_TO, DOWNSCALE_TO))`` gives (same rounding)."""
    w, h = size
    x = y = DOWNSCALE_TO
    aspect = w / h

    def round_aspect(number: float, key) -> int:
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if x / y >= aspect:
        x = round_aspect(y * aspect, key=lambda n: abs(aspect - n / y))
    else:
        y = round_aspect(x / aspect, key=lambda n: 0 if n == 0 else abs(aspect - x / n))
    return x, y
