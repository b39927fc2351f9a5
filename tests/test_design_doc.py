"""docs/DESIGN.md stays true to the tree: every path and module it names exists, its layer diagram is the
import-linter contract, and its table puts every folder and file of the package in a layer."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tke_playbook"
DESIGN = ROOT / "docs" / "DESIGN.md"

PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())


def _text() -> str:
    return DESIGN.read_text(encoding="utf-8")


def _layers() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in pyproject["tool"]["importlinter"]["contracts"] if c["type"] == "layers")
    return [" | ".join(m.strip().removeprefix("tke_playbook.") for m in line.split("|")) for line in contract["layers"]]


def _diagram(text: str) -> list[tuple[int, str]]:
    """(number, 'a | b') for each line of the layer diagram: ' 4  plots | loadgen  what they are'."""
    block = text.split("## The layers", 1)[1].split("```", 2)[1]
    rows = []
    for line in block.splitlines():
        match = re.match(r"^\s*(\d+)\s+([a-z_]+(?:\s*\|\s*[a-z_]+)*)\s{2,}", line)
        if match:
            rows.append((int(match.group(1)), " | ".join(p.strip() for p in match.group(2).split("|"))))
    return rows


def _table(text: str) -> dict[str, tuple[str, list[str]]]:
    """path -> (layer, files) from the table under 'Which layer a file is in'."""
    section = text.split("## Which layer a file is in", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`tke_playbook"):
            rows[cells[0].strip("`")] = (cells[1], re.findall(r"`([A-Za-z0-9_]+\.(?:py|json))`", cells[3]))
    return rows


def _paths(text: str) -> set[str]:
    """Repository paths the page names: ``tke_playbook/...``, ``tests/...``, ``benchmarks/...``, ``docs/...``,
    and package-relative ones such as ``kube/apply.py``."""
    found = set(re.findall(r"(?<![\w./<>-])((?:tke_playbook|tests|benchmarks|docs|notebooks)/[\w./-]*\w/?)", text))
    relative = "|".join(PACKAGES)
    found |= {f"tke_playbook/{p}" for p in re.findall(rf"(?<![\w./<>-])((?:{relative})/[\w/]+\.py)\b", text)}
    return found


def _modules(text: str) -> set[str]:
    return set(re.findall(r"\btke_playbook(?:\.[A-Za-z_][A-Za-z0-9_]*)+", text))


def test_the_path_finder_finds_paths():
    text = "see `tke_playbook/kube/wait.py`, kube/apply.py, tests/fakes/ and `<state_dir>/pvcs/<pvc>`."
    assert _paths(text) == {"tke_playbook/kube/wait.py", "tke_playbook/kube/apply.py", "tests/fakes/"}


def test_every_path_named_exists():
    missing = sorted(p for p in _paths(_text()) if not (ROOT / p).exists())
    assert not missing, f"docs/DESIGN.md names paths that do not exist: {missing}"


def test_every_module_named_exists():
    missing = []
    for dotted in sorted(_modules(_text())):
        parts = dotted.split(".")
        while parts and not ((ROOT / "/".join(parts)).with_suffix(".py").is_file()
                             or (ROOT / "/".join(parts) / "__init__.py").is_file()):
            parts.pop()
        if len(parts) < len(dotted.split(".")) - 1:  # a module, or a module and one name in it
            missing.append(dotted)
    assert not missing, f"docs/DESIGN.md names modules that do not exist: {missing}"


def test_the_diagram_is_the_import_linter_contract():
    rows = _diagram(_text())
    assert [n for n, _ in rows] == list(range(1, len(rows) + 1))
    assert [layer for _, layer in rows] == _layers()


def test_the_table_puts_every_folder_and_file_in_its_layer():
    table = _table(_text())
    number = {name: n for n, layer in _diagram(_text()) for name in layer.split(" | ")}
    entries = {f"tke_playbook/{p.name}/" if p.is_dir() else f"tke_playbook/{p.name}"
               for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert set(table) == entries, "add a row for each new folder or top-level file (and drop removed ones)"
    for path, (layer, files) in table.items():
        name = path.removeprefix("tke_playbook/").rstrip("/").removesuffix(".py")
        if name in number:
            assert layer == str(number[name]), f"{path} is in layer {number[name]}, the table says {layer}"
        if path.endswith("/"):
            on_disk = {p.name for p in (ROOT / path).iterdir() if p.suffix in (".py", ".json")} - {"__init__.py"}
            assert set(files) == on_disk, f"{path}: list its files as they are ({sorted(on_disk)})"


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_has_its_paragraph(package):
    assert f"**{package}**" in _text()


def test_the_readme_layout_shows_the_same_layers():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```", 2)[1]
    rows = [" | ".join(p.strip() for p in m.group(1).split("|")) for line in block.splitlines()
            if (m := re.match(r"^([a-z_]+(?:\s*\|\s*[a-z_]+)*)\s{2,}", line))]
    assert rows == _layers()
    assert "docs/DESIGN.md" in readme.split("## Layout", 1)[1]
