"""A pytest plugin for nbval's run: keep each notebook as its kernel showed it, so one execution serves every check.

Loaded into the ``pytest --nbval-lax`` subprocess of ``tests/conftest.py`` (``-p nbval_record --record-to DIR``).
nbval executes each notebook cell by cell and reads every message of the kernel's IOPub channel, but keeps only
what it compares (it ignores ``clear_output``, display updates and widget messages). This plugin sees the same
messages (it wraps the ``get_message`` of nbval's kernel, so it sees what nbval reads, and passes each on
unchanged) and folds each into the cell whose request it answers, the way a front end does - with
nbclient's own message handling (``NotebookClient.process_message``: ``clear_output(wait=True)``, display
updates by ``display_id``, widget state and buffers). When a notebook's last cell is done it writes
``DIR/<name>.ipynb``: every cell with the outputs it ended with and its prompt number, and the widget state in
``metadata.widgets`` (what JupyterLab and nbconvert render widgets from without a kernel). With
``--record-copy-after SRC`` it also copies the files of the folder ``SRC`` to ``DIR/<SRC's name>/`` after each
notebook (the tests keep the API keys a run made this way: 99 deletes them).

One change to how nbval runs a cell: it is sent as JupyterLab sends it, with ``store_history=True`` (nbval sends
False, under which IPython shows the value of a line ending in ``;`` - ``install();`` would show ``True`` - and
numbers no prompt). nbclient is used only as a message handler here: no kernel of its own, no execution.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from queue import Empty

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionComplete

DRAIN_S = 2.0
HERE = str(Path(__file__).resolve().parent)
# The kernels nbval starts inherit this environment: they get the PYTHONPATH without tests/, which only this
# process needed (to load the plugin).
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep)
                                           if p and str(Path(p).resolve()) != HERE)


def pytest_addoption(parser):
    group = parser.getgroup("nbval_record")
    group.addoption("--record-to", metavar="DIR", help="write each executed notebook to DIR/<name>.ipynb")
    group.addoption("--record-copy-after", metavar="SRC", help="copy the files of SRC to DIR/<SRC's name>/ after "
                                                                "each notebook")


class Recording:
    """One notebook being executed: a copy without outputs that the kernel's messages fill in."""

    def __init__(self, collector, out: Path):
        self.out = out
        self.nb = nbformat.from_dict(collector.nb)
        for cell in self.nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        self.code_cells = [i for i, cell in enumerate(self.nb.cells) if cell.cell_type == "code"]
        self.client = NotebookClient(self.nb, store_widget_state=True, record_timing=False)
        self.client.clear_before_next_output = False
        self.cells: dict[str, int] = {}  # request msg_id -> cell index
        self.current: int | None = None
        self.kernel = None

    def attach(self, kernel) -> None:
        """Wrap the kernel's ``get_message`` (every IOPub message nbval reads passes here) and
        ``execute_cell_input`` (to know which cell a request came from)."""
        if self.kernel is kernel:
            return
        self.kernel = kernel
        self.client.kc = kernel.kc  # nbclient's Output-widget mimic answers through it
        get_message = kernel.get_message

        def recorded_get_message(stream, timeout=None):
            msg = get_message(stream, timeout=timeout)
            if stream == "iopub":
                self.feed(msg)
            return msg

        def recorded_execute(cell_input, allow_stdin=None):
            # as JupyterLab sends it: with history (nbval's store_history=False shows the value of a line ending
            # in ';' and numbers no prompt); nbval reads the reply as before
            msg_id = kernel.kc.execute(cell_input, store_history=True, allow_stdin=allow_stdin, stop_on_error=False)
            if self.current is not None:
                self.cells[msg_id] = self.current
                self.client.clear_before_next_output = False
            return msg_id

        kernel.get_message, kernel.execute_cell_input = recorded_get_message, recorded_execute

    def feed(self, msg: dict) -> None:
        index = self.cells.get(msg.get("parent_header", {}).get("msg_id"))
        if index is None:
            return
        try:
            self.client.process_message(msg, self.nb.cells[index], index)
        except CellExecutionComplete:
            pass

    def drain(self) -> None:
        """Messages still queued when the last cell finished (a background thread's last update)."""
        if self.kernel is None or not self.kernel.is_alive():
            return
        deadline = time.monotonic() + DRAIN_S
        while time.monotonic() < deadline:
            try:
                self.kernel.get_message("iopub", timeout=0.2)
            except Empty:
                return

    def write(self, name: str) -> Path:
        self.client.set_widgets_metadata()
        self.out.mkdir(parents=True, exist_ok=True)
        path = self.out / name
        nbformat.write(self.nb, path)
        return path


_recordings: dict[int, Recording] = {}


def _is_cell(item) -> bool:
    return type(item).__name__ == "IPyNbCell" and hasattr(item.parent, "nb")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    out = item.config.getoption("record_to")
    if out and _is_cell(item):
        if id(item.parent) not in _recordings:
            _recordings[id(item.parent)] = Recording(item.parent, Path(out))
        recording = _recordings[id(item.parent)]
        recording.attach(item.parent.kernel)
        recording.current = recording.code_cells[item.cell_num]  # nbval numbers the code cells from 0
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    recording = _recordings.get(id(item.parent)) if _is_cell(item) else None
    last = nextitem is None or nextitem.parent is not item.parent
    if recording is not None and last:
        recording.current = None
        recording.drain()  # before nbval stops the kernel, in this teardown
        recording.write(Path(str(item.parent.fspath)).name)
        source = item.config.getoption("record_copy_after")
        if source and Path(source).is_dir():
            shutil.copytree(source, recording.out / Path(source).name, dirs_exist_ok=True)
        del _recordings[id(item.parent)]
    yield
