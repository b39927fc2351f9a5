"""``make demo``: run every notebook in order on the local target and keep what they showed.

    python -m tke_playbook.demo [--out build] [--home DIR] [--only 04_embeddings ...] [--full]

Executed notebooks go to ``<out>/notebooks/``, an HTML export of each to ``<out>/html/``. The state folder
(``TKE_PLAYBOOK_HOME``) is a fresh ``<out>/home`` unless ``--home`` or the variable is set. Request counts are
trimmed (``TKE_PLAYBOOK_QUICK=1``) unless ``--full``. A failure names the notebook and the cell, and stops the
run (later notebooks build on earlier ones). Exit code 0 when every notebook ran.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
CELL_TIMEOUT_S = 600


@dataclass
class NotebookRun:
    """How one notebook went: ``error`` names the failing cell (empty when it ran through)."""

    name: str
    ok: bool
    seconds: float
    cells: int
    executed: Path | None = None
    html: Path | None = None
    error: str = ""


def notebook_paths(folder: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """The notebooks in run order (by name); ``only`` keeps those whose name starts with one of its entries."""
    from .errors import InvalidSpecError

    paths = sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("_"))
    if only:
        paths = [p for p in paths if any(p.stem.startswith(o.removesuffix(".ipynb")) for o in only)]
        if not paths:
            raise InvalidSpecError(f"No notebook in {folder} matches {only}: use names like 04_embeddings",
                                   field="only", value=only)
    return paths


def _failed_cell(nb, exc) -> str:
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first = cell.source.splitlines()[0] if cell.source else ""
                return f"cell {index} ({first[:60]!r}): {output.get('ename')}: {output.get('evalue')}"
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"


def execute_notebook(path: Path, out_dir: Path, *, html: bool = True, timeout: int = CELL_TIMEOUT_S) -> NotebookRun:
    """Execute one notebook (kernel started in the notebooks folder, with this process's environment) and
    write the executed copy (widget state stored) and its HTML export under ``out_dir``."""
    import nbformat
    from nbclient import NotebookClient
    from traitlets.config import Config

    nb = nbformat.read(path, as_version=4)
    started, error = time.monotonic(), ""
    with tempfile.TemporaryDirectory(prefix="tke-kernel-") as sockets:
        # Local sockets (IPC) rather than TCP: nothing listens on the network, and the kernel does not warn about
        # unencrypted TCP in the demo's output.
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}}
                     if os.name == "posix" else {})  # no IPC sockets on Windows: TCP there
        client = NotebookClient(nb, config=ipc, timeout=timeout, kernel_name="python3", store_widget_state=True,
                                resources={"metadata": {"path": str(path.parent)}})
        try:
            client.execute()
        except Exception as exc:  # a cell failed or the kernel died: report it, keep the partial notebook
            error = _failed_cell(nb, exc)
    seconds = time.monotonic() - started
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    executed = out_dir / "notebooks" / path.name
    nbformat.write(nb, executed)
    html_path = None
    if html:
        from nbconvert import HTMLExporter

        body, _ = HTMLExporter(config=_html_config()).from_notebook_node(nb)
        (out_dir / "html").mkdir(parents=True, exist_ok=True)
        html_path = out_dir / "html" / f"{path.stem}.html"
        html_path.write_text(body, encoding="utf-8")
    return NotebookRun(path.stem, not error, seconds, len(nb.cells), executed, html_path, error)


def _html_config():
    """HTML export settings: where an output has a static HTML form (the playbook's widgets and tables do), show
    it rather than a live widget view, which needs JavaScript from a CDN and stays blank offline."""
    from traitlets.config import Config

    return Config({"NbConvertBase": {"display_data_priority": [
        "text/html", "application/vnd.jupyter.widget-view+json", "application/javascript", "text/markdown",
        "image/svg+xml", "image/png", "image/jpeg", "text/latex", "text/plain"]}})


def run_demo(out_dir: Path = Path("build"), *, home: Path | None = None, only: list[str] | None = None,
             quick: bool = True, notebooks: Path = NOTEBOOK_DIR, html: bool = True,
             echo=print) -> list[NotebookRun]:
    """Run the notebooks in order on the local target; stop at the first failure (or a leaked secret).

    The kernels get this process's environment with the target, the state folder and quick mode set; the
    environment is restored afterwards."""
    out_dir = Path(out_dir).resolve()
    saved = dict(os.environ)
    if home is None and not os.environ.get("TKE_PLAYBOOK_HOME"):
        home = out_dir / "home"
        shutil.rmtree(home, ignore_errors=True)
    if home is not None:
        os.environ["TKE_PLAYBOOK_HOME"] = str(Path(home).resolve())
    os.environ["TKE_PLAYBOOK_TARGET"] = "local"
    if quick:
        os.environ.setdefault("TKE_PLAYBOOK_QUICK", "1")
    runs = []
    try:
        for path in notebook_paths(notebooks, only):
            run = execute_notebook(path, out_dir, html=html)
            if run.ok:
                run = _check_secrets(run)
            runs.append(run)
            echo(f"{'ok  ' if run.ok else 'FAIL'} {run.name:<20} {run.seconds:6.1f} s  {run.cells:3d} cells"
                 + (f"  -> {run.error}" if run.error else ""))
            if not run.ok:
                break
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return runs


def _check_secrets(run: NotebookRun) -> NotebookRun:
    """Fail the run if its executed notebook shows an API key or token (the known keys or their shape)."""
    from .target import state_dir
    from .workflow.leaks import find_secrets

    folder = state_dir() / "secrets"
    keys = [p.read_text(encoding="utf-8").strip() for p in folder.iterdir()] if folder.is_dir() else []
    found = find_secrets(run.executed, known=keys)
    if found:
        run.ok = False
        run.error = "secret in output: " + ", ".join(f"cell {f.cell} ({f.kind}: {f.excerpt})" for f in found[:3])
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tke_playbook.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build"), help="where executed notebooks and HTML go")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a fresh <out>/home)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (name prefixes)")
    parser.add_argument("--full", action="store_true", help="full request counts and sweeps (slower)")
    args = parser.parse_args(argv)
    from .errors import PlaybookError

    started = time.monotonic()
    try:
        runs = run_demo(args.out, home=args.home, only=args.only, quick=not args.full)
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in runs if not r.ok]
    total = time.monotonic() - started
    if failed:
        print(f"Demo stopped in {failed[0].name}: {failed[0].error}\nSee {failed[0].executed} for the full output.",
              file=sys.stderr)
        return 1
    print(f"All {len(runs)} notebooks ran in {total:.0f} s. Executed notebooks: {Path(args.out) / 'notebooks'}; "
          f"HTML: {Path(args.out) / 'html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
