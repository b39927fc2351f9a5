"""Every notebook runs under nbval (``--nbval-lax``) on the local target, in order, in a fresh state folder.

nbval-lax executes every cell and compares only the cells marked ``# NBVAL_CHECK_OUTPUT`` whose committed copy
holds an output (the deterministic ones: specs, manifests, the download plan, the verification table). The
run happens in a subprocess so its report shows the failing notebook and cell as nbval prints them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
BUDGET_S = 600


def _notebooks() -> list[Path]:
    return sorted(p for p in NOTEBOOKS.glob("*.ipynb"))


def test_notebooks_are_what_the_generator_writes():
    done = subprocess.run([sys.executable, str(NOTEBOOKS / "_build.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: p.stem)
def test_notebook_follows_the_house_style(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[0].cell_type == "markdown" and "**Goal:**" in nb.cells[0].source
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1 and "TKE_PLAYBOOK_TARGET" in params[0].source
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        lines = [ln for ln in cell.source.splitlines() if not ln.startswith("#")]
        assert len(lines) <= 10, f"cell too long:\n{cell.source}"
        assert not any(ln.lstrip().startswith(("for ", "while ", "try:", "class ", "def ")) for ln in lines), \
            f"loops, try blocks, classes and functions belong in the library:\n{cell.source}"
        stored = cell.get("outputs", [])
        assert not stored or "# NBVAL_CHECK_OUTPUT" in cell.source, \
            f"only deterministic (checked) cells may carry committed outputs:\n{cell.source}"


@pytest.mark.slow
def test_all_notebooks_run_under_nbval_on_the_local_target(tmp_path):
    env = dict(os.environ, TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_HOME=str(tmp_path / "home"),
               TKE_PLAYBOOK_QUICK="1", TKE_PLAYBOOK_OFFLINE="1")
    env.pop("KUBECONFIG", None)
    command = [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
               "-o", "addopts=", "--nbval-cell-timeout=300", "-q", *[str(p) for p in _notebooks()]]
    started = time.monotonic()
    done = subprocess.run(command, cwd=NOTEBOOKS, env=env, capture_output=True, text=True, timeout=BUDGET_S + 120)
    seconds = time.monotonic() - started
    report = done.stdout[-6000:] + done.stderr[-2000:]
    print(f"nbval: {len(_notebooks())} notebooks in {seconds:.0f} s\n{done.stdout[-600:]}")
    assert done.returncode == 0, report
    assert " passed" in done.stdout and " failed" not in done.stdout, report
