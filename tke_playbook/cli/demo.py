"""``make demo``: run every notebook in order on the local target and keep what they showed.

    python -m tke_playbook.cli.demo [--out build] [--home DIR] [--only 04_embeddings ...] [--full] [--store-checked]

Each notebook is executed by papermill with its ``parameters`` cell overridden (``TARGET="local"``, and
``QUICK=True`` unless ``--full``: trimmed request counts), in the notebooks folder. Executed notebooks go to
``<out>/notebooks/``, an HTML export of each to ``<out>/html/``. The state folder (``TKE_PLAYBOOK_HOME``) is a
fresh ``<out>/home`` unless ``--home`` or the variable is set. A failure names the notebook and the cell, and stops
the run (later notebooks build on earlier ones); so does an output no reader should see (a traceback, stderr text,
an nbval marker, a secret). ``--store-checked`` then copies the outputs of the cells tagged ``nbval-check-output``
into the committed notebooks (what nbval compares). Exit code 0 when every notebook ran.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat
import papermill
from papermill.exceptions import PapermillExecutionError
from traitlets.config import Config

from ..errors import InvalidSpecError, PlaybookError
from ..hostenv import port_is_free
from ..specs.serving import CONTAINER_PORT


def _notebook_dir() -> Path:
    """The project's ``notebooks/`` folder: ``$TKE_PLAYBOOK_NOTEBOOKS``, else ``./notebooks`` (``make demo`` runs
    from the project root), else the source tree beside an editable install."""
    for folder in (os.environ.get("TKE_PLAYBOOK_NOTEBOOKS"), "notebooks", Path(__file__).resolve().parents[2] / "notebooks"):
        if folder and Path(folder, "00_prerequisites.ipynb").is_file():
            return Path(folder).resolve()
    return Path("notebooks").resolve()


NOTEBOOK_DIR = _notebook_dir()
CELL_TIMEOUT_S = 600
SERVICE_PORT = CONTAINER_PORT  # the tutorial's port: 04's curl must show it


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
    paths = sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("_"))
    if only:
        paths = [p for p in paths if any(p.stem.startswith(o.removesuffix(".ipynb")) for o in only)]
        if not paths:
            raise InvalidSpecError(f"No notebook in {folder} matches {only}: use names like 04_embeddings",
                                   field="only", value=only)
    return paths


def notebook_parameters(path: Path, **values) -> dict:
    """``values`` limited to the names the notebook's ``parameters`` cell defines (papermill's inspection)."""
    names = papermill.inspect_notebook(str(path))
    return {name: value for name, value in values.items() if name in names}


def execute_notebook(path: Path, out_dir: Path, *, html: bool = True, timeout: int = CELL_TIMEOUT_S,
                     parameters: dict | None = None) -> NotebookRun:
    """Execute one notebook with papermill (``parameters`` injected after its ``parameters`` cell; kernel started
    in the notebook's folder, with this process's environment) and write the executed copy (widget state stored)
    and its HTML export under ``out_dir``."""
    (out_dir / "notebooks").mkdir(parents=True, exist_ok=True)
    executed = out_dir / "notebooks" / path.name
    started, error = time.monotonic(), ""
    with tempfile.TemporaryDirectory(prefix="tke-kernel-") as sockets:
        # Local sockets (IPC) rather than TCP: nothing listens on the network, and the kernel does not warn about
        # unencrypted TCP in the demo's output.
        ipc = Config({"KernelManager": {"transport": "ipc", "ip": str(Path(sockets) / "kernel")}}
                     if os.name == "posix" else {})  # no IPC sockets on Windows: TCP there
        try:
            papermill.execute_notebook(str(path), str(executed), parameters=parameters or {}, kernel_name="python3",
                                       cwd=str(path.parent), progress_bar=False, execution_timeout=timeout,
                                       config=ipc, store_widget_state=True)
        except PapermillExecutionError as exc:
            first = exc.source.splitlines()[0] if exc.source else ""
            error = f"cell {exc.cell_index} ({first[:60]!r}): {exc.ename}: {exc.evalue}"
        except Exception as exc:  # the kernel died or timed out: report it, keep the partial notebook
            error = f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"
    seconds = time.monotonic() - started
    nb = nbformat.read(executed, as_version=4) if executed.is_file() else nbformat.read(path, as_version=4)
    html_path = None
    if html:
        from nbconvert import HTMLExporter  # late: only the HTML export needs it

        body, _ = HTMLExporter(config=_html_config()).from_notebook_node(nb)
        (out_dir / "html").mkdir(parents=True, exist_ok=True)
        html_path = out_dir / "html" / f"{path.stem}.html"
        html_path.write_text(body, encoding="utf-8")
    return NotebookRun(path.stem, not error, seconds, len(nb.cells), executed, html_path, error)


_MARKER = re.compile(r"NBVAL[_-]", re.IGNORECASE)


def output_problems(nb) -> list[str]:
    """What a reader of an executed notebook must never see: a traceback or error output, text on stderr, or an
    nbval marker in a cell's source (markers are cell tags). One line per problem, naming the cell."""
    problems = []
    for index, cell in enumerate(nb.cells):
        first = (cell.source.splitlines() or [""])[0][:50]
        if _MARKER.search(cell.source):
            problems.append(f"cell {index} ({first!r}) shows an nbval marker: make it a cell tag")
        for output in cell.get("outputs", []):
            kind = output.get("output_type")
            text = output.get("text", "") if kind == "stream" else str(output.get("data", {}).get("text/plain", ""))
            if kind == "error":
                problems.append(f"cell {index} ({first!r}) failed: {output.get('ename')}: {output.get('evalue')}")
            elif kind == "stream" and output.get("name") == "stderr":
                problems.append(f"cell {index} ({first!r}) wrote to stderr: {text.strip()[:120]!r}")
            elif "Traceback (most recent call last)" in text:
                problems.append(f"cell {index} ({first!r}) shows a traceback")
    return problems


def curl_ports(nb) -> list[int]:
    """The ports of the ``curl`` commands an executed notebook shows (04 prints the tutorial's request)."""
    ports = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
            ports += [int(p) for p in re.findall(r"curl[^\n]*?https?://[^/\s:]+:(\d+)", text)]
    return ports


def store_checked_outputs(notebook: Path, executed: Path) -> int:
    """Copy the outputs of ``notebook``'s cells tagged ``nbval-check-output`` from its executed copy (the cell
    papermill injected is skipped) and clear every other cell's; returns how many cells were stored. Sources must
    match."""
    nb = nbformat.read(notebook, as_version=4)
    ran = [c for c in nbformat.read(executed, as_version=4).cells
           if "injected-parameters" not in c.metadata.get("tags", [])]
    if [c.source for c in ran] != [c.source for c in nb.cells]:
        raise InvalidSpecError(f"{executed} was executed from other sources: run the demo again first",
                               field="executed", value=str(executed))
    count = 0
    for cell, done in zip(nb.cells, ran):
        if cell.cell_type == "code" and "nbval-check-output" in cell.metadata.get("tags", []):
            count += 1
            cell.outputs = [o for o in done.outputs if o.get("output_type") != "error"]
            for output in cell.outputs:
                if "execution_count" in output:
                    output["execution_count"] = count
            cell.execution_count = count
        elif cell.cell_type == "code":  # every other cell is committed without output
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, notebook)
    return count


def _html_config():
    """HTML export settings: where an output has a static HTML form (the playbook's widgets and tables do), show
    it rather than a live widget view, which needs JavaScript from a CDN and stays blank offline."""
    return Config({"NbConvertBase": {"display_data_priority": [
        "text/html", "application/vnd.jupyter.widget-view+json", "application/javascript", "text/markdown",
        "image/svg+xml", "image/png", "image/jpeg", "text/latex", "text/plain"]}})


def run_demo(out_dir: Path = Path("build"), *, home: Path | None = None, only: list[str] | None = None,
             quick: bool = True, notebooks: Path = NOTEBOOK_DIR, html: bool = True,
             echo=print) -> list[NotebookRun]:
    """Run the notebooks in order on the local target (papermill parameters ``TARGET="local"`` and ``QUICK``);
    stop at the first failure, or at an output no reader should see (:func:`output_problems`, a secret, a curl
    command not on port 60000 when 60000 was free at the start).

    The kernels get this process's environment with the target, the state folder and quick mode set; the
    environment is restored afterwards."""
    out_dir = Path(out_dir).resolve()
    saved = dict(os.environ)
    if home is None and not os.environ.get("TKE_PLAYBOOK_HOME"):
        home = out_dir / "home"
        stop_local_servers(home)  # a server outlives its notebook: one left by an earlier run must not keep the port
        shutil.rmtree(home, ignore_errors=True)
    if home is not None:
        os.environ["TKE_PLAYBOOK_HOME"] = str(Path(home).resolve())
    os.environ["TKE_PLAYBOOK_TARGET"] = "local"
    if quick:
        os.environ.setdefault("TKE_PLAYBOOK_QUICK", "1")
    port_was_free = port_is_free(SERVICE_PORT)
    runs = []
    paths = []
    try:
        paths = notebook_paths(notebooks, only)
        for path in paths:
            run = execute_notebook(path, out_dir, html=html,
                                   parameters=notebook_parameters(path, TARGET="local", QUICK=quick))
            if run.ok:
                run = _check_outputs(_check_secrets(run), SERVICE_PORT if port_was_free else None)
            runs.append(run)
            echo(f"{'ok  ' if run.ok else 'FAIL'} {run.name:<20} {run.seconds:6.1f} s  {run.cells:3d} cells"
                 + (f"  -> {run.error}" if run.error else ""))
            if not run.ok:
                break
    finally:
        if not all(run.ok for run in runs) or len(runs) < len(paths):
            stop_local_servers(_home())  # 99 did not run
        os.environ.clear()
        os.environ.update(saved)
    return runs


def _home() -> Path:
    """The state folder the kernels use (this process's environment, as run_demo set it)."""
    from ..playbook.settings import Settings
    from ..specs.target import Target

    return Settings.from_env(target=Target.LOCAL).home


def stop_local_servers(home: Path) -> None:
    """Stop the local servers recorded under ``home`` (they outlive the kernels that started them; 99 stops them
    in a full run)."""
    if Path(home).is_dir():
        from ..playbook.facade import LocalPlaybook  # late: the playbook loads pandas and widgets

        LocalPlaybook(root=Path(home)).serving.stop_servers()


def _check_outputs(run: NotebookRun, port: int | None) -> NotebookRun:
    """Fail the run on :func:`output_problems`, or a curl command on another port than ``port`` (None: any)."""
    if not run.ok:
        return run
    nb = nbformat.read(run.executed, as_version=4)
    problems = output_problems(nb)
    wrong = [p for p in curl_ports(nb) if port is not None and p != port]
    if wrong:
        problems.append(f"curl goes to port {wrong[0]}, not {port} (which was free when the demo started)")
    if problems:
        run.ok, run.error = False, "; ".join(problems[:3])
    return run


def _check_secrets(run: NotebookRun) -> NotebookRun:
    """Fail the run if its executed notebook shows an API key or token (the known keys or their shape)."""
    from ..playbook.leaks import find_secrets  # late: the playbook loads pandas and widgets

    folder = _home() / "secrets"
    keys = [p.read_text(encoding="utf-8").strip() for p in folder.iterdir()] if folder.is_dir() else []
    found = find_secrets(run.executed, known=keys)
    if found:
        run.ok = False
        run.error = "secret in output: " + ", ".join(f"cell {f.cell} ({f.kind}: {f.excerpt})" for f in found[:3])
    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tke_playbook.cli.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build"), help="where executed notebooks and HTML go")
    parser.add_argument("--home", type=Path, default=None, help="state folder (default: a fresh <out>/home)")
    parser.add_argument("--only", nargs="*", default=None, help="run only these notebooks (name prefixes)")
    parser.add_argument("--full", action="store_true", help="full request counts and sweeps (slower)")
    parser.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR,
                        help="the folder of notebooks to run (default: %(default)s)")
    parser.add_argument("--store-checked", action="store_true",
                        help="then copy the outputs of cells tagged nbval-check-output into the committed notebooks")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        runs = run_demo(args.out, home=args.home, only=args.only, quick=not args.full, notebooks=args.notebooks)
    except PlaybookError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failed = [r for r in runs if not r.ok]
    total = time.monotonic() - started
    if failed:
        print(f"Demo stopped in {failed[0].name}: {failed[0].error}\nSee {failed[0].executed} for the full output.",
              file=sys.stderr)
        return 1
    if args.store_checked:
        for run in runs:
            stored = store_checked_outputs(args.notebooks / f"{run.name}.ipynb", run.executed)
            print(f"stored the outputs of {stored} checked cells in notebooks/{run.name}.ipynb")
    print(f"All {len(runs)} notebooks ran in {total:.0f} s. Executed notebooks: {Path(args.out) / 'notebooks'}; "
          f"HTML: {Path(args.out) / 'html'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
