"""JupyterLab in headless Chromium, used the way people use the notebooks: every notebook's page after it ran,
changed and invalid values in 00, 02 and 03 followed by the next cells, 99 then 04, and deploying twice.

The notebooks are not run again here. The page checks read the session's one execution of every notebook
(``executed_notebooks``, tests/conftest.py: nbval executes them, tests/nbval_record.py keeps each as its kernel
showed it, widget state included): the executed copies are signed as trusted - as outputs a kernel produced in
JupyterLab are - and opened in JupyterLab, which renders their outputs and, from the saved state, their widgets,
as it does after Run All. Only what needs a live kernel runs live, in copies of the committed notebooks in the
state folder that execution left (after 99: the model still on its PVC, nothing deployed): 04 after cleanup (its
Run All), 03 deploying twice and again after 99's Run All, the node type chosen in 00 reaching 03, and the
changed and invalid values of 02 and 03 - each running only the cells it needs, by their source. The interrupts
of the long cells are tested in a kernel of their own (tests/test_interrupts.py).

One JupyterLab server and one Chromium serve the whole module; the tests run in file order and share what
people share: 00, 02 and 03 stay open, with their kernels, for the changes made in them later.

Every page is checked for what no reader should see: a traceback or any stderr output, whatever its MIME type
(JupyterLab 4 renders both stderr streams and error outputs as ``application/vnd.jupyter.stderr``), the toolkit's
red error block wherever none is expected, a cut-off widget label or dropdown, a table wider than the page; and an
executed page must show every widget its notebook saved. The first test proves these checks catch the planted
notebook of the same execution, which has each. Screenshots are kept in build/artifacts/browser/.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from fakes.localtarget import free_port
from tke_playbook.cli.demo import port_is_free, stop_local_servers

pytestmark = [pytest.mark.browser, pytest.mark.slow]
# Two xdist groups (tests/conftest.py): the pages of the executed notebooks, and the tests with live kernels; each
# has its own JupyterLab and Chromium, so the two can run on two workers at once.
PAGES = pytest.mark.xdist_group("browser-pages")
LIVE_KERNELS = pytest.mark.xdist_group("browser-live")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
ARTIFACTS = REPO / "build" / "artifacts" / "browser"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 300
SHOTS: list[str] = []
WIDGETS_TIMEOUT_S = 60
EXECUTED = "executed"  # the folder of the executed notebooks in their JupyterLab, and of their screenshots
LIVE = "live"  # the folder of the screenshots of live notebooks
NOTEBOOK_NAMES = [p.name for p in sorted(NOTEBOOKS.glob("*.ipynb"))]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
# A widget shown from saved state has no kernel behind it: ipywidgets marks it with a broken-chain icon that a live
# page never shows, and which would take room from the labels measured here.
STATIC_WIDGETS_CSS = ".jupyter-widgets-disconnected::before { content: none !important; display: none !important; }"
PROBLEMS_JS = """panel => {
  const outputs = [...panel.querySelectorAll('.jp-OutputArea-output')];
  const text = o => (o.innerText || '');
  return {
    stderr: panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]').length,
    error_outputs: panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.error"]').length,
    tracebacks: outputs.filter(o => /Traceback \\(most recent call last\\)|^\\s*File ".*", line \\d+/m
      .test(text(o))).length,
    red_blocks: panel.querySelectorAll('.tke-playbook-error').length,
    stderr_text: [...panel.querySelectorAll('[data-mime-type="application/vnd.jupyter.stderr"]')]
      .map(e => e.innerText.slice(0, 300)),
    red_text: [...panel.querySelectorAll('.tke-playbook-error')].map(e => e.innerText.slice(0, 600)),
  };
}"""

if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed (apt-get install chromium; make browser-deps does it)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.sync_api")


def _write_settings(folder: Path) -> None:
    """User settings for this JupyterLab only: render every cell (no windowing, so off-screen outputs are in the
    page), no news pop-up over the screenshots, and no blinking cursor: headless Chromium repaints for each blink
    (measured: three open pages idle for 30 s cost 5.4 s of Chromium CPU with a blinking cursor, 3.2 s without)."""
    for extension, plugin, values in (("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
                                      ("@jupyterlab/apputils-extension", "notification", {"fetchNews": "false"}),
                                      ("@jupyterlab/codemirror-extension", "plugin",
                                       {"defaultConfig": {"cursorBlinkRate": 0}})):
        path = folder / extension / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


def _sign(paths, notary_dir: Path) -> None:
    """Record ``paths`` as trusted in a notary of their own (what JupyterLab does for the outputs its kernels
    produce): untrusted outputs lose their styles and widgets."""
    from nbformat.sign import NotebookNotary

    notary_dir.mkdir(parents=True, exist_ok=True)
    notary = NotebookNotary(data_dir=str(notary_dir))
    for path in paths:
        notary.sign(nbformat.read(path, as_version=4))


@contextlib.contextmanager
def _jupyterlab(tmp: Path, folder: Path, home: Path):
    """JupyterLab on 127.0.0.1 with a token, serving ``folder``, its kernels on the local target in the state folder
    ``home``; yields what the tests need to reach it."""
    port, token = free_port(), os.urandom(16).hex()
    (tmp / "notary").mkdir(exist_ok=True)  # where JupyterLab keeps the signatures of trusted notebooks
    settings = tmp / "lab-settings"
    _write_settings(settings)
    env = dict(os.environ, TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_HOME=str(home), TKE_PLAYBOOK_QUICK="1",
               TKE_PLAYBOOK_OFFLINE="1", JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"))
    env.pop("KUBECONFIG", None)
    log = open(tmp / "lab.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                                "--ip", "127.0.0.1", "--port", str(port), f"--IdentityProvider.token={token}",
                                f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False",
                                f"--NotebookNotary.data_dir={tmp / 'notary'}"],
                               stdout=log, stderr=subprocess.STDOUT, env=env, cwd=folder)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
            break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"JupyterLab did not start:\n{(tmp / 'lab.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.2)
    try:
        yield {"base": base, "token": token, "folder": folder, "home": home, "tmp": tmp}
    finally:
        _stop_kernels(base, token)
        stop_local_servers(home)  # whatever a kernel left running
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
        log.close()


@pytest.fixture(scope="module")
def executed_lab(tmp_path_factory, executed_notebooks):
    """JupyterLab showing the executed notebooks (``executed/``, trusted) of the session's one execution."""
    tmp = tmp_path_factory.mktemp("lab")
    folder = tmp / "nb"
    (folder / EXECUTED).mkdir(parents=True)
    for path in executed_notebooks.folder.glob("*.ipynb"):
        shutil.copy(path, folder / EXECUTED / path.name)
    _sign(sorted((folder / EXECUTED).glob("*.ipynb")), tmp / "notary")
    shutil.rmtree(ARTIFACTS / EXECUTED, ignore_errors=True)
    with _jupyterlab(tmp, folder, executed_notebooks.home) as served:
        yield dict(served, planted=executed_notebooks.planted.name)


@pytest.fixture(scope="module")
def lab(tmp_path_factory, prepare_local_target):
    """JupyterLab with copies of the committed notebooks, for the tests that need live kernels (``open_notebook``,
    ``kept``); its state folder ``home`` is the local target as 01 and 02 leave it (the PVC, the model on it),
    prepared by the library. ``port``: a port of its own for the deploys (port 60000 may serve the notebooks'
    execution on another worker meanwhile; what is tested - the same port after each deploy and after 99 - holds for
    any port the form asks for)."""
    tmp = tmp_path_factory.mktemp("live-lab")
    folder = tmp / "nb"
    folder.mkdir()
    for path in NOTEBOOKS.glob("*.ipynb"):
        shutil.copy(path, folder / path.name)
    home = prepare_local_target(tmp / "home")
    shutil.rmtree(ARTIFACTS / LIVE, ignore_errors=True)
    with _jupyterlab(tmp, folder, home) as served:
        yield dict(served, port=free_port())


def _api(base: str, token: str, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{base}{path}", method=method, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        body = answer.read()
    return json.loads(body) if body else None


def _stop_kernels(base: str, token: str) -> None:
    """Shut down every kernel (each notebook leaves one): keeps the two cores and the memory for the next."""
    try:
        for kernel in _api(base, token, "/api/kernels"):
            _api(base, token, f"/api/kernels/{kernel['id']}", "DELETE")
    except OSError:
        pass


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


class Notebook:
    """One notebook open in JupyterLab (a fresh workspace, so no other tab is open)."""

    def __init__(self, lab, browser, name: str):
        self.lab, self.name = lab, name
        self.page = browser.new_page(viewport={"width": 1500, "height": 2400})
        self.page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
        if name.startswith(f"{EXECUTED}/"):
            self.page.add_style_tag(content=STATIC_WIDGETS_CSS)
        self.panel = self.page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)").first
        self.page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
        self.panel.locator(".jp-CodeCell .jp-InputPrompt").last.wait_for(timeout=60_000)

    def close(self) -> None:
        """Close the page and shut down this notebook's kernel."""
        self.page.close()
        for session in _api(self.lab["base"], self.lab["token"], "/api/sessions"):
            if session["path"] == self.name:
                _api(self.lab["base"], self.lab["token"], f"/api/sessions/{session['id']}", "DELETE")

    # --- running -----------------------------------------------------------------------------------------------

    def _prompts(self) -> list[str]:
        return self.panel.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()

    def wait_idle(self, timeout: float = RUN_TIMEOUT_S) -> None:
        """Until no cell is running or queued and the kernel is idle (twice in a row, a quarter second apart)."""
        deadline, calm = time.monotonic() + timeout, 0
        while time.monotonic() < deadline:
            busy = any("*" in p for p in self._prompts()) or self.page.locator(
                ".jp-Notebook-ExecutionIndicator[data-status='idle']").count() == 0
            calm = 0 if busy else calm + 1
            if calm >= 2:
                return
            time.sleep(0.25)
        self.screenshot("timeout")
        pytest.fail(f"{self.name}: cells still running after {timeout:.0f} s: {self._prompts()}")

    def _kernel_ready(self, timeout: float = 120) -> None:
        """Until the notebook's kernel exists and is idle (JupyterLab's indicator can say idle before that)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            sessions = _api(self.lab["base"], self.lab["token"], "/api/sessions")
            states = [s["kernel"]["execution_state"] for s in sessions if s["path"] == self.name]
            if states and states[0] == "idle":
                return
            time.sleep(0.2)
        pytest.fail(f"{self.name}: its kernel did not start")

    def _check_dialog(self) -> None:
        dialog = self.page.locator(".jp-Dialog")
        if dialog.count():
            self.screenshot("dialog")
            pytest.fail(f"{self.name}: JupyterLab shows a dialog: {dialog.first.inner_text()[:300]!r}")

    def run_all(self, attempts: int = 3) -> None:
        """Run > Run All Cells (again if the click did not start the first cell), then wait."""
        self._kernel_ready()
        first = self.panel.locator(".jp-CodeCell .jp-InputPrompt").first
        before = first.inner_text()
        for _ in range(attempts):
            self._check_dialog()
            self.page.click("div.lm-MenuBar-itemLabel:text('Run')")
            self.page.click("li[data-command='runmenu:run-all']")
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                now = first.inner_text()
                if now != before and re.search(r"\[(\d+|\*)\]", now):
                    self.wait_idle()
                    return
                time.sleep(0.3)
        self._check_dialog()
        pytest.fail(f"{self.name}: Run All Cells did not start the notebook in JupyterLab")

    def run_cells(self, *texts: str) -> None:
        """Run the cells containing each of ``texts``, in that order (only the cells a test needs)."""
        self._kernel_ready()
        for text in texts:
            self.run_cell(text)

    def wait_for_widgets(self, expected: int, timeout: float = WIDGETS_TIMEOUT_S) -> None:
        """Until ``expected`` outputs show a rendered widget (from the notebook's saved state, when it has no
        kernel behind it); fails naming how many did."""
        self._kernel_ready()  # JupyterLab restores saved widgets once the notebook's kernel is there
        shown = 0
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.panel.evaluate("""panel => [...panel.querySelectorAll('.jp-OutputArea-output')]
              .filter(o => o.querySelector('.jupyter-widgets')).length""")
            if shown >= expected:
                return
            time.sleep(0.3)
        self.screenshot("widgets-missing")
        pytest.fail(f"{self.name}: {shown} of its {expected} widgets rendered in {timeout:.0f} s")

    def cell(self, text: str):
        """The code cell whose source contains ``text`` (exactly one)."""
        cells = self.panel.locator(".jp-CodeCell").filter(
            has=self.page.locator(".jp-InputArea-editor", has_text=text))
        assert cells.count() == 1, f"{self.name}: {cells.count()} cells contain {text!r}"
        return cells.first

    def run_cell(self, text: str):
        """Run the one cell containing ``text`` (Shift+Enter in its editor) and return its output text."""
        cell = self.cell(text)
        prompt = cell.locator(".jp-InputPrompt").inner_text()
        cell.locator(".jp-InputArea-editor").click()
        self.page.keyboard.press("Shift+Enter")
        deadline = time.monotonic() + 15
        while cell.locator(".jp-InputPrompt").inner_text() == prompt and time.monotonic() < deadline:
            time.sleep(0.2)
        self.wait_idle()
        return self.output(text)

    def output(self, text: str) -> str:
        return self.cell(text).locator(".jp-OutputArea").inner_text()

    # --- widgets -----------------------------------------------------------------------------------------------

    def _labelled(self, cell_text: str, label: str, kind: str):
        box = self.cell(cell_text).locator(".widget-inline-hbox", has=self.page.locator(
            "label.widget-label", has_text=re.compile(rf"^{re.escape(label)}$")))
        return box.locator(kind).first

    def choose(self, cell_text: str, label: str, option: str) -> None:
        self._labelled(cell_text, label, "select").select_option(label=option)
        self.page.wait_for_timeout(300)

    def choose_starting(self, cell_text: str, label: str, prefix: str) -> str:
        """Choose the option whose label starts with ``prefix`` (a model id, whatever the label adds to it)."""
        select = self._labelled(cell_text, label, "select")
        options = [o.replace("\xa0", " ") for o in select.locator("option").all_inner_texts()]  # widgets use nbsp
        option = next(o for o in options if o.startswith(prefix))
        self.choose(cell_text, label, option)
        return option

    def type(self, cell_text: str, label: str, value: str, kind: str = "input") -> None:
        field = self._labelled(cell_text, label, kind)
        field.fill(value)
        field.press("Tab")
        self.page.wait_for_timeout(300)

    # --- checks ------------------------------------------------------------------------------------------------

    def problems(self) -> dict:
        return self.panel.evaluate(PROBLEMS_JS)

    def assert_clean(self, every_cell_ran: bool = True) -> None:
        """No traceback, no stderr, no red block; and every code cell ran, unless a test ran only some."""
        seen = self.problems()
        self.screenshot("clean")
        assert {k: v for k, v in seen.items() if not k.endswith("_text")} == {
            "stderr": 0, "error_outputs": 0, "tracebacks": 0, "red_blocks": 0}, f"{self.name}: {seen}"
        unrun = [p for p in self._prompts() if not re.search(r"\[\d+\]", p)]
        assert not (every_cell_ran and unrun), f"{self.name}: cells did not run: {self._prompts()}"

    def assert_one_red_block(self, *phrases: str) -> str:
        """Exactly one short red block saying ``phrases``, and no traceback or stderr anywhere."""
        seen = self.problems()
        assert seen["stderr"] == seen["error_outputs"] == seen["tracebacks"] == 0, f"{self.name}: {seen}"
        assert seen["red_blocks"] == 1, f"{self.name}: {seen}"
        text = self.panel.locator(".tke-playbook-error").first.inner_text()
        assert len(text.strip().splitlines()) <= 4, f"{self.name}: the red block is not short:\n{text}"
        for phrase in phrases:
            assert phrase.lower() in text.lower(), f"{self.name}: {phrase!r} not in the red block:\n{text}"
        return text

    def truncated_labels(self) -> list[str]:
        """Widget labels whose text is cut (wider than their box) and dropdowns narrower than their choice."""
        return self.panel.evaluate("""panel => {
          const cut = [...panel.querySelectorAll('.widget-label')].filter(l => l.scrollWidth > l.clientWidth + 1)
                         .map(l => 'label: ' + l.innerText);
          const canvas = document.createElement('canvas').getContext('2d');
          const narrow = [...panel.querySelectorAll('.widget-dropdown select')].filter(s => {
            canvas.font = getComputedStyle(s).font;
            const label = s.options[s.selectedIndex] ? s.options[s.selectedIndex].text : '';
            return canvas.measureText(label).width + 24 > s.clientWidth;
          }).map(s => 'dropdown: ' + s.options[s.selectedIndex].text);
          return cut.concat(narrow);
        }""")

    def clipped_tables(self) -> list[str]:
        """Tables wider than their output area (the reader would have to scroll sideways to see p99)."""
        return self.panel.evaluate("""panel => [...panel.querySelectorAll('.jp-OutputArea-output')]
          .filter(o => o.querySelector('table') && o.scrollWidth > o.clientWidth + 2)
          .map(o => [...o.querySelectorAll('th')].map(th => th.innerText).filter(Boolean).slice(-4).join(' '))""")

    def screenshot(self, what: str) -> Path:
        """A full-page screenshot, numbered in the order taken: build/artifacts/browser/<executed or
        live>/NN-<notebook>-<what>.png."""
        SHOTS.append(what)
        path = ARTIFACTS / (Path(self.name).parent.name or LIVE) / f"{len(SHOTS):02d}-{Path(self.name).stem}-{what}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture(scope="module")
def kept(lab, browser):
    """The notebooks kept open with their kernels (``LIVE_SETUP``), by name; see :func:`_live`."""
    pages: dict[str, Notebook] = {}
    yield pages
    for notebook in pages.values():
        notebook.close()


def _opener(lab, browser, kept):
    opened = []

    def _open(name: str) -> Notebook:
        notebook = Notebook(lab, browser, name)
        opened.append(notebook)
        return notebook

    yield _open
    for notebook in opened:
        if kept.get(notebook.name) is not notebook:
            notebook.close()


@pytest.fixture
def open_executed(executed_lab, browser):
    """Open an executed notebook (``executed/<name>``) in a fresh page; closed (its kernel shut down) after."""
    yield from _opener(executed_lab, browser, {})


@pytest.fixture
def open_notebook(lab, browser, kept):
    """Open a committed notebook in the live JupyterLab in a fresh page; closed after the test unless kept."""
    yield from _opener(lab, browser, kept)


# The cells each kept notebook runs when a test first needs it (by a piece of their source): what the tests build on.
LIVE_SETUP = {
    "00_prerequisites.ipynb": ("TKE_PLAYBOOK_TARGET", "import NodeTypePicker", "pb = open_target(",
                               "NodeTypePicker("),
    "02_download_model.ipynb": ("TKE_PLAYBOOK_TARGET", "import DownloadForm", "pb = open_target(",
                                "form = DownloadForm("),
    "03_deploy_vllm.ipynb": ("TKE_PLAYBOOK_TARGET", "import ServingForm", "pb = open_target(", "form = ServingForm(",
                             "serving_spec = pb.read_form(form)"),
}


def _live(lab, browser, kept, name: str) -> Notebook:
    """The committed notebook ``name`` open with a live kernel that ran its ``LIVE_SETUP`` cells, kept open for the
    tests after (as a person keeps a notebook open)."""
    if name not in kept:
        notebook = Notebook(lab, browser, name)
        try:
            notebook.run_cells(*LIVE_SETUP[name])
            notebook.assert_clean(every_cell_ran=False)
        except BaseException:
            notebook.close()
            raise
        kept[name] = notebook
    return kept[name]


def _widget_outputs(path: Path) -> int:
    """How many outputs of a notebook file show a widget."""
    nb = nbformat.read(path, as_version=4)
    return sum(WIDGET_VIEW in output.get("data", {}) for cell in nb.cells for output in cell.get("outputs", []))


# --- the check itself ----------------------------------------------------------------------------------------------


@PAGES
def test_the_page_checks_catch_a_traceback_stderr_and_cut_off_outputs(executed_lab, open_executed):
    """The planted notebook of the same execution, shown as every executed notebook is shown below."""
    nb = open_executed(f"{EXECUTED}/{executed_lab['planted']}")
    nb.wait_for_widgets(1)
    seen = nb.problems()
    nb.screenshot("expected-failure")
    assert seen["stderr"] >= 2, f"stderr text and the traceback both render as stderr in JupyterLab 4: {seen}"
    assert seen["tracebacks"] >= 1, seen
    with pytest.raises(AssertionError):
        nb.assert_clean()
    assert nb.clipped_tables() and nb.truncated_labels(), "the width checks find nothing on a page with both"
    with pytest.raises(pytest.fail.Exception, match="1 of its 2 widgets"):
        nb.wait_for_widgets(2, timeout=1)


# --- every notebook's page, as the one execution left it ------------------------------------------------------------


@PAGES
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_the_executed_notebook_shows_no_problem(executed_lab, open_executed, name):
    nb = open_executed(f"{EXECUTED}/{name}")
    nb.wait_for_widgets(_widget_outputs(executed_lab["folder"] / EXECUTED / name))
    nb.assert_clean()
    assert nb.truncated_labels() == [], f"{name}: cut off"
    assert nb.clipped_tables() == [], f"{name}: tables wider than the page"


# --- changed and invalid values: the next cells honour them or say what is wrong in one line ------------------------


@LIVE_KERNELS
def test_00_node_type_change_reaches_03s_verdict_spec_and_yaml(lab, browser, kept):
    """Issue 20 item 5: the node type chosen in 00 reaches 03's fit verdict, its spec (GPU) and its YAML (node
    affinity) - read from the state file, in 03's own kernel."""
    from tke_playbook.playbook.widgets import node_label
    from tke_playbook.specs.hardware import get_node_type

    prerequisites = _live(lab, browser, kept, "00_prerequisites.ipynb")
    deploy = _live(lab, browser, kept, "03_deploy_vllm.ipynb")
    prerequisites.choose("NodeTypePicker(", "GPU node type", node_label(get_node_type("GN7.2XLARGE32")))
    assert "GN7.2XLARGE32" in prerequisites.run_cell("pb.site.choose_node_type(")
    shown = deploy.run_cell("form = ServingForm(")
    assert "T4" in shown, f"03's fit verdict does not follow the node type chosen in 00: {shown}"
    deploy.run_cell("serving_spec = pb.read_form(form)")
    assert "GN7.2XLARGE32" in deploy.run_cell("print(pb.serving.render(serving_spec))")  # the node affinity
    deploy.assert_clean(every_cell_ran=False)
    prerequisites.choose("NodeTypePicker(", "GPU node type", node_label(get_node_type("PNV5b.8XLARGE96")))
    assert "PNV5b.8XLARGE96" in prerequisites.run_cell("pb.site.choose_node_type(")
    assert "L20" in deploy.run_cell("form = ServingForm(")
    deploy.run_cell("serving_spec = pb.read_form(form)")


@LIVE_KERNELS
def test_03_changed_and_invalid_values(lab, browser, kept):
    nb = _live(lab, browser, kept, "03_deploy_vllm.ipynb")
    option = nb.choose_starting("form = ServingForm(", "Model", "BAAI/bge-m3")  # offline: not on this machine
    assert option.endswith("needs a hub"), option
    nb.run_cell("serving_spec = pb.read_form(form)")
    nb.assert_one_red_block("needs a hub")
    nb.choose_starting("form = ServingForm(", "Model", "sentence-transformers/all-MiniLM-L6-v2")
    shown = nb.run_cell("serving_spec = pb.read_form(form)")
    assert re.search(r"max_model_len\s+256", shown), shown
    nb.type("form = ServingForm(", "tpSize (tensor parallel)", "3")  # the node has one GPU
    form = nb.output("form = ServingForm(")
    assert "needs 3 GPUs" in form and "Valid." not in form, form
    nb.run_cell("serving_spec = pb.read_form(form)")
    nb.assert_one_red_block("needs 3 GPUs")
    nb.type("form = ServingForm(", "tpSize (tensor parallel)", "1")
    nb.type("form = ServingForm(", "Service port", "70000")  # refused, never clamped to 65535
    assert "Service port 70000" in nb.output("form = ServingForm(") and "1–65535" in nb.output("form = ServingForm(")
    nb.run_cell("serving_spec = pb.read_form(form)")
    nb.assert_one_red_block("1–65535")
    # the older spec the kernel still holds is refused too, never deployed quietly
    assert "run its spec cell again" in nb.run_cell("endpoint = pb.serving.deploy(serving_spec)")
    nb.type("form = ServingForm(", "Service port", "60000")
    nb.type("form = ServingForm(", "PVC", "Other_PVC")  # not a Kubernetes name
    assert "not a valid Kubernetes name" in nb.output("form = ServingForm(")
    nb.screenshot("invalid-pvc")
    assert "not a valid Kubernetes name" in nb.run_cell("serving_spec = pb.read_form(form)")
    nb.type("form = ServingForm(", "PVC", "other-pvc")  # valid, but no such PVC
    nb.run_cell("serving_spec = pb.read_form(form)")
    nb.run_cell("endpoint = pb.serving.deploy(serving_spec)")
    nb.screenshot("missing-pvc")
    nb.assert_one_red_block("other-pvc")
    assert not (lab["home"] / "pvcs" / "other-pvc").exists(), "a failed deploy created the PVC folder"


@LIVE_KERNELS
def test_02_changed_and_invalid_values(lab, browser, kept):
    nb = _live(lab, browser, kept, "02_download_model.ipynb")
    nb.type("form = DownloadForm(", "Completions (shards)", "1000")  # refused, never clamped to 64
    assert "Completions 1000 must be a whole number from 1 to 64" in nb.output("form = DownloadForm(")
    nb.type("form = DownloadForm(", "Completions (shards)", "2")
    nb.type("form = DownloadForm(", "Parallelism (pods at once)", "2")
    shown = nb.run_cell("download_spec = pb.read_form(form)")
    assert re.search(r"completions\s+2", shown) and re.search(r"parallelism\s+2", shown), shown
    nb.run_cell("plan = pb.download.plan(")
    table = nb.run_cell("pb.download.job_table(")
    assert len(re.findall(r"^\s*\d+\s+download-", table, re.MULTILINE)) == 2, f"not 2 indexes:\n{table}"
    nb.type("form = DownloadForm(", "Parallelism (pods at once)", "5")  # invalid: above completions
    assert "above Completions" in nb.output("form = DownloadForm(")
    nb.run_cell("download_spec = pb.read_form(form)")
    nb.assert_one_red_block("Parallelism 5 is above Completions 2")
    nb.type("form = DownloadForm(", "Parallelism (pods at once)", "2")
    assert nb.choose_starting("form = DownloadForm(", "Model", "BAAI/bge-small-zh-v1.5").endswith("needs a hub")
    assert "needs a hub" in nb.run_cell("download_spec = pb.read_form(form)")
    # the older spec and plan the kernel still holds: refused, so MiniLM is not fetched again behind the user's back
    assert "run its spec cell again" in nb.run_cell("pb.download.start(download_spec, plan)")
    nb.choose_starting("form = DownloadForm(", "Model", "sentence-transformers/all-MiniLM-L6-v2")
    nb.run_cell("download_spec = pb.read_form(form)")  # valid again: its red block goes, the launch's stays
    nb.screenshot("changed-model")
    nb.assert_one_red_block("run its spec cell again")


# --- 03: deploy, deploy again, clean up, deploy again: the form's port each time ----------------------------------


def _deploy(nb: Notebook) -> str:
    shown = nb.run_cell("endpoint = pb.serving.deploy(serving_spec)")
    nb.assert_clean(every_cell_ran=False)
    return shown


def _require_free(port: int) -> None:
    if not port_is_free(port):
        pytest.skip(f"port {port} was taken before the test by a process that is not of this test run")


@LIVE_KERNELS
def test_deploy_twice_then_again_after_cleanup_keeps_the_forms_port(lab, browser, kept, open_notebook):
    """In 03's kernel (its form set to the lab's own port and read again into a spec): deploy, deploy again, 99 (its
    Run All), deploy again - on that port each time (03's default, 60000, is the notebooks' execution's meanwhile)."""
    port = lab["port"]
    _require_free(port)
    deploy = _live(lab, browser, kept, "03_deploy_vllm.ipynb")
    deploy.run_cells("form = ServingForm(")  # the form as 03 shows it
    deploy.type("form = ServingForm(", "Service port", str(port))
    deploy.run_cell("serving_spec = pb.read_form(form)")
    url = f"127.0.0.1:{port}"
    assert url in _deploy(deploy)
    assert url in _deploy(deploy), f"the second deploy moved off port {port}"
    cleanup = open_notebook("99_cleanup.ipynb")
    cleanup.run_all()
    cleanup.assert_clean()
    assert port_is_free(port), "99 left the server running"
    assert url in _deploy(deploy), f"the deploy after cleanup moved off port {port}"
    assert not port_is_free(port)
    deploy.screenshot("deployed-again")


# --- 99 then 04: nothing is deployed, and nothing is started ---------------------------------------------------------


@LIVE_KERNELS
def test_04_after_cleanup_says_nothing_is_deployed(lab, open_notebook):
    """After the deploys above, 99 (its Run All) stops the server; then 04 (its Run All) must say that nothing is
    deployed, and start nothing (the port of the deploys above stays free)."""
    cleanup = open_notebook("99_cleanup.ipynb")
    cleanup.run_all()
    cleanup.assert_clean()
    port_was_free = port_is_free(lab["port"])  # else a program not of this test run holds it
    nb = open_notebook("04_embeddings.ipynb")
    nb.run_all()
    nb.screenshot("after-cleanup")
    nb.assert_one_red_block("nothing is deployed", "run 03")
    if port_was_free:
        assert port_is_free(lab["port"]), "04 started a server after 99 cleaned up"
