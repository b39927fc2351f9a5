"""The notebooks: jupytext percent-format sources (``notebooks/NN_name.py``) paired with the ``.ipynb`` that
nbval and ``make demo`` run; the house style; and every notebook under nbval (``--nbval-lax``) on the local
target, in order, in a fresh state folder.

Edit the ``.py`` (or the notebook in JupyterLab, which saves both) and run ``jupytext --sync notebooks/*.ipynb``.
nbval's markers are cell TAGS (``nbval-check-output``, ``nbval-ignore-output``; nbval reads them from the cell
metadata), never comments a reader sees. nbval-lax executes every cell and compares only the cells tagged
``nbval-check-output`` whose committed copy holds an output (the deterministic ones: specs, manifests, the download
plan, the verification table). The run happens in a subprocess so its report shows the failing notebook and cell
as nbval prints them.

The notebooks are executed ONCE per test session, and every check of what they show reads that one execution
(the ``executed_notebooks`` fixture in tests/conftest.py): nbval's verdict here, the secret scan
(tests/test_notebook_secrets.py), the demo's output checks (tests/test_demo.py) and the browser's page checks
(tests/test_browser.py). nbval executes them, as asked; ``tests/nbval_record.py``, loaded into nbval's process,
keeps each notebook as its kernel showed it (the outputs after display updates and ``clear_output``, the widget
state) - ``test_the_recording_is_what_the_kernel_showed`` checks that on a planted notebook of the same run.

Why this design (issue 22, measured on the 2-core machine): the notebooks used to be executed three times - nbval
(~110 s), papermill for the secret scan (~50 s, 00-04) and Run All in JupyterLab for the page checks (~250 s) -
over half of the suite. The alternatives were to let papermill/nbclient execute once and compare the checked cells
ourselves (but then nbval would not execute the notebooks, which the user asked for), or to keep JupyterLab's Run
All as the one execution and export from there (a browser-driven run is the slowest and the flakiest of the three,
and nbval would still run them again). nbval plus a recorder keeps nbval as the executor and costs nothing extra:
the same messages nbval reads are folded into a notebook with nbclient's own message handling.
"""

from __future__ import annotations

import re
from pathlib import Path

import jupytext
import nbformat
import papermill
import pytest
from jupytext.compare import compare_notebooks

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
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
def test_all_notebooks_run_under_nbval_on_the_local_target(executed_notebooks):
    """nbval's verdict on the one run of every notebook (``executed_notebooks`` in tests/conftest.py)."""
    run = executed_notebooks
    print(f"nbval: {len(run.names)} notebooks in {run.seconds:.0f} s\n{run.stdout[-600:]}")
    assert run.returncode == 0, run.report
    assert " passed" in run.stdout and " failed" not in run.stdout, run.report
    assert sorted(p.stem for p in run.folder.glob("*.ipynb")) == sorted(run.names), "a notebook was not recorded"


@pytest.mark.slow
def test_the_recording_is_what_the_kernel_showed(executed_notebooks):
    """The planted notebook of the same run, as tests/nbval_record.py kept it: every output a reader would see,
    the display updated in place, the output cleared before the next, the traceback, the widget's state, and the
    prompts numbered; and the committed notebooks' cells in the same order with the same sources."""
    cells = [c for c in nbformat.read(executed_notebooks.planted, as_version=4).cells if c.cell_type == "code"]
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1))
    stderr, table, widget, display, cleared, error = (c.outputs for c in cells)
    assert [(o.output_type, o.name, o.text) for o in stderr] == [("stream", "stderr", "a warning on stderr\n")]
    assert "column_39_ms" in table[0].data["text/html"]
    model = widget[0].data["application/vnd.jupyter.widget-view+json"]["model_id"]
    state = nbformat.read(executed_notebooks.planted, as_version=4).metadata.widgets[
        "application/vnd.jupyter.widget-state+json"]["state"]
    assert state[model]["model_name"] == "IntTextModel" and state[model]["state"]["description"].endswith("still")
    assert [o.data["text/plain"] for o in display] == ["'updated'"]
    assert [o.text for o in cleared] == ["step 2\n"]
    assert [(o.output_type, o.ename) for o in error] == [("error", "RuntimeError")]
    for name in executed_notebooks.names[:-1]:
        committed = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
        executed = nbformat.read(executed_notebooks.path(name), as_version=4)
        assert [c.source for c in executed.cells] == [c.source for c in committed.cells], name
