"""JupyterLab in headless Chromium: open 04_embeddings, run it, and check from the page that the widgets and
the similarity heatmap rendered. The screenshot is kept in build/artifacts/04_embeddings.png.

"Runs it" means: with Playwright installed, the committed notebook (no outputs) is opened in JupyterLab and
*Run > Run All Cells* is clicked; the kernel JupyterLab started computes every output. Without Playwright, the
notebook is executed by nbclient first (widget state stored), marked trusted, and Chromium's --dump-dom reads the
page JupyterLab renders from it.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NOTEBOOK = REPO / "notebooks" / "04_embeddings.ipynb"
ARTIFACTS = REPO / "build" / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
RUN_TIMEOUT_S = 300

if not Path(CHROMIUM).is_file():
    pytest.skip("chromium is not installed (apt-get install chromium; make browser-deps does it)",
                allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _write_settings(folder: Path) -> None:
    """User settings for this JupyterLab only: render every cell (no windowing, so off-screen outputs are in the
    page) and no news pop-up over the screenshot."""
    import json

    for extension, plugin, values in (("@jupyterlab/notebook-extension", "tracker", {"windowingMode": "none"}),
                                      ("@jupyterlab/apputils-extension", "notification", {"fetchNews": "false"})):
        path = folder / extension / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values), encoding="utf-8")


@pytest.fixture
def lab(tmp_path):
    """JupyterLab on 127.0.0.1 with a token, in a folder holding a copy of 04_embeddings, on the local target."""
    folder = tmp_path / "nb"
    folder.mkdir()
    shutil.copy(NOTEBOOK, folder / NOTEBOOK.name)
    port, token = _free_port(), os.urandom(16).hex()
    settings = tmp_path / "lab-settings"
    _write_settings(settings)
    env = dict(os.environ, TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_HOME=str(tmp_path / "home"),
               TKE_PLAYBOOK_QUICK="1", TKE_PLAYBOOK_OFFLINE="1", JUPYTER_RUNTIME_DIR=str(tmp_path / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings))
    log = open(tmp_path / "lab.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
                                "--ip", "127.0.0.1", "--port", str(port), f"--IdentityProvider.token={token}",
                                f"--ServerApp.root_dir={folder}", "--ServerApp.open_browser=False"],
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
                pytest.fail(f"JupyterLab did not start:\n{(tmp_path / 'lab.log').read_text(errors='replace')[-2000:]}")
            time.sleep(0.5)
    yield {"base": base, "token": token, "folder": folder, "env": env, "tmp": tmp_path}
    process.terminate()
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
    log.close()


def _run_all(page, attempts: int = 4) -> None:
    """Click Run > Run All Cells until the cells start (the first click can land before the kernel is ready)."""
    for _ in range(attempts):
        page.click("div.lm-MenuBar-itemLabel:text('Run')")
        page.click("li[data-command='runmenu:run-all']")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if any(re.search(r"\[(\d+|\*)\]", p) for p in page.locator(".jp-InputPrompt").all_inner_texts()):
                return
            time.sleep(0.5)
    pytest.fail("Run All Cells did not start the notebook in JupyterLab")


def _run_with_playwright(lab, screenshot: Path) -> dict:
    from playwright.sync_api import sync_playwright

    url = f"{lab['base']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS[1:])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 2300})
            page.goto(url)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=120_000)
            _run_all(page)
            images = ".jp-OutputArea-output[data-mime-type='image/png'] img"
            page.wait_for_selector(f"{images} >> nth=1", state="attached", timeout=RUN_TIMEOUT_S * 1000)
            page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']", timeout=60_000)
            page.locator(".widget-textarea").first.evaluate("e => e.scrollIntoView({block: 'start'})")
            page.screenshot(path=str(screenshot))
            heatmap = page.locator(".jp-CodeCell", has_text="plot_similarity_heatmap").locator(images)
            sizes = heatmap.evaluate_all("imgs => imgs.map(i => [i.naturalWidth, i.naturalHeight])")
            return {"widgets": page.locator(".jupyter-widgets.widget-textarea").count(),
                    "png_images": page.locator(f"{images}[src^='data:image/png']").count(),
                    "heatmap_sizes": sizes,
                    "errors": page.locator("[data-mime-type='application/vnd.jupyter.error']").count(),
                    "prompts": page.locator(".jp-InputPrompt").all_inner_texts()}
        finally:
            browser.close()


def _run_with_cli(lab, screenshot: Path) -> dict:
    from tke_playbook.demo import execute_notebook

    os.environ.update({k: lab["env"][k] for k in ("TKE_PLAYBOOK_TARGET", "TKE_PLAYBOOK_HOME", "TKE_PLAYBOOK_QUICK",
                                                  "TKE_PLAYBOOK_OFFLINE")})
    run = execute_notebook(lab["folder"] / NOTEBOOK.name, lab["tmp"] / "executed", html=False)
    assert run.ok, run.error
    shutil.copy(run.executed, lab["folder"] / NOTEBOOK.name)
    subprocess.run([sys.executable, "-m", "jupyter", "trust", str(lab["folder"] / NOTEBOOK.name)], check=True,
                   capture_output=True, env=lab["env"])
    url = f"{lab['base']}/lab/tree/{NOTEBOOK.name}?token={lab['token']}"
    common = CHROMIUM_FLAGS + [f"--user-data-dir={lab['tmp'] / 'chromium'}", "--virtual-time-budget=30000",
                               "--window-size=1400,2400"]
    dom = subprocess.run([CHROMIUM, *common, "--dump-dom", url], capture_output=True, text=True, timeout=180).stdout
    subprocess.run([CHROMIUM, *common, f"--screenshot={screenshot}", url], capture_output=True, timeout=180)
    body = dom[dom.find("<body"):]
    return {"widgets": len(re.findall(r'class="[^"]*widget-textarea', body)),
            "png_images": len(re.findall(r'<img src="data:image/png', body)), "heatmap_sizes": None,
            "errors": body.count('data-mime-type="application/vnd.jupyter.error"'), "prompts": []}


def test_04_embeddings_runs_in_jupyterlab_with_widgets_and_heatmap(lab):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshot = ARTIFACTS / "04_embeddings.png"
    screenshot.unlink(missing_ok=True)
    try:
        import playwright.sync_api  # noqa: F401
        seen = _run_with_playwright(lab, screenshot)
    except ImportError:
        seen = _run_with_cli(lab, screenshot)
    assert seen["errors"] == 0, seen
    assert seen["widgets"] >= 1, f"the TextForm widget did not render: {seen}"
    assert seen["png_images"] >= 2, f"the heatmap and latency images are missing: {seen}"
    if seen["heatmap_sizes"] is not None:  # in JupyterLab: the heatmap cell's own image, at heatmap size
        assert len(seen["heatmap_sizes"]) == 1, f"the heatmap cell shows no (or several) images: {seen}"
        width, height = seen["heatmap_sizes"][0]
        assert width > 600 and height > 600, f"the heatmap image is too small to be the heatmap: {seen}"
    assert not any("*" in p for p in seen["prompts"]), f"cells still running: {seen['prompts']}"
    assert screenshot.is_file() and screenshot.stat().st_size > 20_000
