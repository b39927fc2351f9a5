"""`tke-playbook download` and `tke-playbook verify`: fetch a model on this machine (the local target), and check
or adopt a model folder.

    tke-playbook download --model bge-m3 [--source huggingface] [--workers 3] [--pvc-dir DIR] [--plan-only]
    tke-playbook verify [--model M] [--pvc PVC | --pvc-dir DIR | PATH]          # re-hash against the manifest
    tke-playbook verify --adopt [--source S] [--model M] [PATH]                # files fetched by other means
    tke-playbook verify --adopt --trust-files PATH                             # the explicit opt-out: no hub

Without internet the bundled all-MiniLM-L6-v2 downloads through a local hub mirror. ``--plan-only`` prints which
bytes each shard (pod) would fetch, for the tutorial's split and ours, and downloads nothing. Bad input prints one
line and exits 2; a download or verification that fails prints its first problem in one line and exits 1; Ctrl-C
stops the workers, says in one line that running the command again resumes, and exits 130.
"""

from __future__ import annotations

import argparse
import sys
import time

from ..download.listing import plan_download
from ..download.local import download_local, validate_pvc_dir
from ..download.mirror import offline_mirror
from ..download.verify import adopt_model, model_folder_for, verify_model
from ..errors import DownloadError, IncompleteModelError, InvalidSpecError, PlaybookError
from ..podworker.modelfolder import read_manifest
from ..specs.catalog import OFFLINE_MODEL
from ..specs.download import MAX_SHARDS, DownloadSpec
from ..specs.storage import DEFAULT_PVC
from .commands import INTERRUPTED

DEFAULT_MODEL = OFFLINE_MODEL


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help=f"catalog model (default: {DEFAULT_MODEL}, the offline one)")
    parser.add_argument("--source", default="modelscope", help="modelscope (default) or huggingface")
    parser.add_argument("--revision", default=None, help="branch, tag or commit (default master / main)")
    parser.add_argument("--endpoint", default=None, help="hub URL (a mirror); default $HF_ENDPOINT / "
                        "$MODELSCOPE_ENDPOINT, else the public hub")
    parser.add_argument("--pvc", default=DEFAULT_PVC, help=f"PVC name; locally a folder (default {DEFAULT_PVC})")
    parser.add_argument("--pvc-dir", default=None, help="folder playing the PVC (default: the toolkit's state dir)")
    parser.add_argument("--include", action="append", default=[], help="glob of files to fetch (repeatable)")
    parser.add_argument("--exclude", action="append", default=[], help="glob of files to skip (repeatable)")
    parser.add_argument("--keep-duplicate-formats", action="store_true", help="also fetch .bin/.pt/... weights "
                        "when safetensors exist")
    parser.add_argument("--allow-unverified", action="store_true", help="accept files the hub lists no sha256 or "
                        "git sha1 for (checked by size only; refused otherwise)")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    _common(parser)
    parser.add_argument("--workers", type=int, default=3, help="shards and worker processes (default 3, at most 64; "
                        "fewer when the model is small or the machine has few cores)")
    parser.add_argument("--offline", action="store_true", help="use the bundled model's local mirror")
    parser.add_argument("--plan-only", action="store_true", help="print the plan and download nothing")
    return parser


def add_verify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("path", nargs="?", default=None, help="the model folder itself (instead of --pvc/--pvc-dir "
                        "and --model)")
    _common(parser)
    parser.add_argument("--adopt", action="store_true", help="the files were fetched by other means: check each "
                        "against the hub's listing and write the completion marker (fetches nothing)")
    parser.add_argument("--trust-files", action="store_true", help="with --adopt: record the files as they are, "
                        "without a hub (an explicit opt-out of the hub check)")
    return parser


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``download`` and ``verify`` subcommands to the ``tke-playbook`` command line."""
    parser = subparsers.add_parser("download", help="download a model in parallel, verified and resumable",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run)
    verify = subparsers.add_parser("verify", help="re-hash a downloaded model, or adopt files fetched by other means",
                                   description=__doc__.split("\n\n")[0])
    add_verify_arguments(verify)
    verify.set_defaults(func=run_verify)
    return parser


def _spec(args, workers: int = 1):
    for name in ("model", "revision"):  # left out means the default; given empty is a mistake
        value = getattr(args, name)
        if value is not None and not value.strip():
            raise InvalidSpecError(f"--{name} is empty: give a value (e.g. --model BAAI/bge-m3, --revision main) or "
                                   f"leave the option out for the default", field=name, value=value)
    return DownloadSpec(model=args.model or DEFAULT_MODEL, source=args.source, revision=args.revision,
                        completions=workers, parallelism=workers, pvc=args.pvc, include=tuple(args.include),
                        exclude=tuple(args.exclude), keep_duplicate_formats=args.keep_duplicate_formats,
                        endpoint=args.endpoint, allow_unverified=args.allow_unverified)


def _print_plans(spec, endpoint=None, out=None) -> None:
    out = out or sys.stdout
    for strategy in ("tutorial", "balanced"):
        plan = plan_download(spec, endpoint=endpoint, strategy=strategy)
        loads = " / ".join(f"{b / 1e6:.1f}" for b in plan.bytes_per_shard)
        print(f"{strategy:<9} {plan.total_bytes / 1e6:9.1f} MB  per shard (MB): {loads}", file=out)
    for path, why in plan.skipped:
        print(f"  skip {path}: {why}", file=out)
    for f in plan.files:
        print(f"  {f.path}: {f.size} bytes, checked by {f.check}", file=out)


def _checks(counts: dict) -> str:
    return ", ".join(f"{n} by {check}" for check, n in sorted(counts.items())) or "none"


def _failed(command: str, exc) -> int:
    print(f"tke-playbook {command}: {' '.join(str(exc).split())}", file=sys.stderr)
    return 1


def run(args) -> int:
    if not 1 <= args.workers <= MAX_SHARDS:
        raise InvalidSpecError(f"--workers {args.workers} must be at least 1 and at most {MAX_SHARDS} (downloads "
                               f"wait on the network; more processes only add overhead), e.g. --workers 3",
                               field="workers", value=args.workers)
    spec = _spec(args, args.workers)
    pvc_dir = validate_pvc_dir(args.pvc_dir) if args.pvc_dir is not None else None
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
              f"files verified ({_checks(summary.get('checks', {}))})", end="", flush=True)

    try:
        folder = download_local(spec, pvc_dir=pvc_dir, on_progress=show, offline=True if args.offline else None)
    except DownloadError as exc:
        print()
        return _failed("download", exc)
    except KeyboardInterrupt:  # the workers are stopped; what they verified stays, and a rerun resumes there
        print(flush=True)  # end the progress line (stdout)
        print("tke-playbook download: stopped (Ctrl-C); run the same command again to resume - files already "
              "verified and bytes already written are kept", file=sys.stderr)
        return INTERRUPTED
    counts: dict[str, int] = {}
    for entry in read_manifest(folder).get("files", []):
        counts[entry["check"]] = counts.get(entry["check"], 0) + 1
    print(f"\ncomplete: {folder} ({sum(counts.values())} files: {_checks(counts)})")
    return 0


class _Bar:
    """A progress bar on stderr, redrawn at most 10 times a second."""

    def __init__(self):
        self.last, self.drawn = 0.0, False

    def end(self) -> None:
        """End the bar's line, if one was drawn (so a following message stays one line)."""
        if self.drawn:
            print(file=sys.stderr)

    def __call__(self, done: int, total: int, path: str) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and done < total:
            return
        self.last, self.drawn = now, True
        share = done / total if total else 1.0
        bar = "#" * int(30 * share)
        print(f"\r[{bar:<30}] {share:6.1%} {done / 1e6:9.1f} / {total / 1e6:.1f} MB  {path[-40:]:<40}", end="",
              file=sys.stderr, flush=True)


def _folder(args):
    if args.path is not None and args.pvc_dir is not None:
        raise InvalidSpecError("Give the model folder either as PATH or as --pvc-dir with --model, not both",
                               field="path", value=args.path)
    if args.path is not None and not args.path.strip():
        raise InvalidSpecError("The model folder is empty: give a path such as ~/models/BAAI/bge-m3", field="path",
                               value=args.path)
    return model_folder_for(_spec(args), args.pvc_dir, args.path)


def run_verify(args) -> int:
    if args.trust_files and not args.adopt:
        raise InvalidSpecError("--trust-files goes with --adopt: tke-playbook verify --adopt --trust-files PATH",
                               field="trust_files", value=True)
    folder, bar = _folder(args), _Bar()
    try:
        if args.adopt:
            anonymous = args.trust_files and args.model is None and args.path is not None
            adopt_model(None if anonymous else _spec(args), folder=folder, trust_files=args.trust_files,
                        endpoint=args.endpoint)
        result = verify_model(folder, on_progress=bar)
    except (DownloadError, IncompleteModelError) as exc:
        bar.end()
        return _failed("verify", exc)
    except BaseException:  # Ctrl-C or bad input: end the bar's line so the one-line message stands alone
        bar.end()
        raise
    bar.end()
    print(f"{'adopted and ' if args.adopt else ''}verified {result['files']} files "
          f"({result['bytes'] / 1e6:.1f} MB) in {folder}: {_checks(result['checks'])}")
    return 0


def main(argv=None) -> int:
    args = add_arguments(argparse.ArgumentParser(prog="python -m tke_playbook.cli.download")).parse_args(argv)
    try:
        return run(args)
    except (PlaybookError, ValueError, LookupError) as exc:
        print(f"download: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
