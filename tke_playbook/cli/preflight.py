"""``tke-playbook preflight``: check a cluster before deploying, from the command line.

Registered by the foundation's ``tke_playbook/cli.py`` through :func:`register`. Exit status 0 when every check
passes, 1 when one fails (the table says what to do).
"""

from __future__ import annotations

import argparse
import sys

from ..specs.catalog import get_model


def register(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "preflight", help="check a cluster before deploying: context, nodes, GPUs vs the model, CFS, LWS",
        description="Check that the cluster in your kubeconfig is ready for the chosen model.")
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument("--model", help="model to check GPU memory against, e.g. intfloat/e5-mistral-7b-instruct")
    parser.add_argument("--max-model-len", type=int, help="vLLM --max-model-len to size the KV cache for")
    parser.add_argument("--gpu-memory-utilization", type=float, help="vLLM --gpu-memory-utilization (default 0.9)")
    parser.add_argument("--storage-class", help="StorageClass the PVC will use (default: any CFS class)")
    parser.add_argument("--lws", action="store_true", help="the deployment uses LeaderWorkerSet (lwsGroupSize > 1)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from ..kube.client import check_kubeconfig  # late: the Kubernetes client takes seconds to import
    from ..kube.preflight import preflight

    if args.model:
        get_model(args.model)  # an unknown name fails here with "did you mean", before any network call
    if args.kubeconfig is not None:
        check_kubeconfig(args.kubeconfig)  # a missing, binary, huge or non-YAML file: one line, exit 2
    report = preflight(args.kubeconfig, args.context, model=args.model, storage_class=args.storage_class,
                       lws=args.lws, max_model_len=args.max_model_len,
                       gpu_memory_utilization=args.gpu_memory_utilization)
    print(report, file=sys.stdout)
    return 0 if report.ok else 1
