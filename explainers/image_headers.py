"""What an encoded image declares, read from its bytes *before* any decoder runs (issues 16 and 17).

:func:`inspect` walks the file's structure (JPEG marker segments and scans, PNG chunks, GIF blocks, WebP
RIFF chunks, TIFF tags, ICO entries, BMP/PPM headers) with loops that stop at the first limit, and refuses:

* floods: more marker segments / chunks / extension blocks / tag values than any real image has (Pillow
  parses those in Python, one object each: 12 M empty JPEG APP markers once took 1.7 GB and 15 s);
* JPEG scan bombs: more progressive scans than ``MAX_JPEG_SCANS``, or scans x blocks above
  ``MAX_JPEG_BLOCK_VISITS`` (each scan makes the decoder visit every block of its components again);
* decoders that run in Python on large inputs (RLE BMP, plain-text PNM);
* EXIF blocks above ``MAX_METADATA_BYTES`` (parsed in Python).

It returns a :class:`Declared` with the working memory the decoder needs beyond the image itself (a
progressive JPEG's coefficients, WebP/AVIF canvases, TIFF strip buffers), the images inside a container
(ICO), and whether the file holds too little data for its declared size (a forged or truncated header).
The memory budget itself is applied by :mod:`explainers.images`, which knows the decoded mode.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field

from .errors import ImageError

MAX_JPEG_SCANS = 100  # libjpeg's progressive scripts use 6-10; ten times that is generous
MAX_JPEG_SEGMENTS = 1000  # marker segments (APPn, COM, DQT, DHT, SOS...): photos have fewer than 50
MAX_JPEG_BLOCK_VISITS = 25_000_000  # sum over scans of the blocks each covers (~1.5 s at 56 ns each)
MAX_PNG_CHUNKS = 65_536  # IDAT included: 50 MB in chunks of 800 bytes or more
MAX_PNG_OTHER_CHUNKS = 1000  # chunks other than IDAT/fdAT/fcTL
MAX_GIF_SUBBLOCKS = 20_000  # extension sub-blocks before the first frame (5 MB of metadata)
MAX_WEBP_CHUNKS = 10_000
MAX_TIFF_VALUES = 1 << 20  # numeric values per tag (StripOffsets of a 1-row-per-strip 100 MP image: 10 k)
MAX_METADATA_BYTES = 1 << 20  # an EXIF block (Pillow parses it in Python)
MAX_PYTHON_DECODED_BYTES = 2 << 20  # RLE BMP and plain PNM data: Pillow decodes these in Python

_MB = 1024 * 1024
_SOF = {*range(0xC0, 0xC4), *range(0xC5, 0xC8), *range(0xC9, 0xCC), *range(0xCD, 0xD0)}
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # not a stuffed 0xFF, a restart marker or fill
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Pillow's in-memory mode of a PNG, by (colour type, bit depth); anything else is 4 bytes per pixel.
_PNG_MODES = {(0, 1): "1", (0, 2): "L", (0, 4): "L", (0, 8): "L", (0, 16): "I;16", (2, 8): "RGB", (2, 16): "RGB",
              (3, 1): "P", (3, 2): "P", (3, 4): "P", (3, 8): "P", (4, 8): "LA", (4, 16): "LA", (6, 8): "RGBA",
              (6, 16): "RGBA"}


@dataclass
class Declared:
    """What :func:`inspect` found. ``extra_bytes``/``extra_bpp``: decoder memory beyond the decoded image
    (fixed, and per decoded pixel); ``frames``: (width, height, mode) of images inside a container;
    ``short_of_data``: why the file cannot hold its declared pixels (raised after the size checks)."""

    format: str = ""
    extra_bytes: int = 0
    extra_bpp: float = 0.0
    frames: list[tuple[int, int, str]] = field(default_factory=list)
    short_of_data: str | None = None


def inspect(data: bytes, label: str) -> Declared:
    """Walk the structure of ``data`` (see the module docstring); raise :class:`ImageError` on a flood,
    a scan bomb or a file that a Python decoder would spend seconds on."""
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return _jpeg(data, label)
    if head.startswith(_PNG_MAGIC):
        return _png(data, label)
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _gif(data, label)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _webp(data, label)
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return _tiff(data, label)
    if head[:4] == b"\x00\x00\x01\x00":
        return _ico(data, label)
    if head[:2] == b"BM":
        return _bmp(data, 14, label)
    if head[:1] == b"P" and head[1:2] in (b"1", b"2", b"3") and len(data) > MAX_PYTHON_DECODED_BYTES:
        raise ImageError(f"{label} is a plain-text (ASCII) PBM/PGM/PPM of {len(data) / _MB:.0f} MB; the limit for "
                         f"that format is {MAX_PYTHON_DECODED_BYTES // _MB} MB (it is decoded slowly). Save it as "
                         "PNG or as a binary PNM (P4/P5/P6)")
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return Declared("AVIF", extra_bpp=14.0)  # libavif's YUV planes and RGB buffer, Pillow's copy
    return Declared()


def _flood(label: str, count: str, what: str, limit: int, usual: str) -> ImageError:
    return ImageError(f"{label} has {count} {what}; the limit is {limit} ({usual}). Refused before decoding: "
                      "parsing them would tie up the server. Re-save the image (any editor strips them)")


def _count_chunk(label: str, count: int, limit: int, what: str, usual: str, exif_bytes: int = 0) -> None:
    """Refuse the ``count``-th chunk of a kind above ``limit``, or an EXIF chunk of ``exif_bytes`` above
    :data:`MAX_METADATA_BYTES` (both parsed in Python by Pillow)."""
    if count > limit:
        raise _flood(label, f"more than {limit}", what, limit, usual)
    if exif_bytes > MAX_METADATA_BYTES:
        raise ImageError(f"{label} has an EXIF block of {exif_bytes / _MB:.1f} MB; the limit is "
                         f"{MAX_METADATA_BYTES // _MB} MB. Re-save the image without its metadata")


# -- JPEG --------------------------------------------------------------------------------------------------
def _jpeg(data: bytes, label: str) -> Declared:
    n, pos, segments, scans, visits, entropy, min_bits = len(data), 2, 0, 0, 0, 0, 0
    frame: dict | None = None
    while pos + 4 <= n:
        marker = data[pos + 1]
        if data[pos] != 0xFF or marker in (0x00, 0xFF) or 0xD0 <= marker <= 0xD7:  # fill or stray bytes
            m = _NEXT_MARKER.search(data, pos + 1)
            if m is None:
                break
            pos = m.start()
            continue
        if marker == 0xD9:  # end of the (first) image: an MPO's later frames are never decoded
            break
        if marker == 0x01:
            pos += 2
            continue
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _flood(label, f"more than {MAX_JPEG_SEGMENTS}", "JPEG marker segments", MAX_JPEG_SEGMENTS,
                         "photos have fewer than 50")
        end = pos + 2 + struct.unpack_from(">H", data, pos + 2)[0]
        body = pos + 4
        if marker in _SOF and frame is None and body + 6 <= n:
            frame = _jpeg_frame(data, body, marker)
        elif marker == 0xDA and body < n:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise ImageError(
                    f"{label} is a JPEG with more than {MAX_JPEG_SCANS} scans (progressive JPEGs have about 10); "
                    "refused before decoding: each scan makes the decoder go over the whole image again (a "
                    "'scan bomb'). Re-save it as a baseline JPEG or as PNG")
            ids = data[body + 1:body + 1 + 2 * data[body]:2]
            blocks = sum(frame["blocks"].get(c, 0) for c in ids) if frame else 0
            visits += blocks
            if visits > MAX_JPEG_BLOCK_VISITS:
                raise ImageError(
                    f"{label} is a JPEG whose {scans} scans of {frame['w']}x{frame['h']} pixels would make the "
                    f"decoder visit more than {MAX_JPEG_BLOCK_VISITS / 1e6:.0f} million 8x8 blocks (a 'scan "
                    "bomb'); refused before decoding. Re-save it as a baseline JPEG, or smaller")
            ss_at = body + 1 + 2 * data[body]
            if frame and ss_at + 2 < n:
                ss, ah = data[ss_at], data[ss_at + 2] >> 4
                if frame["kind"] == "sequential":  # every block: a DC code and an end of block, >= 2 bits
                    min_bits += 2 * blocks
                elif frame["kind"] == "progressive" and ss == 0 and ah == 0:  # first DC scan: >= 1 bit each
                    min_bits += blocks
            m = _NEXT_MARKER.search(data, end)
            stop = m.start() if m else n
            entropy += max(0, stop - end)
            pos = stop
            continue
        pos = end
    out = Declared("JPEG")
    if frame is None:
        return out
    if frame["kind"] == "progressive" or scans > 1:  # the decoder keeps every coefficient of the image
        out.extra_bytes = sum(frame["blocks"].values()) * 128
    if entropy * 8 < min_bits:
        out.short_of_data = (f"{label} declares {frame['w']}x{frame['h']} pixels but holds only {entropy} bytes of "
                             f"image data, less than the {min_bits // 8} bytes that many pixels need at the very "
                             "least: the file is truncated or its header forged. Re-export or re-download it")
    return out


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def _jpeg_frame(data: bytes, body: int, marker: int) -> dict:
    h, w, nc = struct.unpack_from(">HHB", data, body + 1)
    comps = [(data[i], data[i + 1] >> 4, data[i + 1] & 15)
             for i in range(body + 6, min(body + 6 + 3 * nc, len(data) - 1), 3)]
    hmax = max((c[1] for c in comps), default=1) or 1
    vmax = max((c[2] for c in comps), default=1) or 1
    blocks = {cid: _ceil(_ceil(w * hs, hmax), 8) * _ceil(_ceil(h * vs, vmax), 8) for cid, hs, vs in comps}
    kind = ("arithmetic" if marker >= 0xC9 else "lossless" if marker in (0xC3, 0xC7)
            else "progressive" if marker in (0xC2, 0xC6) else "sequential")
    return {"w": w, "h": h, "blocks": blocks, "kind": kind}


# -- PNG ---------------------------------------------------------------------------------------------------
def _png(data: bytes, label: str) -> Declared:
    n, pos, total, other, idat = len(data), 8, 0, 0, 0
    out = Declared("PNG")
    if n < 33 or data[12:16] != b"IHDR":
        return out  # Pillow names the problem
    w, h, depth, color, _, _, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    while pos + 8 <= n:
        length, tag = struct.unpack_from(">I4s", data, pos)
        total += 1
        if tag in (b"IDAT", b"fdAT"):
            idat += length
        elif tag != b"fcTL":
            other += 1
            _count_chunk(label, other, MAX_PNG_OTHER_CHUNKS, "PNG metadata chunks", "images have fewer than 20",
                         length if tag == b"eXIf" else 0)
        _count_chunk(label, total, MAX_PNG_CHUNKS, "PNG chunks", "encoders write chunks of 8 kB or more")
        if tag == b"IEND":
            break
        pos += 12 + length
    out.frames = [(w, h, _PNG_MODES.get((color, depth), "RGBA"))]
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(color, 4)
    raw = h * (1 + (w * channels * depth + 7) // 8)  # the filtered rows zlib must produce
    if raw > 1040 * idat + 65536:  # deflate never compresses more than 1032:1
        out.short_of_data = (f"{label} declares {w}x{h} pixels but holds only {idat} bytes of compressed image "
                             "data, too little for that many pixels: the file is truncated or its header forged. "
                             "Re-export or re-download it")
    return out


# -- GIF, WebP ---------------------------------------------------------------------------------------------
def _gif(data: bytes, label: str) -> Declared:
    n, subblocks = len(data), 0
    pos = 13 + ((3 << ((data[10] & 7) + 1)) if n > 10 and data[10] & 0x80 else 0)  # after the colour table
    while pos < n and data[pos] == 0x21:  # extensions before the first image descriptor
        pos += 2
        while pos < n and data[pos]:
            subblocks += 1
            if subblocks > MAX_GIF_SUBBLOCKS:
                raise _flood(label, f"more than {MAX_GIF_SUBBLOCKS}", "GIF extension blocks before its first "
                             "frame", MAX_GIF_SUBBLOCKS, "a comment or XMP packet needs a few dozen")
            pos += 1 + data[pos]
        pos += 1
    return Declared("GIF")


def _webp(data: bytes, label: str) -> Declared:
    n, pos, chunks = len(data), 12, 0
    size: tuple[int, int, bool] | None = None  # canvas (VP8X) or the first image's size, and alpha
    while pos + 8 <= n:
        tag, length = struct.unpack_from("<4sI", data, pos)
        body = pos + 8
        chunks += 1
        _count_chunk(label, chunks, MAX_WEBP_CHUNKS, "WebP chunks (frames or metadata)",
                     "only the first frame is shown", length if tag == b"EXIF" else 0)
        if size is None and tag == b"VP8X" and body + 10 <= n:
            size = (1 + int.from_bytes(data[body + 4:body + 7], "little"),
                    1 + int.from_bytes(data[body + 7:body + 10], "little"), bool(data[body] & 0x10))
        elif size is None and tag == b"VP8 " and body + 10 <= n:
            w, h = struct.unpack_from("<HH", data, body + 6)
            size = (w & 0x3FFF, h & 0x3FFF, False)
        elif size is None and tag == b"VP8L" and body + 5 <= n:
            bits = int.from_bytes(data[body + 1:body + 5], "little")
            size = (1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF), bool(bits >> 28 & 1))
        pos = body + length + (length & 1)
    # libwebp's animation decoder keeps two 4-byte canvases and Pillow copies the frame once more
    out = Declared("WEBP", extra_bpp=12.0)
    if size:
        out.frames = [(size[0], size[1], "RGBA" if size[2] else "RGB")]
    return out


# -- TIFF --------------------------------------------------------------------------------------------------
_TIFF_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 16: 8, 17: 8, 18: 8}


def _tiff(data: bytes, label: str) -> Declared:
    end = "<" if data[:2] == b"II" else ">"
    big = data[2:4] in (b"+\x00", b"\x00+")
    out = Declared("TIFF")
    try:
        ifd = struct.unpack_from(end + ("Q" if big else "I"), data, 8 if big else 4)[0]
        count = struct.unpack_from(end + ("Q" if big else "H"), data, ifd)[0]
        entry, step = (ifd + 8, 20) if big else (ifd + 2, 12)
        tags: dict[int, int] = {}
        for i in range(min(count, 65_536)):
            tag, typ = struct.unpack_from(end + "HH", data, entry + i * step)
            num = struct.unpack_from(end + ("Q" if big else "I"), data, entry + i * step + 4)[0]
            size = _TIFF_SIZES.get(typ, 1)
            if size > 1 and num > MAX_TIFF_VALUES:
                raise _flood(label, f"a tag with {num:,} values", f"(TIFF tag 0x{tag:04x})", MAX_TIFF_VALUES,
                             "an image needs a few thousand")
            if num == 1 and typ in (3, 4, 16):
                fmt = {3: "H", 4: "I", 16: "Q"}[typ]
                tags[tag] = struct.unpack_from(end + fmt, data, entry + i * step + (12 if big else 8))[0]
    except struct.error:
        return out  # Pillow names the problem
    w, h = tags.get(256, 0), tags.get(257, 0)
    bits = tags.get(258, 8) * tags.get(277, 1)
    if tags.get(259, 1) != 1:  # compressed: libtiff decodes one strip or tile at a time into a buffer
        if 322 in tags and 323 in tags:
            out.extra_bytes = tags[322] * tags[323] * bits // 8
        else:
            out.extra_bytes = w * min(h, tags.get(278, h)) * bits // 8
    return out


# -- ICO, BMP ----------------------------------------------------------------------------------------------
def _ico(data: bytes, label: str) -> Declared:
    out = Declared("ICO")
    if len(data) < 6:
        return out
    count = struct.unpack_from("<H", data, 4)[0]
    for i in range(min(count, 256)):
        at = 6 + 16 * i
        if at + 16 > len(data):
            break
        size, offset = struct.unpack_from("<II", data, at + 8)
        inner = data[offset:offset + size]
        if inner.startswith(_PNG_MAGIC):
            found = _png(inner, f"{label} (icon {i + 1}, a PNG)")
            if found.short_of_data:
                out.short_of_data = found.short_of_data
        elif len(inner) >= 16:
            found = _bmp(inner, 0, f"{label} (icon {i + 1}, a bitmap)")
            found.frames = [(w, h // 2, m) for w, h, m in found.frames]  # the height counts the AND mask too
        else:
            continue
        out.frames += found.frames
    return out


def _bmp(data: bytes, at: int, label: str) -> Declared:
    """A BMP (``at`` = 14) or the DIB inside an icon (``at`` = 0)."""
    out = Declared("BMP")
    if len(data) < at + 20:
        return out
    hsize = struct.unpack_from("<I", data, at)[0]
    if hsize == 12:
        w, h, _, bpp = struct.unpack_from("<HHHH", data, at + 4)
        compression = 0
    elif len(data) >= at + 20:
        w, h, _, bpp, compression = struct.unpack_from("<iiHHI", data, at + 4)
    else:
        return out
    if compression in (1, 2) and len(data) > MAX_PYTHON_DECODED_BYTES:
        raise ImageError(f"{label} is a run-length-encoded BMP of {len(data) / _MB:.0f} MB; the limit for that "
                         f"format is {MAX_PYTHON_DECODED_BYTES // _MB} MB (it is decoded slowly). Save it as PNG")
    out.frames = [(abs(w), abs(h), "P" if bpp <= 8 else "RGBA")]
    return out
