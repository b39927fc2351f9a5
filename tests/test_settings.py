"""Issue 22 items 6-7: the settings read once, in one place (``Settings.from_env``); no library code writes to the
process environment; ``TKE_PLAYBOOK_QUICK`` read by one rule; the exception hook installed once per kernel."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import jupytext
import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.playbook.settings import Settings, quick_mode
from tke_playbook.specs.target import Target

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tke_playbook"
NOTEBOOKS = ROOT / "notebooks"
# The command line's `make demo` runner sets the environment of the notebook kernels it starts (and restores its
# own afterwards): an application's entry point, not library code.
ENTRY_POINTS = {"cli/demo.py"}
WRITERS = {"setdefault", "update", "pop", "popitem", "clear", "__setitem__", "__delitem__"}


def _is_environ(node: ast.AST) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
            and node.value.id == "os") or (isinstance(node, ast.Name) and node.id == "environ")


def environment_writes(source: str) -> list[int]:
    """Lines of ``source`` that change the process environment: ``os.environ[k] = v``, ``del os.environ[k]``,
    ``os.environ.setdefault/update/pop/clear(...)``, ``os.putenv``/``os.unsetenv``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        targets = node.targets if isinstance(node, (ast.Assign, ast.Delete)) else \
            [node.target] if isinstance(node, (ast.AugAssign, ast.AnnAssign)) else []
        lines += [node.lineno for t in targets if isinstance(t, ast.Subscript) and _is_environ(t.value)]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr in WRITERS and _is_environ(node.func.value):
                lines.append(node.lineno)
            if node.func.attr in ("putenv", "unsetenv") and isinstance(node.func.value, ast.Name) \
                    and node.func.value.id == "os":
                lines.append(node.lineno)
    return lines


@pytest.mark.parametrize("source, found", [
    ('import os\nos.environ["A"] = "1"\n', [2]),
    ('import os\nos.environ.setdefault("A", "1")\n', [2]),
    ('import os\nos.environ.update(A="1")\n', [2]),
    ('import os\nos.putenv("A", "1")\n', [2]),
    ('import os\ndel os.environ["A"]\n', [2]),
    ('from os import environ\nenviron["A"] = "1"\n', [2]),
    ('import os\nenv = dict(os.environ, A="1")\nvalue = os.environ.get("A")\n', []),
    ('SCRIPT = """os.environ[\'A\'] = \'1\'"""\n', []),  # a pod's script shipped as text runs elsewhere
])
def test_the_scan_sees_each_way_of_writing_the_environment(source, found):
    assert environment_writes(source) == found


def test_no_library_code_writes_to_the_process_environment():
    """A library that sets HF_HUB_OFFLINE on its first model load sends every later hub call of the kernel
    offline (issue 22 item 7): values go to the code that needs them as parameters, or to a child process's own
    environment (``subprocess.Popen(env=...)``)."""
    found = {f"{path.relative_to(PACKAGE).as_posix()}:{line}"
             for path in sorted(PACKAGE.rglob("*.py")) if path.relative_to(PACKAGE).as_posix() not in ENTRY_POINTS
             for line in environment_writes(path.read_text(encoding="utf-8"))}
    assert not found, f"pass these values as parameters (or in a child's env=) instead: {sorted(found)}"


def test_loading_a_local_model_leaves_the_hub_reachable(monkeypatch):
    """The researcher's path: load a model from its folder, then ask the hub for a named task - the load must not
    have switched the process to offline."""
    from tke_playbook.embed.local import load_sentence_transformer
    from tke_playbook.hostenv import offline_model_dir

    hub = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TOKENIZERS_PARALLELISM")
    for name in hub:
        monkeypatch.delenv(name, raising=False)
    load_sentence_transformer(offline_model_dir())
    assert {name: os.environ[name] for name in hub if name in os.environ} == {}


# --- Settings.from_env --------------------------------------------------------------------------------------


def test_settings_read_every_value_from_the_given_environment(tmp_path):
    prices = tmp_path / "prices.yaml"
    env = {"TKE_PLAYBOOK_TARGET": "local", "TKE_PLAYBOOK_HOME": str(tmp_path / "h"), "TKE_PLAYBOOK_QUICK": "yes",
           "TKE_PLAYBOOK_NAMESPACE": " team-a ", "TKE_PLAYBOOK_NODE_PRICES": str(prices),
           "TKE_PLAYBOOK_OFFLINE": "1", "TKE_PLAYBOOK_CONTEXT": "ctx-b",
           "TKE_PLAYBOOK_STORAGE_PRICES": str(tmp_path / "storage.yaml")}
    settings = Settings.from_env(env)
    assert settings == Settings(Target.LOCAL, tmp_path / "h", quick=True, namespace="team-a", prices_file=prices,
                                offline=True, context="ctx-b", storage_prices_file=tmp_path / "storage.yaml")
    assert Settings.from_env(env, target="local", context="ctx-c").context == "ctx-c"
    with pytest.raises(Exception):
        settings.quick = False  # frozen


def test_settings_defaults_and_the_target_rule(tmp_path):
    bare = Settings.from_env({"HOME": str(tmp_path)})  # no kubeconfig under this HOME: this machine
    assert (bare.target, bare.quick, bare.namespace, bare.prices_file, bare.offline, bare.context,
            bare.storage_prices_file) == (Target.LOCAL, False, "default", None, False, None, None)
    assert bare.home == Path("~/.cache/tke-playbook").expanduser()
    config = tmp_path / ".kube" / "config"
    config.parent.mkdir()
    config.write_text("apiVersion: v1\n")
    assert Settings.from_env({"HOME": str(tmp_path)}).target is Target.CLUSTER
    assert Settings.from_env({"HOME": str(tmp_path / "none"), "KUBECONFIG": str(config)}).target is Target.CLUSTER
    with pytest.raises(InvalidSpecError, match="needs a kubeconfig"):
        Settings.from_env({"HOME": str(tmp_path / "none"), "TKE_PLAYBOOK_TARGET": "cluster"})
    with pytest.raises(UnknownNameError, match="Did you mean 'local'"):
        Settings.from_env({"TKE_PLAYBOOK_TARGET": "locl"})


def test_open_target_reads_the_environment_once_and_hands_the_values_down(home, monkeypatch):
    from tke_playbook.playbook import open_target

    monkeypatch.setenv("TKE_PLAYBOOK_NAMESPACE", "team-a")
    pb = open_target("local")
    monkeypatch.setenv("TKE_PLAYBOOK_NAMESPACE", "changed-later")  # read once: a later change does not leak in
    assert pb.settings.home == home and pb.settings.offline
    assert pb.serving.defaults().namespace == "team-a" == pb.download.defaults().namespace


# --- TKE_PLAYBOOK_QUICK: one rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("value, quick", [("false", False), ("0", False), ("", False), (None, False),
                                          ("1", True), ("yes", True), ("TRUE", True), (" on ", True),
                                          (True, True), (False, False)])
def test_quick_mode_is_one_rule(value, quick):
    assert quick_mode(value) is quick


QUICK_NOTEBOOKS = ("04_embeddings", "05_compare_models", "06_benchmark", "07_your_documents")


@pytest.mark.parametrize("notebook", QUICK_NOTEBOOKS)
@pytest.mark.parametrize("value, quick", [("false", False), ("0", False), ("1", True), ("on", True)])
def test_notebooks_read_quick_by_the_library_rule(monkeypatch, notebook, value, quick):
    """04 and 06 read "false" as quick mode on before (each parsed the variable itself): the parameters cell
    reads the variable and the library's rule parses it."""
    monkeypatch.setenv("TKE_PLAYBOOK_QUICK", value)
    source = next(c.source for c in jupytext.read(NOTEBOOKS / f"{notebook}.py", fmt="py:percent").cells
                  if "parameters" in c.metadata.get("tags", []))
    assert "quick_mode(" in source and "TKE_PLAYBOOK_QUICK" in source
    scope: dict = {}
    exec(source, scope)  # noqa: S102 - the notebook's own parameters cell
    assert scope["QUICK"] is quick


# --- the exception hook, once --------------------------------------------------------------------------------


def test_notebooks_leave_the_exception_hook_to_open_target():
    for path in sorted(NOTEBOOKS.glob("*.py")):
        text = path.read_text(encoding="utf-8")
        assert "install()" not in text and "import install" not in text, f"{path.name} installs the hook itself"
        assert "open_target(" in text


def test_the_hook_is_installed_once_per_kernel():
    from tke_playbook.errors import PlaybookError
    from tke_playbook.playbook import display

    class Shell:
        custom_exceptions = ()
        calls = 0

        def set_custom_exc(self, exceptions, handler):
            self.calls += 1
            self.custom_exceptions = exceptions

    shell = Shell()
    assert display.install(shell) and display.install(shell) and display.install(shell)
    assert shell.calls == 1 and shell.custom_exceptions == (PlaybookError,)
