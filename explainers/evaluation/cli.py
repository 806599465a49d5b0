"""``python -m explainers evaluate``: serial, or sharded on Ray with ``--ray``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import InvalidParameterError
from ..metrics import DEFAULT_PRESET, PRESETS
from ..run_folder import refuse_random_weights
from .core import resolve_methods
from .files import check_tolerance, run_evaluation
from .inputs import list_images

_RAY_ONLY = ("workers", "cpus_per_worker", "gpus_per_worker", "retries")


def cmd_evaluate(args) -> int:
    from ..registry import parse_method_params
    from .core import REFERENCE_METHODS

    names = resolve_methods(args.methods)  # bad input fails before a model loads or a cluster starts
    params = parse_method_params(args.param, [n for n in names if n not in REFERENCE_METHODS])
    list_images(args.images, args.limit)
    check_tolerance(args.tolerance)
    refuse_random_weights(args.weights)
    given = [f"--{k.replace('_', '-')}" for k in _RAY_ONLY if getattr(args, k) is not None]
    if given and not args.ray:
        raise InvalidParameterError(f"{', '.join(given)} only apply with --ray local[:N] | auto | ADDRESS")
    if args.ray and args.zero_shot is not None:
        raise InvalidParameterError("--zero-shot runs serially; leave out --ray")
    common = {"methods": args.methods, "boxes_path": args.boxes, "preset": args.preset, "limit": args.limit,
              "steps": args.steps, "batch_size": args.batch_size, "tolerance": args.tolerance,
              "show_progress": not args.quiet, "ground_truth": args.ground_truth, "meta": args.meta,
              "chunk_size": args.chunk_size, "extra": args.extra_metrics, "params": params}
    try:
        if args.ray:
            from .distributed import RayWorkers

            with RayWorkers(args.model, args.weights, address=args.ray, workers=args.workers,
                            cpus_per_worker=args.cpus_per_worker or 1.0, gpus_per_worker=args.gpus_per_worker or 0.0,
                            device=args.device,
                            retries=3 if args.retries is None else args.retries) as workers:
                info = run_evaluation(workers, args.images, args.out, **common)
        else:
            from ..models import load_model
            from ..text_cli import evaluate_model

            model = evaluate_model(load_model(args.model, weights=args.weights, device=args.device), args)
            info = run_evaluation(model, args.images, args.out, **common)
    except KeyboardInterrupt:
        print(f"\ninterrupted: the rows written so far stay in {Path(args.out) / 'results.csv'}; run the same "
              "command again to compute only the missing pairs", file=sys.stderr)
        return 130
    print(Path(info["summary_md"]).read_text())
    print(json.dumps(info, indent=2))
    return 0


def add_cli(subparsers) -> None:
    """Register ``python -m explainers evaluate`` on the CLI's subparsers."""
    p = subparsers.add_parser(
        "evaluate", help="score methods on a folder of images (insertion/deletion AUC, pointing game)",
        description="Explain the predicted class of every image with every method and score the maps. "
                    "Resumable: pairs already in OUT/results.csv are skipped. --ray shards the work on Ray.")
    p.add_argument("--images", required=True, help="folder of images (sorted by name) or a list file (one path "
                                                   "per line, relative to the list's folder)")
    p.add_argument("--boxes", default=None, help="boxes.json with ground-truth boxes and labels "
                                                 "(default: IMAGES/boxes.json when present)")
    p.add_argument("--ground-truth", default=None, metavar="FILE",
                   help="ImageNet devkit's ILSVRC2012_validation_ground_truth.txt (labels of ILSVRC2012_val_* images)")
    p.add_argument("--meta", default=None, metavar="META_MAT",
                   help="the devkit's meta.mat mapping ILSVRC2012 ids to WordNet ids (default: beside the "
                        "ground-truth file)")
    p.add_argument("--model", required=True, help="timm name, Hugging Face id or local HF folder")
    p.add_argument("--weights", default=None, help="local weights file/folder (offline use)")
    p.add_argument("--device", default="auto", help="auto (with --ray: cuda when --gpus-per-worker > 0), cpu, cuda")
    p.add_argument("--methods", default="all", help="'all' or a comma-separated list; 'random' and 'gaussian' are "
                                                    "the reference rows ('all' includes them)")
    p.add_argument("--preset", default=DEFAULT_PRESET, choices=list(PRESETS),
                   help=f"insertion/deletion protocol (default {DEFAULT_PRESET})")
    p.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    p.add_argument("--batch-size", type=int, default=None, help="perturbed images per forward pass (default 32)")
    p.add_argument("--tolerance", type=float, default=15, help="pointing game tolerance in pixels (default 15)")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--extra-metrics", action="store_true",
                   help="also score ROAD (MoRF/LeRF AUC, gap), faithfulness correlation, sparseness and, with boxes, "
                        "relevance mass / rank accuracy (about 90 more forward passes per map)")
    p.add_argument("--param", action="append", default=[], metavar="METHOD.NAME=VALUE",
                   help="a method parameter other than its default, e.g. rise.masks=8000 (repeatable; recorded in "
                        "run.json: a folder keeps one value)")
    p.add_argument("--out", required=True, help="output folder (results.csv, summary, curves.html)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    from ..text_cli import add_evaluate_options

    add_evaluate_options(p)  # --zero-shot imagenet|A,B,C for CLIP and SigLIP
    g = p.add_argument_group("distributed (Ray)")
    g.add_argument("--ray", default=None, metavar="local[:N]|auto|ADDRESS",
                   help="shard on Ray: a local instance with N workers, the cluster of this machine (auto) or "
                        "a cluster address (ray://head:10001)")
    g.add_argument("--workers", type=int, default=None, help="number of workers (default: N of local:N, else as "
                                                             "many as the cluster's resources fit)")
    g.add_argument("--cpus-per-worker", type=float, default=None, help="CPUs per worker (default 1; also its "
                                                                       "torch threads)")
    g.add_argument("--gpus-per-worker", type=float, default=None, help="GPUs per worker (default 0; 0.5 puts two "
                                                                       "workers on each GPU)")
    g.add_argument("--chunk-size", type=int, default=None, help="(image, method) pairs per work item (default: "
                                                                "the number of methods)")
    g.add_argument("--retries", type=int, default=None, help="times Ray reruns a chunk whose worker died "
                                                             "(default 3); workers are always restarted")
    p.set_defaults(func=cmd_evaluate)
