"""One public face (issue 22, item 5): each public name has one documented path, no package re-exports another's
names, no name shadows a module, and one name has one meaning across the packages."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from collections import defaultdict
from pathlib import Path

import pytest

import tke_playbook

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tke_playbook"
PACKAGES = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
# what the root holds beside the packages: modules, each its own face
TOP_MODULES = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
# names every command-line module and pod script defines for its runner: `python -m`, the CLI plugins' register()
ENTRY_POINTS = {"main", "run", "register", "build_parser", "add_arguments"}


def _face(package: str):
    module = importlib.import_module(f"tke_playbook.{package}")
    return module, list(getattr(module, "__all__", ()))


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_lists_only_its_own_names(package):
    module, names = _face(package)
    foreign = {}
    for name in names:
        value = getattr(module, name)
        if inspect.isfunction(value) or inspect.isclass(value):
            if not value.__module__.startswith(f"tke_playbook.{package}"):
                foreign[name] = value.__module__
    assert not foreign, f"tke_playbook.{package} re-exports other packages' names (import them from there): {foreign}"


@pytest.mark.parametrize("package", PACKAGES)
def test_a_package_init_imports_from_no_other_package(package):
    tree = ast.parse((PACKAGE / package / "__init__.py").read_text(encoding="utf-8"))
    foreign = [("." * n.level) + (n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)
               and (n.level > 1 or (n.level == 0 and (n.module or "").startswith("tke_playbook")))]
    assert not foreign, f"tke_playbook/{package}/__init__.py imports {foreign}: no re-exports across packages"


def test_the_root_re_exports_nothing():
    assert tke_playbook.__all__ == ["__version__"]
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    assert not [n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module != "__future__"]


def _submodules(package: str) -> list[str]:
    return [m.name for m in pkgutil.iter_modules([str(PACKAGE / package)])]


@pytest.mark.parametrize("package", PACKAGES)
def test_no_name_shadows_a_module(package):
    module, names = _face(package)
    for name in names:
        getattr(module, name)  # a lazy face binds what it loads
    shadowing = {m: type(getattr(module, m)).__name__ for m in _submodules(package)
                 if hasattr(module, m) and not inspect.ismodule(getattr(module, m))}
    assert not shadowing, f"tke_playbook.{package}: these names are modules, not {shadowing}"
    like_a_package = sorted(set(names) & (set(PACKAGES) | set(TOP_MODULES)))
    assert not like_a_package, f"tke_playbook.{package} lists names of packages: {like_a_package}"


def _definitions() -> dict[str, set[str]]:
    """Public module-level functions and classes -> the packages (or top-level modules) defining them."""
    found: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        owner = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
                found[node.name].add(owner)
    return found


def test_one_name_means_one_thing_across_the_packages():
    twice = {name: sorted(owners) for name, owners in _definitions().items()
             if len(owners) > 1 and name not in ENTRY_POINTS}
    assert not twice, f"one name, two meanings (rename one, or import one from the other): {twice}"


def test_check_plan_matches_is_one_function():
    # issue 22: the pod worker's plan check and the playbook's (which says to run the plan cell again) shared a name
    assert _definitions()["check_plan_matches"] == {"playbook"}
