"""Reading and normalising input images: any decodable file or PIL image becomes an upright RGB image.

Only image decoding happens here (Pillow, restricted to the raster formats in ``FORMATS``: no EPS, which
would run Ghostscript, no vector or container formats); nothing uploaded is executed or unpickled.

Limits (each refusal raises :class:`~explainers.errors.ImageError` with a message naming the limit):

* ``MAX_FILE_BYTES``: the encoded file;
* ``MAX_PIXELS``: the declared width x height, checked from the header *before* decoding, so decompression
  bombs are refused without allocating their pixels;
* ``DOWNSCALE_TO``: accepted images larger than this on their longer side are downscaled (JPEGs are
  decoded directly at a reduced scale), so no later step works on more than ~17 megapixels.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

__all__ = ["MAX_FILE_BYTES", "MAX_PIXELS", "DOWNSCALE_TO", "FORMATS", "load_image", "decode_image",
           "prepare_image", "from_array"]

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 100_000_000  # declared width x height above this is refused before decoding
DOWNSCALE_TO = 4096  # longer side, after decoding
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
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(_bomb_message(label, w, h))
        if img.format in ("JPEG", "MPO") and max(w, h) > DOWNSCALE_TO:
            k = DOWNSCALE_TO / max(w, h)  # decode at 1/2, 1/4 or 1/8 scale where that suffices: less memory
            img.draft("RGB", (max(1, math.ceil(w * k)), max(1, math.ceil(h * k))))
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
    return prepare_image(img, label)


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
    """16/32-bit integer and float grayscale -> 8-bit L (16-bit: full range; others: min-max)."""
    arr = np.asarray(img, dtype=np.float32)
    if img.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        finite = arr[np.isfinite(arr)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    arr = np.nan_to_num(arr, nan=lo, posinf=hi, neginf=lo)
    scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) * (255.0 / (hi - lo))
    return Image.fromarray(np.clip(scaled, 0, 255).round().astype(np.uint8), "L")


def prepare_image(img: Image.Image, label: str = "the image") -> Image.Image:
    """Any PIL image -> upright 8-bit RGB: EXIF orientation applied, first frame of animations, alpha
    composited on white, palette/grayscale/CMYK/16-bit converted, huge images downscaled."""
    if not isinstance(img, Image.Image):
        raise ImageError(f"expected a PIL image, got {type(img).__name__}")
    w, h = img.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"{label} has no pixels ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(_bomb_message(label, w, h))
    try:
        return _to_rgb(img)
    except ImageError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, MemoryError) as e:
        raise ImageError(f"{label} could not be converted to RGB ({e}); the file may be truncated or corrupt, "
                         "or its pixel format unusual: re-export it as PNG or JPEG") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    if getattr(img, "is_animated", False) and img.tell() != 0:
        img.seek(0)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF: keep the pixels as stored
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        img = _high_depth_to_l(img)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode == "La":
        img = img.convert("LA")
    if img.mode in ("RGBA", "LA", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > DOWNSCALE_TO:
        img = img.copy()
        img.thumbnail((DOWNSCALE_TO, DOWNSCALE_TO), Image.BICUBIC)
    return img
