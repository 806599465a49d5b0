"""Generators of hostile image files (issues 16 and 17): small on disk, costly for a naive decoder.

Each function returns the file's bytes. The tests use small variants (they must be refused quickly, before
decoding); ``benchmarks/bench_hostile_uploads.py`` uses the full-size ones from the issues. Everything is built
in code: nothing hostile is stored in the repository.
"""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- PNG ---------------------------------------------------------------------------------------------------
def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _ihdr(w: int, h: int, depth: int, color: int) -> bytes:
    return png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color, 0, 0, 0))


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def png_declared(w: int, h: int, depth: int = 8, color: int = 2, full: bool = False) -> bytes:
    """A PNG declaring w x h pixels of the given bit depth and colour type (2 RGB, 6 RGBA, 0 grey, 4 grey+alpha).
    ``full=False``: a sliver of pixel data (refusal must come from the header). ``full=True``: every row is
    present (all zeros, streamed through zlib, so the file stays small), so a decoder that accepts it pays for
    the whole image."""
    row = 1 + (w * _PNG_CHANNELS[color] * depth + 7) // 8
    comp = zlib.compressobj(9)
    if full:
        blank = b"\x00" * row
        idat = b"".join(comp.compress(blank) for _ in range(h)) + comp.flush()
    else:
        idat = comp.compress(b"\x00" * min(row, 4096)) + comp.flush()
    body = b"".join(png_chunk(b"IDAT", idat[i:i + 1 << 20]) for i in range(0, len(idat), 1 << 20))
    return PNG_MAGIC + _ihdr(w, h, depth, color) + body + png_chunk(b"IEND", b"")


def png_chunk_flood(n: int, tag: bytes = b"prVt") -> bytes:
    """A valid 8x8 PNG with ``n`` empty private chunks before its pixels (4 M chunks: 48 MB)."""
    flood = png_chunk(tag, b"") * n
    idat = png_chunk(b"IDAT", zlib.compress(b"\x00" * (8 * (1 + 3 * 8))))
    return PNG_MAGIC + _ihdr(8, 8, 8, 2) + flood + idat + png_chunk(b"IEND", b"")


# -- JPEG --------------------------------------------------------------------------------------------------
def _encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """Split a JPEG into (marker, bytes of the marker segment including its entropy-coded data)."""
    out, pos = [], 2
    while pos < len(data):
        marker = data[pos + 1]
        if marker == 0xD9:
            break
        length = struct.unpack(">H", data[pos + 2:pos + 4])[0]
        end = pos + 2 + length
        if marker == 0xDA:  # entropy-coded data runs to the next marker that is not a stuffed byte or RST
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        out.append((marker, data[pos:end]))
        pos = end
    return out


def jpeg_scan_bomb(scans: int, side: int = 4096) -> bytes:
    """A progressive greyscale JPEG of side x side whose last scan is repeated until it has ``scans`` scans:
    each scan is a few bytes (an end-of-band run) but makes the decoder visit every block again."""
    base = _encode(Image.new("L", (side, side), 128), "JPEG", progressive=True, quality=90)
    segs = jpeg_segments(base)
    sos = [i for i, (m, _) in enumerate(segs) if m == 0xDA]
    last = segs[sos[-1]][1]
    extra = scans - len(sos)
    return b"\xff\xd8" + b"".join(s for _, s in segs) + last * max(0, extra) + b"\xff\xd9"


def jpeg_marker_flood(n: int) -> bytes:
    """A valid 16x16 JPEG with ``n`` empty APP1 segments after SOI (12 M: 49 MB)."""
    base = _encode(Image.new("RGB", (16, 16), (200, 60, 20)), "JPEG")
    return base[:2] + b"\xff\xe1\x00\x02" * n + base[2:]


def jpeg_declared(w: int, h: int, progressive: bool = False) -> bytes:
    """A 16x16 JPEG whose frame header is rewritten to declare w x h: the data covers 16x16 pixels only."""
    data = bytearray(_encode(Image.new("RGB", (16, 16), (30, 120, 220)), "JPEG", progressive=progressive))
    for marker, seg in jpeg_segments(bytes(data)):
        if marker in (0xC0, 0xC1, 0xC2):
            at = bytes(data).index(seg)
            data[at + 5:at + 9] = struct.pack(">HH", h, w)
            break
    return bytes(data)


# -- containers --------------------------------------------------------------------------------------------
def ico_holding(inner: bytes, w: int = 0, h: int = 0) -> bytes:
    """An ICO whose single entry is ``inner`` (a PNG or a DIB); its directory claims w x h (0 means 256)."""
    entry = struct.pack("<BBBBHHII", w % 256, h % 256, 0, 0, 1, 32, len(inner), 6 + 16)
    return struct.pack("<HHH", 0, 1, 1) + entry + inner


def tiff_float(w: int, h: int, rows_per_strip: int = 64) -> bytes:
    """A 32-bit float greyscale TIFF of w x h zeros, deflate-compressed; every strip points at the same
    compressed blob, so 100 megapixels take a few kilobytes."""
    blob = zlib.compress(b"\x00" * (4 * w * rows_per_strip), 9)
    nstrips = -(-h // rows_per_strip)
    return tiff_ifd(w, h, [(258, 3, [32]), (259, 3, [8]), (262, 3, [1]), (277, 3, [1]),
                           (278, 4, [rows_per_strip]), (339, 3, [3])], blob, nstrips)


def tiff_ifd(w: int, h: int, tags: list[tuple[int, int, list[int]]], blob: bytes, nstrips: int) -> bytes:
    """A little-endian TIFF: one IFD with ``tags`` (tag, type 3=SHORT/4=LONG, values) plus width, length and
    ``nstrips`` strips that all point at ``blob``."""
    blob_at = 8
    all_tags = sorted([(256, 4, [w]), (257, 4, [h]), (273, 4, [blob_at] * nstrips),
                       (279, 4, [len(blob)] * nstrips)] + tags)
    ifd_at = blob_at + len(blob) + (len(blob) & 1)
    extra_at = ifd_at + 2 + 12 * len(all_tags) + 4
    entries, extra = [], b""
    for tag, typ, values in all_tags:
        fmt = "<" + ("H" if typ == 3 else "I") * len(values)
        payload = struct.pack(fmt, *values)
        if len(payload) <= 4:
            entries.append(struct.pack("<HHI", tag, typ, len(values)) + payload.ljust(4, b"\x00"))
        else:
            entries.append(struct.pack("<HHII", tag, typ, len(values), extra_at + len(extra)))
            extra += payload
    head = b"II*\x00" + struct.pack("<I", ifd_at) + blob + b"\x00" * (len(blob) & 1)
    return head + struct.pack("<H", len(entries)) + b"".join(entries) + b"\x00\x00\x00\x00" + extra


def tiff_tag_flood(n: int) -> bytes:
    """A valid 8x8 greyscale TIFF whose StripOffsets/StripByteCounts hold ``n`` entries (rows per strip 1)."""
    blob = b"\x00" * 8
    return tiff_ifd(8, 8, [(258, 3, [8]), (259, 3, [1]), (262, 3, [1]), (277, 3, [1]), (278, 4, [1])],
                    blob, n)


def webp_declared(w: int, h: int, alpha: bool = True) -> bytes:
    """A WebP whose VP8X header declares a w x h canvas (with alpha), holding a 1x1 lossless image."""
    small = _encode(Image.new("RGBA", (1, 1), (1, 2, 3, 4)), "WEBP", lossless=True)
    vp8l = small[12:]  # the VP8L chunk
    flags = 0x10 if alpha else 0
    vp8x = b"VP8X" + struct.pack("<I", 10) + bytes([flags, 0, 0, 0]) + (w - 1).to_bytes(3, "little") \
        + (h - 1).to_bytes(3, "little")
    body = b"WEBP" + vp8x + vp8l
    return b"RIFF" + struct.pack("<I", len(body)) + body


def webp_full(w: int, h: int) -> bytes:
    """A real lossless RGBA WebP of w x h (a constant image: small file, but the decoder pays for every
    pixel). Needs w * h * 4 bytes to build."""
    return _encode(Image.new("RGBA", (w, h), (10, 20, 30, 128)), "WEBP", lossless=True, quality=0, method=0)


def gif_comment_flood(n: int) -> bytes:
    """A valid 4x4 GIF with a comment extension of ``n`` one-byte sub-blocks before the first frame."""
    base = _encode(Image.new("P", (4, 4), 1), "GIF")
    flags = base[10]
    at = 13 + ((3 << ((flags & 7) + 1)) if flags & 0x80 else 0)  # after the header and global colour table
    return base[:at] + b"\x21\xfe" + b"\x01x" * n + b"\x00" + base[at:]


def bmp_rle8(w: int, h: int, data_bytes: int) -> bytes:
    """An 8-bit RLE BMP of w x h whose pixel data is ``data_bytes`` bytes of one-pixel runs (Pillow decodes RLE
    BMPs in Python: two bytes per loop iteration)."""
    rle = b"\x01\x07" * (data_bytes // 2) + b"\x00\x01"
    palette = b"\x00\x00\x00\x00" * 256
    info = struct.pack("<IiiHHIIiiII", 40, w, h, 1, 8, 1, len(rle), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    head = b"BM" + struct.pack("<IHHI", offset + len(rle), 0, 0, offset)
    return head + info + palette + rle


def ppm_plain(w: int, h: int) -> bytes:
    """A plain (ASCII) greyscale PGM of w x h: Pillow decodes the plain formats in Python."""
    return f"P2\n{w} {h}\n255\n".encode() + b"7 " * (w * h)


# -- large but legitimate (accepted near the memory bound: the bound must hold for them too) ----------------
def jpeg_full(w: int, h: int, progressive: bool = False) -> bytes:
    """A real w x h RGB JPEG (4:2:0) of a smooth gradient. Needs about 4 * w * h bytes to build."""
    img = Image.linear_gradient("L").resize((w, h)).convert("RGB")
    return _encode(img, "JPEG", quality=85, progressive=progressive)


def webp_lossy(w: int, h: int) -> bytes:
    """A real lossy RGB WebP of w x h (a smooth gradient)."""
    return _encode(Image.linear_gradient("L").resize((w, h)).convert("RGB"), "WEBP", quality=80)
