"""`tke-playbook download`: plan a model download and run it on this machine (the local target).

    tke-playbook download --model bge-m3 [--source huggingface] [--workers 3] [--pvc-dir DIR] [--plan-only]

Without internet the bundled all-MiniLM-L6-v2 downloads through a local hub mirror. ``--plan-only`` prints which
bytes each shard (pod) would fetch, for the tutorial's split and ours, and downloads nothing.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2", help="catalog model "
                        "(default: the offline all-MiniLM-L6-v2)")
    parser.add_argument("--source", default="modelscope", help="modelscope (default) or huggingface")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default master / main)")
    parser.add_argument("--workers", type=int, default=3, help="shards and worker processes (default 3)")
    parser.add_argument("--pvc", default="ai-model", help="PVC name; locally a folder (default ai-model)")
    parser.add_argument("--pvc-dir", default=None, help="folder playing the PVC (default: the toolkit's state dir)")
    parser.add_argument("--include", action="append", default=[], help="glob of files to fetch (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], help="glob of files to skip (repeatable)")
    parser.add_argument("--keep-duplicate-formats", action="store_true", help="also fetch .bin/.pt/... weights "
                        "when safetensors exist")
    parser.add_argument("--offline", action="store_true", help="use the bundled model's local mirror")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and download nothing")
    return parser


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``download`` subcommand to the ``tke-playbook`` command line."""
    parser = subparsers.add_parser("download", help="download a model in parallel, verified and resumable",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)
    return parser


def _spec(args):
    from .spec import DownloadSpec

    return DownloadSpec(model=args.model, source=args.source, revision=args.revision, completions=args.workers,
                        parallelism=args.workers, pvc=args.pvc, include=tuple(args.include),
                        exclude=tuple(args.exclude), keep_duplicate_formats=args.keep_duplicate_formats)


def _print_plans(spec, endpoint=None, out=None) -> None:
    from .listing import plan_download

    out = out or sys.stdout
    for strategy in ("tutorial", "balanced"):
        plan = plan_download(spec, endpoint=endpoint, strategy=strategy)
        loads = " / ".join(f"{b / 1e6:.1f}" for b in plan.bytes_per_shard)
        print(f"{strategy:<9} {plan.total_bytes / 1e6:9.1f} MB  per shard (MB): {loads}", file=out)
    for path, why in plan.skipped:
        print(f"  skip {path}: {why}", file=out)


def run(args) -> int:
    from .local import download_local
    from .mirror import offline_mirror

    spec = _spec(args)
    if args.plan_only:
        if args.offline:
            with offline_mirror() as hub:
                _print_plans(spec, hub.url)
        else:
            _print_plans(spec)
        return 0

    def show(summary):
        done, total = summary["bytes_done"], max(summary["bytes_total"], 1)
        print(f"\r{done / 1e6:8.1f} / {total / 1e6:.1f} MB  {summary['files_verified']}/{summary['files_total']} "
              f"files verified", end="", flush=True)

    folder = download_local(spec, pvc_dir=args.pvc_dir, on_progress=show, offline=True if args.offline else None)
    print(f"\ncomplete: {folder}")
    return 0


def main(argv=None) -> int:
    from ..errors import PlaybookError

    args = add_arguments(argparse.ArgumentParser(prog="python -m tke_playbook.download.cli")).parse_args(argv)
    try:
        return run(args)
    except (PlaybookError, ValueError, LookupError) as exc:
        print(f"download: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
