"""``tke-playbook``: the command line for people who script.

    tke-playbook render --profile seed                 # the plan as multi-document YAML (Secrets redacted)
    tke-playbook render --show-secrets | kubectl apply -f -   # the appliable form (keep it private)
    tke-playbook render --list-files                   # ship the hub's file list in the plan (asks the hub)
    tke-playbook render --profile seed --helm-values   # values for the vllm-inference-tke chart
    tke-playbook fit intfloat/e5-mistral-7b-instruct --gpu L20
    tke-playbook gpus                                  # the GPUs and TKE node types the toolkit knows

Other areas add subcommands through ``register(subparsers)`` (``serve``, ``preflight``). Bad input prints one
line to stderr and exits with status 2 (also a file argument that is missing, a folder, a FIFO, a device, binary or
too large); ``fit`` exits 1 when the model does not fit; Ctrl-C prints one line and exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from ..download.listing import plan_download
from ..errors import InvalidSpecError, PlaybookError
from ..hostenv import API_KEY_ENV, annotation_salt, generate_api_key, key_store_dir
from ..manifests.profiles import get_profile, render_profile, with_overrides
from ..playbook.settings import Settings
from ..specs.apikeys import check_api_key
from ..specs.fit import check_fit
from ..specs.hardware import gpu_rows, node_type_rows
from ..specs.serving import CONTAINER_PORT, layout_changes, node_gpu_name
from ..specs.target import Target

PLUGINS = ("tke_playbook.localserver.cli", "tke_playbook.cli.preflight", "tke_playbook.cli.download",
           "tke_playbook.cli.scorecard")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints the usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _render_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", default="seed", help="starting point: seed (the tutorial) or bge-m3")
    parser.add_argument("--helm-values", action="store_true", help="print values for the vllm-inference-tke chart")
    parser.add_argument("--show-secrets", action="store_true",
                        help="print Secret values (the appliable form; keep the output private). Without it they "
                             "show as <redacted>")
    parser.add_argument("--list-files", action="store_true",
                        help="ask the hub for the model's files now and ship that shard plan in the worker ConfigMap "
                             "(without it the download pods list the hub themselves, at a pinned revision; needs "
                             "the hub, or HF_ENDPOINT / MODELSCOPE_ENDPOINT for a mirror)")
    spec = parser.add_argument_group("overrides")
    spec.add_argument("--model", help="model id, e.g. BAAI/bge-m3 (names derive from it)")
    spec.add_argument("--pvc", help="PVC name (default ai-model)")
    spec.add_argument("--namespace", help="namespace for every object")
    spec.add_argument("--completions", type=int, help="download shards (Job completions)")
    spec.add_argument("--parallelism", type=int, help="download pods at a time")
    spec.add_argument("--source", help="hub: modelscope or huggingface")
    spec.add_argument("--pip-index-url", help="no effect any more: download pods install nothing (their worker "
                                              "uses only Python's standard library); accepted for old scripts")
    spec.add_argument("--node-selector", action="append", metavar="KEY=VALUE",
                      help="run download pods on nodes with this label, e.g. "
                           "node.kubernetes.io/instance-type=SA5.LARGE8 (repeatable)")
    spec.add_argument("--vllm-version", help="vLLM version to build the command line for, e.g. 0.12.0")
    spec.add_argument("--image", help="vLLM image (its tag gives the version unless --vllm-version is set)")
    spec.add_argument("--pooling-mode", help="dense (default), or for BAAI/bge-m3 sparse (lexical weights) or "
                                             "multi-vector (ColBERT), answered on /pooling; vLLM 0.33.0 or later")
    spec.add_argument("--matryoshka", action=argparse.BooleanOptionalAction, default=None,
                      help="serve `dimensions` for a Matryoshka-trained model (--hf-overrides is_matryoshka); "
                           "default: on for Qwen3-Embedding from vLLM 0.33.0")
    spec.add_argument("--service-type", help="ClusterIP, LoadBalancer-internal or LoadBalancer (public)")
    spec.add_argument("--lb-subnet-id", help="subnet for an internal LoadBalancer, e.g. subnet-abcd1234")
    spec.add_argument("--proxy-image", help="nginx image of the public LoadBalancer's auth proxy (default "
                                            "nginx:1.28.0-alpine from Docker Hub), e.g. a copy in your own registry")
    spec.add_argument("--lb-source-range", action="append", metavar="CIDR",
                      help="only these addresses may reach the LoadBalancer, e.g. 203.0.113.0/24 (repeatable)")
    spec.add_argument("--port", type=int, help=f"Service port (default {CONTAINER_PORT})")
    spec.add_argument("--no-api-key", action="store_true", help="serve without an API key (not with a public LB)")
    spec.add_argument("--max-model-len", type=int, help="vLLM --max-model-len")
    spec.add_argument("--max-batch-size", type=int, help="vLLM --max-num-seqs")
    spec.add_argument("--gpu-memory-utilization", type=float, help="vLLM --gpu-memory-utilization")
    spec.add_argument("--gpu", help="GPU model for the fit check, e.g. L20 (checked before rendering)")
    spec.add_argument("--gpus", type=int, help="GPUs per pod (tensor parallel follows unless --tp is set)")
    spec.add_argument("--tp", type=int, help="tensor parallel size")
    spec.add_argument("--pp", type=int, help="pipeline parallel size")
    spec.add_argument("--replicas", type=int, help="vLLM replicas")
    spec.add_argument("--nodes", type=int, help="nodes per vLLM replica (the chart's lwsGroupSize; above 1 renders a "
                                                "LeaderWorkerSet with Ray); GPUs of a replica = --gpus × --nodes")
    spec.add_argument("--instance-type", action="append", help="pin vLLM to this node instance type (repeatable)")
    spec.add_argument("--storage-class", help="StorageClass name (default cfs)")
    spec.add_argument("--size", help="PVC size, e.g. 100Gi")
    spec.add_argument("--vpc-id", help="VPC for the CFS StorageClass (renders it, with --subnet-id)")
    spec.add_argument("--subnet-id", help="subnet for the CFS file system, in the GPU node's zone")
    spec.add_argument("--zone", help="zone of the GPU node, e.g. ap-guangzhou-3 (the CFS file system goes there; "
                                     "with --vpc-id and --subnet-id)")
    spec.add_argument("--existing-files", choices=("download", "adopt", "trust"),
                      help="model files already on the PVC (e.g. from the tutorial's script): 'adopt' checks them "
                           "against the hub's listing, 'trust' takes them as they are; default 'download'")
    spec.add_argument("--api-key-env", default=API_KEY_ENV,
                      help=f"environment variable holding the API key (default {API_KEY_ENV}; else random)")


def _key_value(text: str, option: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise InvalidSpecError(f"{option} '{text}' is not KEY=VALUE: write it like "
                               f"node.kubernetes.io/instance-type=SA5.LARGE8", field=option, value=text)
    return key.strip(), value.strip()


def _serving_changes(args, profile) -> dict:
    """The serving choices the options change (``with_overrides`` resolves them over the profile's choices)."""
    serving = {k: v for k, v in {
        "vllm_version": args.vllm_version, "image": args.image, "service_type": args.service_type,
        "lb_subnet_id": args.lb_subnet_id, "service_port": args.port, "max_model_len": args.max_model_len,
        "max_batch_size": args.max_batch_size, "gpu_memory_utilization": args.gpu_memory_utilization,
        "gpu": args.gpu, "replicas": args.replicas, "lb_source_ranges": tuple(args.lb_source_range or ()) or None,
        "proxy_image": args.proxy_image, "pooling_mode": args.pooling_mode, "matryoshka": args.matryoshka,
    }.items() if v is not None}
    if args.image and not args.vllm_version:
        serving["vllm_version"] = None  # derive it from the new image's tag
    layout = {k: v for k, v in (("tp", args.tp), ("pp", args.pp), ("nodes", args.nodes), ("gpus", args.gpus))
              if v is not None}
    if layout:  # the one layout rule (the notebook form uses it too): GPUs per pod = tp × pp ÷ nodes
        serving.update(layout_changes(profile.serving, **layout))
    if args.no_api_key:
        serving["api_key_required"] = False
    if args.instance_type:
        serving["node_instance_types"] = tuple(args.instance_type)
        if args.gpu is None:  # the fit check follows the pinned node type's GPU when the catalog knows it
            serving["gpu"] = node_gpu_name(args.instance_type, profile.serving.gpu)
    return serving


def _download_changes(args) -> dict:
    download = {"pip_index_url": args.pip_index_url} if args.pip_index_url else {}
    if args.existing_files:
        download["mode"] = args.existing_files
    if args.node_selector:
        download["node_selector"] = tuple(_key_value(item, "--node-selector") for item in args.node_selector)
    return download


def _profile(args):
    profile = get_profile(args.profile)
    storage = {k: v for k, v in {"storage_class": args.storage_class, "size": args.size, "vpc_id": args.vpc_id,
                                 "subnet_id": args.subnet_id, "zone": args.zone}.items() if v is not None}
    return with_overrides(profile, model=args.model, pvc=args.pvc, namespace=args.namespace,
                          completions=args.completions, parallelism=args.parallelism, source=args.source,
                          storage=storage, serving=_serving_changes(args, profile), download=_download_changes(args))


def _api_key(args, profile) -> tuple[str | None, list[str]]:
    """The key for the plan's Secret: ``$<--api-key-env>`` (checked by the API-key rule), else a new random one
    (and a note that says so). None when the plan holds no key (helm values, or serving without a key)."""
    if args.helm_values or not profile.serving.api_key_required:
        return None, []
    given = os.environ.get(args.api_key_env) or None
    if given is not None:
        return check_api_key(given, f"${args.api_key_env}"), []
    return generate_api_key(), [f"no ${args.api_key_env}: a random API key was generated into Secret "
                                f"'{profile.serving.api_key_secret}'; applying a plan with a new key restarts vLLM "
                                f"with it (set ${args.api_key_env} to keep one key)"]


def _key_salt() -> bytes:
    """The annotation salt kept in the settings' state folder (read once here), beside the playbook's keys: the
    same key rendered here and deployed by the notebooks gets the same revision."""
    return annotation_salt(key_store_dir(Settings.from_env(target=Target.CLUSTER).home))


def run_render(args) -> int:
    profile = _profile(args)
    api_key, notes = _api_key(args, profile)
    download_plan = None
    if args.list_files and not args.helm_values:
        download_plan = plan_download(profile.download)
    sys.stdout.write(render_profile(profile, helm_values=args.helm_values, api_key=api_key,
                                    show_secrets=args.show_secrets, download_plan=download_plan, notes=notes,
                                    key_salt=_key_salt() if api_key is not None else None))
    if args.pip_index_url:
        print("tke-playbook render: --pip-index-url has no effect: download pods install nothing", file=sys.stderr)
    if notes and args.api_key_env != API_KEY_ENV:
        print(f"tke-playbook render: ${args.api_key_env} is not set; the Secret holds a random key",
              file=sys.stderr)
    return 0


def run_fit(args) -> int:
    verdict = check_fit(args.model, args.gpu, args.max_model_len, args.gpu_memory_utilization,
                        tensor_parallel=args.tensor_parallel)
    print(verdict.summary())
    width = max(len(r["item"]) for r in verdict.as_rows())
    for row in verdict.as_rows():
        print(f"  {row['item']:<{width}}  {row['GiB']:>7.2f} GiB  {row['note']}")
    for note in verdict.notes:
        print(f"  note: {note}")
    print(verdict.recommendation)
    return 0 if verdict.fits else 1


def run_gpus(args) -> int:
    for row in gpu_rows():
        print(f"{row['gpu']:<10} {row['memory_GiB']:>6.1f} GiB  bf16={'yes' if row['bf16'] else 'no':<3}  "
              f"{'' if row['verified'] else '(memory not verified)'}")
    print()
    for row in node_type_rows():
        print(f"{row['node_type']:<18} {row['vCPU']:>5.0f} vCPU {row['memory_GiB']:>5} GiB  {row['gpus']} × "
              f"{row['gpu']:<10} {row['role']:<8} {'' if row['verified'] else '(unverified)'}")
    return 0


OWN_COMMANDS = ("render", "fit", "gpus")
INTERRUPTED = 130  # 128 + SIGINT, what shells report for a command stopped with Ctrl-C


def build_parser(*, plugins: bool = True) -> argparse.ArgumentParser:
    """The parser; ``plugins=False`` leaves out other areas' subcommands (their imports are slow)."""
    parser = _Parser(prog="tke-playbook", description="From an empty TKE cluster to a vLLM embedding service.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    render = sub.add_parser("render", help="print the plan as YAML, or the chart's values")
    _render_args(render)
    render.set_defaults(func=run_render)
    fit = sub.add_parser("fit", help="does a model fit a GPU? (exit 1 when it does not)")
    fit.add_argument("model", help="model id or short name, e.g. e5-mistral-7b-instruct")
    fit.add_argument("--gpu", required=True, help="GPU (L20, A10, T4, …) or node type (PNV5b.8XLARGE96)")
    fit.add_argument("--max-model-len", type=int, help="tokens per sequence (default: the model's recommended)")
    fit.add_argument("--gpu-memory-utilization", type=float, default=0.9, help="share of GPU memory (default 0.9)")
    fit.add_argument("--tensor-parallel", type=int, default=1, help="GPUs to shard over (default 1)")
    fit.set_defaults(func=run_fit)
    gpus = sub.add_parser("gpus", help="list the GPUs and TKE node types the toolkit knows")
    gpus.set_defaults(func=run_gpus)
    for name in PLUGINS if plugins else ():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # that area is not installed yet; anything else is a real error
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(plugins=not (argv and argv[0] in OWN_COMMANDS))  # `render` need not import the cluster
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (2): return the status instead of exiting
        return int(exc.code or 0)
    try:
        return int(args.func(args) or 0)
    except (PlaybookError, ValueError, LookupError) as exc:
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"tke-playbook {args.command}: error: {message}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `tke-playbook render | head`
        return 0
    except KeyboardInterrupt:  # Ctrl-C: one line, and the shell's status for SIGINT
        print(f"tke-playbook {args.command}: stopped (Ctrl-C)", file=sys.stderr)
        return INTERRUPTED
    except OSError as exc:  # a path the user gave that the system refused; never a traceback
        where = f" {exc.filename}" if exc.filename else ""
        print(f"tke-playbook {args.command}: error:{where}: {exc.strerror or exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
