"""Inputs of the evaluate command: a folder, a list file, or the ImageNet validation layout (labels from the
devkit's ground-truth file and ``meta.mat``), plus ``boxes.json``."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ..errors import InvalidParameterError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")
_VAL_NAME = re.compile(r"ILSVRC2012_val_(\d+)\.", re.IGNORECASE)


def list_images(images, limit: int | None = None) -> list[Path]:
    """A folder (its images sorted by name) or a list file (one path per line, relative to the list's folder;
    blank lines and ``#`` comments skipped) -> image paths. Results are keyed by file name, so names must be
    unique."""
    src = Path(images)
    if src.is_dir():
        files = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    elif src.is_file():
        try:
            lines = src.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise InvalidParameterError(f"--images {str(src)!r}: cannot read the list file ({e})") from e
        files = [Path(s) if Path(s).is_absolute() else src.parent / s
                 for s in (line.strip() for line in lines) if s and not s.startswith("#")]
        missing = [str(p) for p in files if not p.is_file()]
        if missing:
            raise InvalidParameterError(
                f"{len(missing)} image(s) of the list {src.name} do not exist, e.g. {missing[0]!r}; paths are "
                "relative to the list file's folder")
    else:
        raise InvalidParameterError(f"--images {str(src)!r} is neither a folder nor a list file")
    seen: dict[str, Path] = {}
    for p in files:
        if p.name in seen:
            raise InvalidParameterError(f"two images named {p.name!r} ({seen[p.name]}, {p}); results are keyed by "
                                        "file name, so rename one")
        seen[p.name] = p
    if limit is not None:
        files = files[:check_limit(limit)]
    if not files:
        raise InvalidParameterError(f"no images found in {str(src)!r}")
    return files


def check_limit(limit) -> int:
    """``--limit``: a whole number >= 1 (``files[:-1]`` would silently drop the last image)."""
    if isinstance(limit, bool) or not isinstance(limit, int) and not (isinstance(limit, float) and limit.is_integer()):
        raise InvalidParameterError(f"--limit must be a whole number of images >= 1, got {limit!r}")
    if int(limit) < 1:
        raise InvalidParameterError(f"--limit must be a whole number of images >= 1, got {limit!r}")
    return int(limit)


def _number(v, what: str, positive: bool = False) -> float:
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        raise InvalidParameterError(f"{what} must be a finite {'positive ' if positive else ''}number, got "
                                    f"{str(v)[:40]!r}")
    return float(v)


def check_box_entry(name: str, entry, source: str = "boxes.json") -> None:
    """An entry of boxes.json: {"label": class index or null, "width", "height": pixels, "boxes_xyxy": [[x0, y0,
    x1, y1], ...]} (other keys, e.g. "wnid", are kept as they are)."""
    where = f"{source}: the entry of {name!r}"
    if entry is None:
        return
    if not isinstance(entry, dict):
        raise InvalidParameterError(f"{where} is a {type(entry).__name__}, expected an object with label, width, "
                                    "height and boxes_xyxy")
    label = entry.get("label")
    if label is not None and (isinstance(label, bool) or not isinstance(label, (int, float)) or label != int(label)
                              or label < 0):
        raise InvalidParameterError(f"{where}: label must be a class index (a whole number >= 0), got "
                                    f"{str(label)[:40]!r}")
    for key in ("width", "height"):
        if entry.get(key) is not None:
            _number(entry[key], f"{where}: {key}", positive=True)
    boxes = entry.get("boxes_xyxy")
    if boxes is None:
        return
    if not isinstance(boxes, list):
        raise InvalidParameterError(f"{where}: boxes_xyxy must be a list of [x0, y0, x1, y1] boxes")
    for i, b in enumerate(boxes):
        if not isinstance(b, list) or len(b) != 4:
            raise InvalidParameterError(f"{where}: box {i} must be [x0, y0, x1, y1], got {str(b)[:40]}")
        x0, y0, x1, y1 = (_number(v, f"{where}: box {i}") for v in b)
        if x1 < x0 or y1 < y0:
            raise InvalidParameterError(f"{where}: box {i} has x1 < x0 or y1 < y0 ({b})")


def read_meta(meta_path) -> dict[int, str]:
    """The devkit's ``meta.mat`` -> {ILSVRC2012_ID: WordNet id} for the 1000 leaf synsets (classes)."""
    from scipy.io import loadmat

    try:
        syn = loadmat(str(meta_path), squeeze_me=True)["synsets"]
        ids, wnids, children = syn["ILSVRC2012_ID"], syn["WNID"], syn["num_children"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InvalidParameterError(f"{meta_path} is not the ImageNet devkit's meta.mat (a 'synsets' struct with "
                                    f"ILSVRC2012_ID, WNID and num_children): {e}") from e
    return {int(i): str(w) for i, w, c in zip(ids, wnids, children) if int(c) == 0}


def imagenet_val_labels(names, ground_truth, meta=None) -> dict[str, dict]:
    """Class indices of ImageNet validation images from the devkit.

    ``ground_truth`` (``ILSVRC2012_validation_ground_truth.txt``): line k holds the 1-based ILSVRC2012_ID of
    ``ILSVRC2012_val_{k:08d}.JPEG``. ``meta`` (``meta.mat``, default: beside the ground-truth file) maps an
    ILSVRC2012_ID to a WordNet id; the class index used by timm, torchvision and Hugging Face ImageNet-1k models
    is the position of that WordNet id among the 1000 sorted WordNet ids (the ILSVRC2012_ID order is not that
    order). Returns {image name: {"label": index, "wnid": wnid}}.
    """
    gt = Path(ground_truth)
    meta = Path(meta) if meta else gt.parent / "meta.mat"
    if not gt.is_file():
        raise InvalidParameterError(f"--ground-truth {str(gt)!r} does not exist")
    if not meta.is_file():
        raise InvalidParameterError(
            f"mapping ILSVRC2012 ids to class indices needs the devkit's meta.mat (not found at {meta}); pass --meta")
    try:
        ids = [int(s) for s in gt.read_text().split()]
    except ValueError as e:
        raise InvalidParameterError(f"{gt.name} should hold one ILSVRC2012_ID (1..1000) per line: {e}") from e
    id_to_wnid = read_meta(meta)
    order = {w: i for i, w in enumerate(sorted(id_to_wnid.values()))}
    out = {}
    for name in names:
        m = _VAL_NAME.search(name)
        if not m:
            raise InvalidParameterError(f"{name!r} is not named like an ImageNet validation image "
                                        "(ILSVRC2012_val_00000001.JPEG); --ground-truth needs those names")
        k = int(m.group(1))
        if not 1 <= k <= len(ids):
            raise InvalidParameterError(f"{gt.name} has {len(ids)} lines; {name} needs line {k}")
        if ids[k - 1] not in id_to_wnid:
            raise InvalidParameterError(f"{gt.name} line {k}: {ids[k - 1]} is not a class id of {meta.name}")
        wnid = id_to_wnid[ids[k - 1]]
        out[name] = {"label": order[wnid], "wnid": wnid}
    return out


def load_boxes(images, names, boxes_path=None, ground_truth=None, meta=None) -> tuple[dict | None, str | None]:
    """``boxes.json`` (default ``IMAGES/boxes.json`` for a folder) merged with the ground-truth labels.
    Returns (boxes, the boxes file used or None)."""
    src = Path(images)
    if boxes_path is None and src.is_dir() and (src / "boxes.json").exists():
        boxes_path = src / "boxes.json"
    boxes = None
    if boxes_path:
        try:
            boxes = json.loads(Path(boxes_path).read_text())
        except (OSError, ValueError, RecursionError) as e:
            raise InvalidParameterError(f"--boxes {str(boxes_path)!r}: cannot read it as JSON "
                                        f"({type(e).__name__}: {str(e)[:120]})") from None
        if not isinstance(boxes, dict):
            raise InvalidParameterError(f"--boxes {str(boxes_path)!r} holds a JSON {type(boxes).__name__}; expected an "
                                        "object mapping image names to entries")
        for name in names:
            check_box_entry(name, boxes.get(name), Path(boxes_path).name)
    if ground_truth:
        boxes = dict(boxes or {})
        for name, lab in imagenet_val_labels(names, ground_truth, meta).items():
            old = boxes.get(name) or {}
            if old.get("label") is not None and int(old["label"]) != lab["label"]:
                raise InvalidParameterError(
                    f"{name}: the boxes file says label {old['label']}, the ground truth {lab['label']} "
                    f"({lab['wnid']}); check that both come from the same devkit")
            boxes[name] = {**old, **lab}
    return boxes, (str(boxes_path) if boxes_path else None)
