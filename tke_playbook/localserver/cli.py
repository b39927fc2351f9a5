"""`tke-playbook serve` and `python -m tke_playbook.localserver`: run the local embedding server in the foreground.

    tke-playbook serve --model PATH --port P [--api-key-file FILE | --api-key-prompt] [--served-model-name NAME]

Without ``--model`` it serves the packaged offline all-MiniLM-L6-v2. Any other folder must carry the download's
completion marker. The API key comes from ``--api-key-file``, an interactive prompt (``--api-key-prompt``) or
``VLLM_API_KEY``, as for vLLM; never from the command line, where every local user sees it in ``ps``.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from ..errors import InvalidSpecError, PlaybookError, ServerError
from ..hostenv import read_key_file
from ..specs.apikeys import check_api_key
from ..specs.names import validate_port
from . import surface
from .settings import MAX_BATCH_TOKENS, check_host, check_number, default_workers, url_host

API_KEY_ENV = "VLLM_API_KEY"
MODULE_PROG = "python -m tke_playbook.localserver"


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit 2, like `tke-playbook` (argparse would print the usage too)
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--model", default=None, help="sentence-transformers model folder (default: the offline "
                        "all-MiniLM-L6-v2)")
    parser.add_argument("--host", default="127.0.0.1", help="IP address to bind (default 127.0.0.1: this "
                        "machine only)")
    parser.add_argument("--port", type=int, default=8000, help="TCP port (0 = any free port; default 8000)")
    keys = parser.add_mutually_exclusive_group()
    keys.add_argument("--api-key-file", default=None, help=f"require 'Authorization: Bearer KEY' on /v1/* with "
                      f"the key in this file (default: ${API_KEY_ENV}, else no key)")
    keys.add_argument("--api-key-prompt", action="store_true", help="ask for the API key on the terminal")
    keys.add_argument("--api-key", default=None, help=argparse.SUPPRESS)  # refused: `ps` would show the key
    parser.add_argument("--served-model-name", default=None, help="model name in the API (default: the "
                        "folder's model id)")
    parser.add_argument("--max-batch", type=int, default=64, help="sentences per batch (default 64)")
    parser.add_argument("--max-batch-tokens", type=int, default=MAX_BATCH_TOKENS, help="tokens per batch at most, "
                        f"so each step stays short (default {MAX_BATCH_TOKENS})")
    parser.add_argument("--max-wait-ms", type=float, default=2.0, help="how long a batch waits for more "
                        "sentences while they keep arriving (default 2 ms)")
    parser.add_argument("--max-queue", type=int, default=4096, help="sentences that may wait before "
                        "requests get 503 (default 4096)")
    parser.add_argument("--max-inputs-per-request", type=int, default=surface.MAX_INPUTS_PER_REQUEST,
                        help=f"inputs one request may hold (default {surface.MAX_INPUTS_PER_REQUEST})")
    parser.add_argument("--max-tokens-per-request", type=int, default=surface.MAX_TOKENS_PER_REQUEST,
                        help=f"tokens one request may hold (default {surface.MAX_TOKENS_PER_REQUEST})")
    parser.add_argument("--max-body-mb", type=float, default=surface.MAX_BODY_BYTES / 2 ** 20,
                        help=f"largest request body in MiB (default {surface.MAX_BODY_BYTES / 2 ** 20:g})")
    parser.add_argument("--workers", type=int, default=None, help="encoding threads running batches side by "
                        "side (default: 2 when there are 2 or more cores)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: cores "
                        "divided by workers)")
    parser.add_argument("--trust-request-chat-template", action="store_true", help="render chat templates sent "
                        "in requests (chat_template, chat_template_kwargs.chat_template); refused by default, as "
                        "in vLLM. Every render is bounded in time ($" + surface.CHAT_TEMPLATE_TIMEOUT_ENV +
                        f", default {surface.CHAT_TEMPLATE_TIMEOUT_S:g} s), memory and output")
    parser.add_argument("--vllm-version", default=surface.VLLM_VERSION, choices=surface.VLLM_VERSIONS,
                        help=f"which vLLM release to answer as where they differ (default {surface.VLLM_VERSION})")
    parser.add_argument("--hf-overrides", default=None, help="JSON, as vLLM's: "
                        "'{\"matryoshka_dimensions\": [128, 256]}' lets requests ask for those `dimensions`")
    parser.add_argument("--pooler-config", default=None, help="JSON, as vLLM's: '{\"enable_chunked_processing\": "
                        "true, \"max_embed_len\": 3072}' embeds over-long inputs in chunks")
    parser.add_argument("--allow-incomplete", action="store_true", help="serve a folder without the "
                        "download's completion marker")
    parser.add_argument("--port-file", default=None, help=argparse.SUPPRESS)  # written once serving
    parser.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # exit when it exits
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = add_arguments(_Parser(prog=MODULE_PROG, description="vLLM-compatible embedding server on CPU"))
    parser.set_defaults(error_prefix=MODULE_PROG)
    return parser


def register(subparsers) -> argparse.ArgumentParser:
    """Add the ``serve`` subcommand to the ``tke-playbook`` command line."""
    parser = subparsers.add_parser("serve", help="serve a sentence-transformers model with vLLM's embeddings API",
                                   description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.set_defaults(func=run, error_prefix="tke-playbook serve")
    return parser


def check_settings(*, port: int, max_batch: int, max_queue: int, max_wait_ms: float, workers: int | None = None,
                   threads: int | None = None, cli: bool = False, host: str | None = None,
                   max_inputs: int | None = None, max_tokens: int | None = None,
                   max_body_bytes: int | None = None, max_batch_tokens: int | None = None) -> None:
    """Refuse bad settings before anything loads: InvalidSpecError names the setting (``--max-batch`` on the
    command line, ``max_batch`` in Python) and what to give. ``port`` 0 means any free port; NaN, infinity and
    absurdly large numbers are refused too."""
    names = {"max_inputs": "max_inputs_per_request", "max_tokens": "max_tokens_per_request"}

    def label(name: str) -> str:
        return "--" + names.get(name, name).replace("_", "-") if cli else name

    if host is not None:
        check_host(host, label("host"))
    if port != 0:
        validate_port(port, label("port"))
    for name, value in (("max_batch", max_batch), ("max_batch_tokens", max_batch_tokens), ("max_queue", max_queue), ("workers", workers),
                        ("threads", threads), ("max_wait_ms", max_wait_ms), ("max_inputs", max_inputs),
                        ("max_tokens", max_tokens)):
        if value is not None:
            check_number(name, value, label(name))
    if max_body_bytes is not None:
        check_number("max_body_bytes", max_body_bytes, "--max-body-mb (in bytes)" if cli else "max_body_bytes")


def json_option(flag: str, raw: str | None, allowed: tuple[str, ...]) -> dict:
    """A JSON object option (``--hf-overrides``, ``--pooler-config``) holding only keys the local server uses."""
    if raw is None:
        return {}
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise InvalidSpecError(f"{flag} is not JSON ({exc}): give an object such as '{{\"{allowed[0]}\": ...}}'",
                               field=flag, value=raw) from None
    if not isinstance(value, dict):
        raise InvalidSpecError(f"{flag} must be a JSON object", field=flag, value=raw)
    unknown = sorted(set(value) - set(allowed))
    if unknown:
        raise InvalidSpecError(f"{flag}: the local server takes only {', '.join(allowed)}, not {', '.join(unknown)}",
                               field=flag, value=raw)
    return value


def model_options(args: argparse.Namespace) -> dict:
    """ServerConfig fields from ``--hf-overrides`` and ``--pooler-config``."""
    overrides = json_option("--hf-overrides", args.hf_overrides, surface.HF_OVERRIDE_KEYS)
    pooler = json_option("--pooler-config", args.pooler_config, surface.POOLER_CONFIG_KEYS)
    dims = overrides.get("matryoshka_dimensions")
    if dims is not None and (not isinstance(dims, list) or not all(isinstance(d, int) and d > 0 for d in dims)):
        raise InvalidSpecError("--hf-overrides matryoshka_dimensions must be a list of positive integers",
                               field="hf_overrides", value=args.hf_overrides)
    return {"matryoshka_dimensions": tuple(dims) if dims else None,
            "enable_chunked_processing": bool(pooler.get("enable_chunked_processing", False)),
            "max_embed_len": pooler.get("max_embed_len"), "vllm_version": args.vllm_version}


def chat_template_timeout(environ=os.environ) -> float:
    """Seconds one chat-template render may take: ``$VLLM_CHAT_TEMPLATE_RENDER_TIMEOUT`` as in vLLM, else 30."""
    raw = environ.get(surface.CHAT_TEMPLATE_TIMEOUT_ENV)
    if raw is None or raw == "":
        return surface.CHAT_TEMPLATE_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = raw
    check_number("chat_template_timeout_s", value, surface.CHAT_TEMPLATE_TIMEOUT_ENV)
    return value


def _read_key_file(path: str) -> str:
    return read_key_file(path, f"--api-key-file {path}")  # the one rule: a private file holding one valid key


def resolve_api_key(args: argparse.Namespace, environ=os.environ, ask=getpass.getpass) -> str | None:
    """The API key from ``--api-key-file``, the prompt (``--api-key-prompt``) or ``VLLM_API_KEY``; None for none.

    ``--api-key K`` is refused: on the command line the key shows in ``ps`` for every user of the machine.
    """
    if args.api_key is not None:
        raise InvalidSpecError(f"--api-key puts the key in the process list, where every local user can read it: "
                               f"use --api-key-file FILE, --api-key-prompt or {API_KEY_ENV}=... instead",
                               field="api_key", value="***")
    if args.api_key_file:
        return _read_key_file(args.api_key_file)
    if args.api_key_prompt:
        try:
            key = ask("API key for the local server: ").strip()
        except (EOFError, KeyboardInterrupt):
            key = ""
        if not key:
            raise InvalidSpecError("no API key was typed: type one, or leave out --api-key-prompt to serve without "
                                   "a key", field="api_key", value="")
        return check_api_key(key, "The typed API key")
    key = environ.get(API_KEY_ENV) or None
    return check_api_key(key, f"${API_KEY_ENV}") if key is not None else None


def raise_open_file_limit(target: int = 65535) -> int:
    """Raise this process's soft limit on open files towards ``target`` (as vLLM does; each connection is a file)."""
    try:
        import resource
    except ImportError:  # not on this platform
        return -1
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def _watch_parent(parent_pid: int, stop, loop) -> None:
    """Stop the server when the process that started it is gone (a killed notebook kernel leaves no orphan)."""
    def watch():
        while not stop.is_set():
            if os.getppid() != parent_pid:
                loop.call_soon_threadsafe(stop.set)
                return
            threading.Event().wait(1.0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


async def _main(args: argparse.Namespace) -> None:
    # late: aiohttp, numpy and (once a model loads) torch; `tke-playbook --help` loads none of them
    from .app import ServerConfig, bind_socket, build_app, serve
    from .encoder import Encoder, default_model_name, resolve_model_dir

    max_body_bytes = args.max_body_mb * 2 ** 20
    check_settings(port=args.port, max_batch=args.max_batch, max_queue=args.max_queue,
                   max_wait_ms=args.max_wait_ms, workers=args.workers, threads=args.threads, cli=True,
                   host=args.host, max_inputs=args.max_inputs_per_request, max_tokens=args.max_tokens_per_request,
                   max_body_bytes=max_body_bytes, max_batch_tokens=args.max_batch_tokens)
    host = check_host(args.host, "--host")
    api_key = resolve_api_key(args)
    model_dir = resolve_model_dir(args.model, require_marker=not args.allow_incomplete)
    cores = os.cpu_count() or 1
    workers = args.workers or default_workers(cores)
    threads = args.threads or max(1, cores // workers)
    config = ServerConfig(served_model_name=args.served_model_name or default_model_name(model_dir),
                          api_key=api_key, max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                          max_batch_tokens=args.max_batch_tokens,
                          max_queue=args.max_queue, workers=workers, max_inputs=args.max_inputs_per_request,
                          max_tokens=args.max_tokens_per_request, max_body_bytes=int(max_body_bytes),
                          trust_request_chat_template=args.trust_request_chat_template,
                          chat_template_timeout_s=chat_template_timeout(), **model_options(args))
    try:  # a taken port fails now, not after loading the model
        sock = bind_socket(host, args.port)
    except OSError as exc:
        raise ServerError(f"cannot listen on {host}:{args.port}: {exc.strerror or exc}. Stop what uses the "
                          f"port or choose another one (--port 0 picks a free port).", cause=exc) from exc
    raise_open_file_limit()
    print(f"Loading {model_dir} ...", flush=True)
    encoder = Encoder(model_dir, threads=threads)
    encoder.encode_ids([[0, 0]])  # warm up before accepting requests
    # Encoding threads hand the GIL back and forth with the event loop many times per batch; the default 5 ms
    # switch interval would leave cores idle while a thread waits for it.
    sys.setswitchinterval(float(os.environ.get("TKE_PLAYBOOK_SWITCH_INTERVAL", "0.0005")))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.parent_pid:
        _watch_parent(args.parent_pid, stop, loop)

    def ready(port: int) -> None:
        url = f"http://{url_host(host)}:{port}"
        print(f"Serving {config.served_model_name} (dim {encoder.facts.dim}, max_model_len "
              f"{encoder.facts.max_model_len}, {workers} worker(s) x {threads} thread(s)) at {url}/v1/embeddings"
              f"{' - API key required' if config.api_key else ''}", flush=True)
        if args.port_file:
            tmp = Path(args.port_file + ".tmp")
            tmp.write_text(str(port), encoding="utf-8")
            os.replace(tmp, args.port_file)

    await serve(build_app(encoder, config), sock, stop=stop, on_ready=ready)
    print("Server stopped.", flush=True)


def run(args: argparse.Namespace) -> int:
    """Run the server in the foreground until SIGTERM/Ctrl-C; errors print one line to stderr and return 2."""
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_main(args))
    except PlaybookError as exc:
        prefix = getattr(args, "error_prefix", "tke-playbook serve")
        print(f"{prefix}: error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
