"""Issue 13 item 4: the toolkit's errors in a notebook are one short red block (what happened, what to do) with the
traceback one click away, in a real IPython shell; and the progress helpers."""

from __future__ import annotations

import io
import sys
import time

import pytest
from IPython.core.displaypub import CapturingDisplayPublisher
from IPython.core.interactiveshell import InteractiveShell

from tke_playbook.errors import NotDeployedError, PlaybookError, RunInterrupted
from tke_playbook.playbook import display as notebook
from tke_playbook.reporting import CellSurface, NotebookReporter, PlainReporter, waiting


@pytest.fixture
def shell(tmp_path, monkeypatch):
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    ip = InteractiveShell.instance()
    saved = ip.display_pub
    ip.display_pub = CapturingDisplayPublisher()
    yield ip
    ip.display_pub = saved
    ip.set_custom_exc((), None)
    InteractiveShell.clear_instance()


BAD_VALUES = [
    pytest.param("from tke_playbook.specs.storage import StorageSpec\nStorageSpec(pvc_name='Other_PVC')",
                 "InvalidSpecError", "PVC name", id="invalid-pvc-name"),
    pytest.param("from tke_playbook.podworker.modelfolder import require_complete\nrequire_complete('/nonexistent/model')",
                 "IncompleteModelError", "/nonexistent/model", id="model-not-downloaded"),
    pytest.param("from tke_playbook.playbook import ServiceEndpoint\n"
                 "ServiceEndpoint('http://127.0.0.1:9', 'm', 'local-process').curl('hello')",
                 "EndpointGoneError", "the server is gone: run 03_deploy_vllm", id="stale-endpoint"),
    pytest.param("from tke_playbook.playbook import open_target\nopen_target('local').serving.endpoint()",
                 "NotDeployedError", "Nothing is deployed", id="nothing-deployed"),
]


@pytest.mark.parametrize("cell, kind, words", BAD_VALUES)
def test_a_toolkit_error_is_one_block_with_the_traceback_folded(shell, capfd, cell, kind, words):
    assert notebook.install(shell) is True
    result = shell.run_cell(cell)
    assert isinstance(result.error_in_exec, PlaybookError) and type(result.error_in_exec).__name__ == kind
    outputs = shell.display_pub.outputs
    assert len(outputs) == 1
    data = outputs[0]["data"]
    html, text = data["text/html"], data["text/plain"]
    assert 'class="tke-playbook-error"' in html and words in html.replace("&#x27;", "'")
    assert html.count("<details>") == 1 and "Traceback" in html.split("<details>", 1)[1]
    assert "File " not in html.split("<details>", 1)[0]  # no frames outside the folded part
    assert text.startswith(f"{kind}: ")
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err and "File " not in printed.out + printed.err


def test_other_errors_keep_the_usual_traceback(shell, capfd):
    notebook.install(shell)
    result = shell.run_cell("1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert shell.display_pub.outputs == []
    assert "ZeroDivisionError" in capfd.readouterr().out


def test_open_target_installs_the_handler(shell):
    shell.run_cell("from tke_playbook.playbook import open_target\npb = open_target('local')")
    assert shell.custom_exceptions == (PlaybookError,)


def test_the_block_says_what_happened_and_what_to_do_and_escapes_html():
    error = NotDeployedError("Nothing <b>is</b> deployed: run 03_deploy_vllm first.")
    html = notebook.error_html(error)
    assert "Nothing &lt;b&gt;is&lt;/b&gt; deployed" in html and "<b>is</b>" not in html
    assert "<b>What to do:</b> run 03_deploy_vllm first." in html
    assert notebook.split_message("Shard 0 failed: Connection refused") == ("Shard 0 failed: Connection refused",
                                                                             "", [])


def test_long_messages_keep_the_block_short():
    error = PlaybookError("The pod failed: check the log\n" + "\n".join(f"log line {i}" for i in range(40)))
    head = notebook.error_html(error).split("<details>", 1)[0]
    assert "log line 5" in head and "log line 6" not in head


def test_outside_ipython_an_uncaught_toolkit_error_prints_one_line(monkeypatch, capsys):
    monkeypatch.setattr(notebook, "_ipython", lambda: None)
    monkeypatch.setattr(sys, "excepthook", sys.__excepthook__)
    assert notebook.install() is False
    error = NotDeployedError("Nothing is deployed: run 03_deploy_vllm first.")
    sys.excepthook(type(error), error, None)
    assert capsys.readouterr().err == "NotDeployedError: Nothing is deployed: run 03_deploy_vllm first.\n"


# --- progress -------------------------------------------------------------------------------------------------


def test_progress_outside_a_notebook_is_plain_lines():
    out = io.StringIO()
    with PlainReporter(err=out).bar(1000, "Downloading m", unit="B") as bar:
        for _ in range(10):
            bar.update(100)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Downloading m:   0%|") and lines[1].startswith("Downloading m:  10%|")
    assert "100B/1.0kB" in lines[1] and lines[-1].startswith("Downloading m: 1.0kB in ")
    assert len(lines) == 12 and not any("\r" in line for line in lines)  # the start, each tenth, the summary


def test_progress_inside_ipython_is_a_line_not_a_widget(shell):
    """Issue 20: a widget bar drawn from a worker thread froze the kernel (tqdm's lock), and a closed widget left
    an empty output area; the bar is a line drawn in place by one thread, replaced by its summary."""
    bar = NotebookReporter().bar(10, "x", unit="it")
    try:
        assert isinstance(bar.surface, CellSurface) and not hasattr(bar, "container")
        bar.update(10)
    finally:
        bar.close()
    shown = shell.display_pub.outputs
    assert shown and all("application/vnd.jupyter.widget-view+json" not in o["data"] for o in shown)


def test_waiting_counts_the_seconds():
    out = io.StringIO()
    with waiting(PlainReporter(err=out), "Starting the server", every=0.01) as bar:
        time.sleep(0.1)
    assert bar.n > 0 and out.getvalue().splitlines()[-1].startswith("Starting the server")


def test_an_interrupted_wait_is_one_line():
    out = io.StringIO()
    with pytest.raises(RunInterrupted, match=r"^Starting the server: interrupted after 0:00; run the cell again"):
        with waiting(PlainReporter(err=out), "Starting the server", every=0.01):
            raise KeyboardInterrupt
    assert out.getvalue().splitlines()[-1].startswith("Starting the server: interrupted after")


def test_in_a_real_kernel_the_error_is_one_html_block_and_no_traceback_output(tmp_path):
    """What JupyterLab and nbclient receive: a display_data block, no `error` output and no stderr; the cell still
    fails, so Run All stops there. A progress bar is a line updated in place, not stderr text."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("from tke_playbook.playbook.display import install\n"
                                          "from tke_playbook.reporting import default_reporter\ninstall()"),
                nbformat.v4.new_code_cell("with default_reporter().bar(10, 'x') as bar:\n    bar.update(10)"),
                nbformat.v4.new_code_cell("from tke_playbook.specs.storage import StorageSpec\nStorageSpec(pvc_name='Bad_PVC')"),
                nbformat.v4.new_code_cell("print('not reached')")]
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    with pytest.raises(CellExecutionError):
        client.execute()
    failed = nb.cells[2].outputs
    assert [o["output_type"] for o in failed] == ["display_data"]
    assert "tke-playbook-error" in failed[0]["data"]["text/html"]
    assert failed[0]["data"]["text/plain"].startswith("InvalidSpecError: PVC name 'Bad_PVC'")
    everything = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in everything if o["output_type"] == "error" or o.get("name") == "stderr"]
    assert nb.cells[3].outputs == []
    (bar,) = nb.cells[1].outputs  # one output, ending as the summary line: no widget, nothing empty left behind
    assert "application/vnd.jupyter.widget-view+json" not in bar["data"]
    assert bar["data"]["text/plain"].startswith("x: 10") and "<progress" not in bar["data"]["text/html"]
