"""Check the toolkit's vLLM command lines against real vLLM releases' own ``vllm serve`` argument parsers.

Each release is installed from its wheel into a throwaway virtual environment (never the project's): the wheel
itself with ``--no-deps``, then only the light packages its parser's import chain needs, and the CPU build of torch.
The toolkit renders every plan variant below (``tke-playbook render --profile seed ...`` for that release), the
release's parser (``make_arg_parser`` on a ``FlexibleArgumentParser``, then ``validate_parsed_serve_args``) parses
each command line, and the outcome is written to ``tests/data/vllm_serve_parsers.json`` with its provenance (wheel
file and sha256, Python, torch, the date). ``tests/test_vllm_parsers.py`` checks the rendered lines against that
record, and runs the real parser again where the throwaway environment exists.

    python tools/check_vllm_parsers.py setup 0.33.0 0.34.0   # build the environments (downloads the wheels)
    python tools/check_vllm_parsers.py check 0.33.0 0.34.0   # parse every variant, write the record
    python tools/check_vllm_parsers.py check --dry-run 0.34.0   # parse and print, write nothing

The environments live in ``$TKE_VLLM_PARSER_VENVS`` (default ``/tmp/vllm-parser``), one folder per release.
Run it with the project's Python (``.venv/bin/python``) from the repository root. The ``probe`` subcommand is what
runs inside a release's environment: it reads command lines (JSON) on stdin and imports nothing of the toolkit.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import hashlib
import io
import json
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "vllm_serve_parsers.json"
VENVS = Path(os.environ.get("TKE_VLLM_PARSER_VENVS", "/tmp/vllm-parser"))
RELEASES = ("0.33.0", "0.34.0")
TORCH = "torch==2.13.0"  # the CPU build on the package index, as the project's Makefile installs it
# What the parser's import chain needs in 0.33.0 and 0.34.0 (found by importing it until nothing was missing);
# installed with their own dependencies. xgrammar and llguidance are imported by name only: --no-deps.
LIGHT_DEPS = ("packaging", "regex", "pyyaml", "pydantic", "numpy", "psutil", "pyzmq", "urllib3", "transformers",
              "aiohttp", "requests", "fastapi", "pillow", "pybase64", "cachetools", "prometheus_client", "openai",
              "openai_harmony", "cbor2", "msgspec", "cloudpickle", "uvloop", "py-cpuinfo", "partial_json_parser",
              "apache-tvm-ffi")
NO_DEPS = ("xgrammar==0.2.8", "llguidance")

# The plan variants: (id, arguments to `tke-playbook render --profile seed`). Each is rendered for each release.
VARIANTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("seed", ()),
    ("bge-m3", ("--model", "BAAI/bge-m3")),
    ("qwen3-8b", ("--model", "Qwen/Qwen3-Embedding-8B")),
    ("two-gpus", ("--gpus", "2")),
    ("two-nodes", ("--nodes", "2", "--tp", "2")),
    ("public-lb", ("--service-type", "LoadBalancer")),
    # issue 24: the retrieval stack on a cluster
    ("reranker-bge-v2-m3", ("--model", "BAAI/bge-reranker-v2-m3")),
    ("reranker-qwen3-0.6b", ("--model", "Qwen/Qwen3-Reranker-0.6B")),
    ("bge-m3-sparse", ("--model", "BAAI/bge-m3", "--pooling-mode", "sparse")),
    ("bge-m3-multi-vector", ("--model", "BAAI/bge-m3", "--pooling-mode", "multi-vector")),
    ("matryoshka-qwen3-0.6b", ("--model", "Qwen/Qwen3-Embedding-0.6B")),
    ("matryoshka-qwen3-4b", ("--model", "Qwen/Qwen3-Embedding-4B")),
    ("matryoshka-qwen3-8b", ("--model", "Qwen/Qwen3-Embedding-8B", "--gpus", "2")),
)


# --- inside a release's environment ---------------------------------------------------------------------------

def _serve_parser():
    from vllm.utils.argparse_utils import FlexibleArgumentParser
    try:  # 0.33.0 and 0.34.0
        from vllm.entrypoints.common.cli_args import make_arg_parser, validate_parsed_serve_args
    except ImportError:  # older releases
        from vllm.entrypoints.openai.cli_args import make_arg_parser, validate_parsed_serve_args
    return make_arg_parser(FlexibleArgumentParser(prog="vllm serve")), validate_parsed_serve_args


def _plain(value):
    """A parsed value as JSON: dataclasses (PoolerConfig) as their fields that differ from the default."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for f in dataclasses.fields(value):
            v = getattr(value, f.name)
            default = f.default if f.default is not dataclasses.MISSING else None
            if v != default:
                out[f.name] = _plain(v)
        return out
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _parse_one(parser, validate, argv: list[str]) -> dict:
    if argv[:2] != ["vllm", "serve"]:
        return {"accepted": False, "error": f"not a `vllm serve` line: {argv[:2]}"}
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            namespace = parser.parse_args(argv[2:])
            validate(namespace)
    except SystemExit:
        lines = [line.strip() for line in err.getvalue().splitlines() if line.strip()]
        start = next((i for i, line in enumerate(lines) if ": error:" in line), max(len(lines) - 1, 0))
        said = [line for line in lines[start:] if "errors.pydantic.dev" not in line]
        return {"accepted": False, "error": " ".join(said) or "argument error"}
    except Exception as exc:  # noqa: BLE001 - a validation error is an outcome to record
        return {"accepted": False, "error": f"{type(exc).__name__}: {exc}"}
    dests = {a.dest for token in argv[2:] if token.startswith("-")
             for a in [parser._option_string_actions.get(token.split("=", 1)[0])] if a is not None}
    return {"accepted": True, "error": None,
            "parsed": {dest: _plain(getattr(namespace, dest, None)) for dest in sorted(dests)}}


def probe() -> None:
    """Read ``{"lines": [argv, ...]}`` on stdin; print what this environment's vLLM parser says of each."""
    import vllm

    request = json.load(sys.stdin)
    parser, validate = _serve_parser()
    try:
        from vllm.config.pooler import PoolerConfig
        pooler_keys = sorted(f.name for f in dataclasses.fields(PoolerConfig))
    except (ImportError, TypeError):
        pooler_keys = []
    results = [_parse_one(parser, validate, argv) for argv in request["lines"]]
    json.dump({"vllm": vllm.__version__, "options": sorted(parser._option_string_actions),
               "pooler_config_keys": pooler_keys, "results": results}, sys.stdout)


# --- with the project's Python -----------------------------------------------------------------------------------

def venv_python(release: str) -> Path:
    return VENVS / release / "bin" / "python"


def _wheel(release: str) -> Path | None:
    found = sorted((VENVS / "wheels").glob(f"vllm-{release}-*.whl"))
    return found[0] if found else None


def setup(release: str) -> None:
    """Create the throwaway environment for ``release``: the wheel (no dependencies), the light packages, torch."""
    env = VENVS / release
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q"]
    if _wheel(release) is None:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"vllm=={release}", "-d",
                        str(VENVS / "wheels")], check=True)
    if not venv_python(release).exists():
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True)
    subprocess.run([*pip, "--no-deps", str(_wheel(release))], check=True)
    subprocess.run([*pip, "--no-deps", *NO_DEPS], check=True)
    subprocess.run([*pip, TORCH, *LIGHT_DEPS], check=True)
    print(f"{release}: {env} ready")


def render_line(release: str, render_args) -> list[str]:
    """The ``vllm serve`` argv the toolkit renders for ``render_args`` at ``release`` (the leader's, for LWS)."""
    import yaml

    try:
        from tke_playbook.cli.commands import main
    except ImportError:  # before the cli package's split
        from tke_playbook.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["render", "--profile", "seed", "--show-secrets", "--vllm-version", release, *render_args])
    if code != 0:
        raise SystemExit(f"render {' '.join(render_args)} failed: {err.getvalue().strip()}")
    for doc in (d for d in yaml.safe_load_all(out.getvalue()) if d):
        pod = (doc["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"] if doc["kind"] == "LeaderWorkerSet"
               else doc["spec"]["template"]["spec"] if doc["kind"] == "Deployment" else None)
        for container in (pod or {}).get("containers", ()):
            command = container.get("command") or []
            if command[:2] == ["bash", "-c"] and "vllm serve" in command[2]:
                return shlex.split(command[2].rsplit("; ", 1)[-1])
    raise SystemExit(f"render {' '.join(render_args)} has no vLLM container")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_probe(release: str, lines: list[list[str]]) -> dict:
    """What ``release``'s own parser says of each argv (needs its environment: see :func:`setup`)."""
    python = venv_python(release)
    if not python.exists():
        raise SystemExit(f"no environment for vLLM {release} at {python.parent.parent}: run "
                         f"`python tools/check_vllm_parsers.py setup {release}` first")
    # a GPU wheel on a machine without a GPU infers no device; the CPU platform builds the same parser
    env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "VLLM_TARGET_DEVICE": "cpu"}
    done = subprocess.run([str(python), str(Path(__file__).resolve()), "probe"], input=json.dumps({"lines": lines}),
                          capture_output=True, text=True, env=env, timeout=600)
    if done.returncode != 0:
        raise SystemExit(f"vLLM {release}'s parser could not be run:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def _torch_version(release: str) -> str:
    done = subprocess.run([str(venv_python(release)), "-c", "import torch; print(torch.__version__)"],
                          capture_output=True, text=True)
    return done.stdout.strip()


def check(release: str) -> dict:
    """Render every variant for ``release`` and record what its parser says."""
    lines = [render_line(release, args) for _, args in VARIANTS]
    answer = run_probe(release, lines)
    wheel = _wheel(release)
    variants = {vid: {"render_args": list(args), "argv": line, **result}
                for (vid, args), line, result in zip(VARIANTS, lines, answer["results"])}
    return {"provenance": {"vllm": answer["vllm"], "wheel": wheel.name if wheel else None,
                           "wheel_sha256": _sha256(wheel) if wheel else None,
                           "python": platform.python_version(), "torch": _torch_version(release),
                           "parser": "make_arg_parser(FlexibleArgumentParser()) + validate_parsed_serve_args, "
                                     "VLLM_TARGET_DEVICE=cpu",
                           "checked_on": datetime.date.today().isoformat(),
                           "command": f"python tools/check_vllm_parsers.py check {release}"},
            "options": answer["options"], "pooler_config_keys": answer["pooler_config_keys"], "variants": variants}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("setup", "check"):
        p = sub.add_parser(name)
        p.add_argument("releases", nargs="*", default=list(RELEASES))
        if name == "check":
            p.add_argument("--dry-run", action="store_true", help="print the outcome, write nothing")
    sub.add_parser("probe", help="(inside a release's environment) parse argv lists read from stdin")
    args = parser.parse_args(argv)
    if args.command == "probe":
        probe()
        return 0
    if args.command == "setup":
        for release in args.releases:
            setup(release)
        return 0
    record = json.loads(RECORD.read_text(encoding="utf-8")) if RECORD.exists() else {"releases": {}}
    failed = 0
    for release in args.releases:
        outcome = check(release)
        record["releases"][release] = outcome
        for vid, result in outcome["variants"].items():
            failed += not result["accepted"]
            print(f"vLLM {release} {vid}: {'accepted' if result['accepted'] else 'REJECTED: ' + result['error']}")
    if not args.dry_run:
        record["about"] = ("What each vLLM release's own `vllm serve` parser says of the toolkit's command line "
                           "for each plan variant; written by tools/check_vllm_parsers.py, never by hand.")
        RECORD.parent.mkdir(parents=True, exist_ok=True)
        RECORD.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {RECORD.relative_to(ROOT)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
