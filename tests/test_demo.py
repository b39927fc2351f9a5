"""``make demo``'s runner: notebook selection, executing one notebook (a failing cell is named, the kernel talks
over local sockets and prints no warning), and the HTML export showing static copies rather than blank widgets."""

from __future__ import annotations

import nbformat
import pytest

from tke_playbook.demo import _html_config, execute_notebook, notebook_paths
from tke_playbook.errors import InvalidSpecError


def _write(folder, name, *sources):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def test_notebook_paths_in_order_and_filtered(tmp_path):
    for name in ("01_b", "00_a", "_build_helper", "04_embeddings"):
        _write(tmp_path, name, "1")
    assert [p.stem for p in notebook_paths(tmp_path)] == ["00_a", "01_b", "04_embeddings"]
    assert [p.stem for p in notebook_paths(tmp_path, ["04"])] == ["04_embeddings"]
    with pytest.raises(InvalidSpecError, match="names like 04_embeddings"):
        notebook_paths(tmp_path, ["07"])


def test_execute_notebook_writes_outputs_and_html_without_kernel_warnings(tmp_path, capfd):
    path = _write(tmp_path, "00_ok", "import os\nprint(os.getcwd())", "21 * 2")
    run = execute_notebook(path, tmp_path / "out")
    assert run.ok and run.error == "" and run.cells == 2
    done = nbformat.read(run.executed, as_version=4)
    assert done.cells[0].outputs[0]["text"].strip() == str(tmp_path)  # the kernel runs beside the notebook
    assert done.cells[1].outputs[0]["data"]["text/plain"] == "42"
    assert "42" in run.html.read_text(encoding="utf-8")
    assert "without encryption" not in capfd.readouterr().err  # local (IPC) sockets, not plain TCP


def test_a_failing_cell_is_named_and_the_partial_notebook_kept(tmp_path):
    path = _write(tmp_path, "00_fails", "x = 1", "raise RuntimeError('model folder is not complete')", "x + 1")
    run = execute_notebook(path, tmp_path / "out", html=False)
    assert not run.ok and "cell 1" in run.error and "model folder is not complete" in run.error
    assert nbformat.read(run.executed, as_version=4).cells[0].execution_count == 1


def test_html_export_prefers_the_static_copy_of_a_widget(tmp_path):
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    view = {"version_major": 2, "version_minor": 0, "model_id": "0123abcd"}
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {  # as store_widget_state leaves it
        "version_major": 2, "version_minor": 0, "state": {"0123abcd": {"model_name": "VBoxModel", "state": {}}}}}
    nb.cells = [nbformat.v4.new_code_cell("form", outputs=[nbformat.v4.new_output(
        "display_data", {"application/vnd.jupyter.widget-view+json": view, "text/plain": "Form(...)",
                         "text/html": "<table class='tke-playbook-form'><tr><td>ai-model</td></tr></table>"})])]
    body, _ = HTMLExporter(config=_html_config()).from_notebook_node(nb)
    live_view = '<script type="application/vnd.jupyter.widget-view+json">'  # blank when offline
    assert "tke-playbook-form" in body and live_view not in body
    default, _ = HTMLExporter().from_notebook_node(nb)
    assert live_view in default and "tke-playbook-form" not in default
