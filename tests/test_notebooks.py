"""The notebooks: jupytext percent-format sources (``notebooks/NN_name.py``) paired with the ``.ipynb`` that
nbval and ``make demo`` run; the house style; and every notebook under nbval (``--nbval-lax``) on the local
target, in order, in a fresh state folder.

Edit the ``.py`` (or the notebook in JupyterLab, which saves both) and run ``jupytext --sync notebooks/*.ipynb``.
nbval's markers are cell TAGS (``nbval-check-output``, ``nbval-ignore-output``; nbval reads them from the cell
metadata), never comments a reader sees. nbval-lax executes every cell and compares only the cells tagged
``nbval-check-output`` whose committed copy holds an output (the deterministic ones: specs, manifests, the download
plan, the verification table). The run happens in a subprocess so its report shows the failing notebook and cell
as nbval prints them.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
from jupytext.compare import compare_notebooks

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
BUDGET_S = 600
NBVAL_TAGS = {"nbval-check-output", "nbval-ignore-output", "nbval-skip", "nbval-raises-exception", "raises-exception"}


def _notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb"))


def test_every_notebook_has_its_percent_source_and_nothing_else_is_generated():
    sources = sorted(p.stem for p in NOTEBOOKS.glob("*.py"))
    assert sources == [p.stem for p in _notebooks()], "each notebooks/NN_name.ipynb is paired with NN_name.py"
    assert not (NOTEBOOKS / "_build.py").exists()


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_percent_source_and_notebook_are_in_sync(path):
    """jupytext's own comparison: same cells, sources, cell types and tags (outputs live only in the .ipynb)."""
    notebook = jupytext.read(path)
    assert notebook.metadata.get("jupytext", {}).get("formats") == "ipynb,py:percent", \
        f"{path.name} is not paired: jupytext --set-formats ipynb,py:percent {path.name}"
    source = jupytext.read(path.with_suffix(".py"), fmt="py:percent")
    compare_notebooks(source, notebook, fmt="py:percent")  # raises with the first difference
    assert [c.metadata.get("tags", []) for c in source.cells] == [c.metadata.get("tags", []) for c in notebook.cells]


def test_the_sync_check_sees_an_edited_source(tmp_path):
    path = NOTEBOOKS / "01_storage.ipynb"
    text = path.with_suffix(".py").read_text(encoding="utf-8").replace("print(pb.storage.names())", "print(pb.storage.names())  # edited")
    (tmp_path / "01_storage.py").write_text(text, encoding="utf-8")
    with pytest.raises(Exception, match="edited"):
        compare_notebooks(jupytext.read(tmp_path / "01_storage.py", fmt="py:percent"), jupytext.read(path),
                          fmt="py:percent")


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_papermill_sees_every_parameter(path):
    """``make demo`` injects TARGET and QUICK with papermill, which only overrides names it can parse in the
    ``parameters`` cell (a comment holding quotes and "=" hides a line from it)."""
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    names = set(re.findall(r"^([A-Z][A-Z0-9_]*) =", cell.source, re.MULTILINE))
    assert "TARGET" in names and names <= set(papermill.inspect_notebook(str(path)))


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_follows_the_house_style(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "**Goal:**" in nb.cells[0].source
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "TKE_PLAYBOOK_TARGET" in params[0].source
    for cell in nb.cells:
        assert "NBVAL" not in cell.source.upper().replace("-", "_"), \
            f"nbval markers are cell tags, not text a reader sees:\n{cell.source}"
        if cell.cell_type != "code":
            continue
        lines = [ln for ln in cell.source.splitlines() if not ln.startswith("#")]
        assert len(lines) <= 10, f"cell too long:\n{cell.source}"
        assert not any(ln.lstrip().startswith(("for ", "while ", "try:", "class ", "def ")) for ln in lines), \
            f"loops, try blocks, classes and functions belong in the library:\n{cell.source}"
        tags = set(cell.metadata.get("tags", []))
        assert len(tags & NBVAL_TAGS) <= 1, f"conflicting nbval tags {tags}:\n{cell.source}"
        stored = cell.get("outputs", [])
        assert not stored or "nbval-check-output" in tags, \
            f"only deterministic (checked) cells may carry committed outputs:\n{cell.source}"
        assert not any(o.get("output_type") == "error" for o in stored), f"a stored traceback:\n{cell.source}"


@pytest.mark.slow
def test_all_notebooks_run_under_nbval_on_the_local_target(tmp_path):
    env = dict(os.environ, TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_HOME=str(tmp_path / "home"),
               TKE_PLAYBOOK_QUICK="1", TKE_PLAYBOOK_OFFLINE="1")
    env.pop("KUBECONFIG", None)
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "-o", "addopts=", "--nbval-cell-timeout=300", "-q", *[str(p) for p in _notebooks()]]
    started = time.monotonic()
    try:
        done = subprocess.run(command, cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=BUDGET_S + 120)
    finally:  # a local server outlives its notebook's kernel; 99 stops it, unless a notebook before it failed
        from tke_playbook.playbook.facade import LocalPlaybook

        LocalPlaybook(root=tmp_path / "home").serving.stop_servers()
    seconds = time.monotonic() - started
    report = done.stdout[-6000:] + done.stderr[-2000:]
    print(f"nbval: {len(_notebooks())} notebooks in {seconds:.0f} s\n{done.stdout[-600:]}")
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " failed" not in done.stdout, report
