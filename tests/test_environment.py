"""environment.yml, pyproject.toml and the Makefile agree on what to install."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    name, spec = match.group(1), match.group(2).replace(" ", "")
    return re.sub(r"[-_.]+", "-", name).lower(), spec


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _conda_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [p for p in pip if not p.startswith("-e")]


def test_environment_yml_lists_exactly_the_pyproject_dependencies():
    project = _pyproject()["project"]
    wanted = dict(_normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["test"])
    listed = dict(_normalise(r) for r in _conda_pip())
    torch = listed.pop("torch", None)
    assert listed == wanted
    assert torch == "==2.13.0"


def test_environment_installs_the_package_itself():
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    assert "-e ." in pip
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python.replace(" ", "") == "python" + _pyproject()["project"]["requires-python"].replace(" ", "")


def test_makefile_pins_the_same_torch():
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^TORCH_SPEC \?= torch==2\.13\.0$", makefile, re.M)


def test_console_script_points_at_the_cli():
    assert _pyproject()["project"]["scripts"]["tke-playbook"] == "tke_playbook.cli:main"
    from tke_playbook.cli import main

    assert callable(main)
