"""Reading and normalising input images: any decodable file or PIL image becomes an upright RGB image.

Only image decoding happens here (Pillow); nothing uploaded is executed or unpickled. Limits:
``MAX_FILE_BYTES`` for the encoded file, ``MAX_PIXELS`` for the declared size (checked from the header,
before decoding, so decompression bombs are refused cheaply); images larger than ``DOWNSCALE_TO`` on
their longer side are downscaled after decoding.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_PIXELS = 100_000_000  # declared width x height above this is refused before decoding
DOWNSCALE_TO = 4096  # longer side, after decoding
MIN_SIDE = 1

# Pillow's own bomb check raises for > 2*MAX_IMAGE_PIXELS; ours is stricter and gives a clear message.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


def load_image(source) -> Image.Image:
    """Path, bytes, file-like or PIL image -> upright RGB PIL image. Raises ImageError with a clear message."""
    if isinstance(source, Image.Image):
        return prepare_image(source)
    if isinstance(source, (str, os.PathLike)):
        p = Path(source)
        if not p.is_file():
            raise ImageError(f"image file {str(p)!r} does not exist")
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"{p.name} is {size / 1e6:.0f} MB; the limit is {MAX_FILE_BYTES / 1e6:.0f} MB")
        data = p.read_bytes()
        label = p.name
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data, label = bytes(source), "the upload"
    elif hasattr(source, "read"):
        data = source.read(MAX_FILE_BYTES + 1)
        label = getattr(source, "name", "the upload")
    else:
        raise ImageError(f"cannot read an image from a {type(source).__name__}")
    return decode_image(data, label)


def decode_image(data: bytes, label: str = "the upload") -> Image.Image:
    if len(data) == 0:
        raise ImageError(f"{label} is empty (0 bytes); choose an image file (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    if len(data) > MAX_FILE_BYTES:
        raise ImageError(f"{label} is larger than the {MAX_FILE_BYTES / 1e6:.0f} MB limit")
    try:
        img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(
                f"{label} declares {w}x{h} pixels, more than the {MAX_PIXELS / 1e6:.0f}-megapixel limit; "
                "resize it before uploading")
        img.load()
    except ImageError:
        raise
    except Image.DecompressionBombError:
        raise ImageError(f"{label} declares an enormous size (decompression bomb?); refused") from None
    except UnidentifiedImageError:
        raise ImageError(f"{label} is not an image Pillow can read (PNG, JPEG, WebP, GIF, BMP, TIFF)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label} could not be decoded ({e}); the file may be truncated or corrupt") from None
    return prepare_image(img)


def prepare_image(img: Image.Image) -> Image.Image:
    """Any PIL image -> upright 8-bit RGB: EXIF orientation applied, first frame of animations, alpha
    composited on white, palette/grayscale/CMYK/16-bit converted, huge images downscaled."""
    if not isinstance(img, Image.Image):
        raise ImageError(f"expected a PIL image, got {type(img).__name__}")
    w, h = img.size
    if w < MIN_SIDE or h < MIN_SIDE:
        raise ImageError(f"the image has no pixels ({w}x{h})")
    if w * h > MAX_PIXELS:
        raise ImageError(f"the image is {w}x{h}, more than the {MAX_PIXELS / 1e6:.0f}-megapixel limit")
    if getattr(img, "is_animated", False):
        img.seek(0)
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # broken EXIF: keep the pixels as stored
        pass
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16"):
            lo, hi = 0.0, 65535.0
        scaled = np.zeros_like(arr) if hi <= lo else (arr - lo) / (hi - lo) * 255.0
        img = Image.fromarray(scaled.clip(0, 255).astype(np.uint8), "L")
        mode = "L"
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    if max(img.size) > DOWNSCALE_TO:
        img = img.copy()
        img.thumbnail((DOWNSCALE_TO, DOWNSCALE_TO), Image.BICUBIC)
    return img
