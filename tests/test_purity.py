"""specs and manifests are pure (issue 22, item 6): values in, values out - no environment, no file, no clock, no
random number. What the machine says is read by tke_playbook/hostenv.py and passed in.

Held twice: an AST scan of every module in the two packages, and the seed plan built with os.environ, open() and
pathlib's I/O poisoned, which must give the same manifests as an ordinary build."""

from __future__ import annotations

import ast
import builtins
import contextlib
import os
import pathlib
from pathlib import Path

import pytest

from tke_playbook.errors import InvalidSpecError

ROOT = Path(__file__).resolve().parents[1]
PURE = ("specs", "manifests")
MODULES = ("os", "sys", "secrets", "random", "time", "datetime", "uuid", "tempfile", "shutil", "subprocess", "socket",
           "importlib", "glob", "io")
CALLS = ("open", "input", "print", "getenv")
# pathlib's (and os.path's) methods that touch the file system
PATH_IO = ("read_text", "read_bytes", "write_text", "write_bytes", "mkdir", "exists", "is_file", "is_dir", "iterdir",
           "glob", "rglob", "stat", "lstat", "unlink", "touch", "rmdir", "rename", "replace_file", "symlink_to",
           "chmod", "expanduser", "home", "cwd", "samefile", "open")


def _problems(text: str, name: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] in MODULES]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in MODULES:
            found.append(f"from {node.module} import ...")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in CALLS:
            found.append(f"{node.func.id}()")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in PATH_IO:
            found.append(f".{node.func.attr}()")
        elif isinstance(node, ast.Attribute) and node.attr in ("environ", "environb"):
            found.append(f".{node.attr}")
    return [f"{name}:{p}" for p in found]


def test_the_scan_finds_what_it_looks_for():
    text = ("import os, secrets\nfrom time import time\nx = os.environ.get('A')\n"
            "y = open('f').read()\nz = Path('p').read_text()\nPath('d').mkdir()\n")
    found = {p.split(":", 1)[1] for p in _problems(text, "sample.py")}
    assert found == {"import os", "import secrets", "from time import ...", ".environ", "open()", ".read_text()",
                     ".mkdir()"}


@pytest.mark.parametrize("package", PURE)
def test_nothing_in_specs_or_manifests_reads_the_machine(package):
    problems = [p for path in sorted((ROOT / "tke_playbook" / package).rglob("*.py"))
                for p in _problems(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert not problems, ("specs and manifests take values and read nothing: read it in tke_playbook/hostenv.py "
                          f"and pass it in: {problems}")


class _Poisoned(dict):
    def __getitem__(self, key):
        raise AssertionError(f"os.environ[{key!r}] read by a pure layer")

    def get(self, key, default=None):
        raise AssertionError(f"os.environ.get({key!r}) read by a pure layer")

    __contains__ = get


KEY = "purity-test-key-0123456789"  # by specs.apikeys.API_KEY_RULE
SALT = bytes(range(32))  # the caller's secret salt of the key-revision annotation


def _seed_plan() -> list[dict]:
    from tke_playbook.manifests.plan import build_helm_values, build_plan, plan_notes
    from tke_playbook.manifests.profiles import get_profile, render_profile

    from tke_playbook.specs.prices import price_of, price_rows

    profile = get_profile("seed")
    plan = build_plan(profile.storage, profile.download, profile.serving, api_key=KEY, key_salt=SALT)
    notes = plan_notes(profile.storage, profile.download, profile.serving)
    values = build_helm_values(profile.serving.replace(service_type="ClusterIP"))
    with pytest.raises(InvalidSpecError, match="needs the API key"):  # never looked up, never drawn
        build_plan(profile.storage, profile.download, profile.serving)
    with pytest.raises(InvalidSpecError, match="needs key_salt"):  # the annotation's salt neither
        build_plan(profile.storage, profile.download, profile.serving, api_key=KEY)
    prices = [price_rows(), price_of("PNV5b.8XLARGE96")]  # the default table, not a file named in the environment
    return [plan, notes, values, render_profile(get_profile("bge-m3"), api_key=KEY, key_salt=SALT), prices]


PACKAGE = ROOT / "tke_playbook"


@contextlib.contextmanager
def _poisoned():
    """os.environ raises, and so do open() and pathlib's I/O on any path outside the package (the toolkit's own
    files - the podworker sources a ConfigMap ships - are code, not the machine's state)."""
    def guarded(original):
        def call(path, *args, **kwargs):
            where = Path(os.fspath(path)) if isinstance(path, (str, os.PathLike)) else None
            if where is None or PACKAGE not in where.absolute().parents:
                raise AssertionError(f"{path} touched by a pure layer")
            return original(path, *args, **kwargs)
        return call

    saved = [(os, "environ", os.environ), (builtins, "open", builtins.open)]
    saved += [(pathlib.Path, n, getattr(pathlib.Path, n)) for n in ("read_text", "read_bytes", "write_text", "mkdir",
                                                                   "exists", "is_file", "iterdir", "open")]
    try:
        for owner, name, original in saved[1:]:
            setattr(owner, name, guarded(original))
        os.environ = _Poisoned()
        yield
    finally:  # restored here, before pytest itself reads a file or the environment again
        for owner, name, value in saved:
            setattr(owner, name, value)


def test_the_seed_plan_is_the_same_with_the_environment_and_the_file_system_poisoned():
    expected = _seed_plan()
    with _poisoned():
        again = _seed_plan()
    assert again == expected


def test_the_poison_works():
    with _poisoned():
        with pytest.raises(AssertionError, match="read by a pure layer"):
            os.environ.get("HOME")
        with pytest.raises(AssertionError, match="touched by a pure layer"):
            Path("/etc/hostname").exists()
        assert (PACKAGE / "errors.py").is_file()
