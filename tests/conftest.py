"""Fixtures shared by every test, the one execution of the notebooks, and how the suite runs in parallel.

Parallel runs (``make test`` runs ``pytest -n 3 --dist loadgroup``, see pyproject.toml). pytest-xdist hands each
worker whole *groups*; a group runs on one worker, in collection order. The default group of a test is its module
(so a module-scoped fixture - a loaded model, a server - is built once, as without xdist). Two kinds of tests
get another group here, without any mark of their own:

- a test that uses the ``executed_notebooks`` fixture is in the group ``notebooks``: nbval's check, the secret
  scan, the demo's output checks. The run itself happens once per test run, not once per worker: the first worker
  that asks runs it, under a file lock in the run's shared temporary folder; any other worker that asks waits on
  the lock and reads the result;
- a test marked ``@pytest.mark.xdist_group("name")`` keeps that group (use it for tests of several modules that
  must not overlap, e.g. two that need the same fixed port). tests/test_browser.py has two: ``browser-live`` (the
  live kernels, its own JupyterLab) and ``browser-pages`` (the executed pages, read from that one run).

The groups are put in order before xdist hands them out: ``FIRST_GROUPS`` (``notebooks`` and ``browser-live``, the
longest chains), then the groups that hold a test marked ``slow``, then ``AFTER_SLOW_GROUPS`` (``browser-pages``,
which waits for the notebooks' run), then the rest; a worker that finishes one group takes the next. So a new test needs
nothing: it runs in its module's group, and a slow one should carry ``@pytest.mark.slow`` (pyproject.toml's
markers). What a test may not assume under parallel workers: that port 60000 is free (take a free port, as
``pb.serving.defaults().replace(service_port=...)`` does, or use ``executed_notebooks``' run), or that
``TKE_PLAYBOOK_HOME`` is its own (each worker gets a fresh one for the session; use the ``home`` fixture for a
fresh one per test).

``executed_notebooks``: every notebook executed once, by nbval (``pytest --nbval-lax`` in a subprocess, as the
user asked: nbval executes the notebooks as tests), with ``tests/nbval_record.py`` loaded into that run to keep
each notebook as its kernel showed it (outputs, display updates, widget state). nbval's verdict, the secret scan,
the demo's output checks and the browser's page checks all read that one run; see tests/test_browser.py for what
the browser still runs live.

``k8s_valid(manifest)`` validates one manifest (a dict) in strict mode with the PyPI package kubernetes-validate
against the Kubernetes 1.28 and 1.33 schemas, and fails the test with the validator's message (version, field
path, reason). Strict mode rejects unknown fields, so a typo such as ``secretKeyRefs`` fails.

LeaderWorkerSet is a CRD (leaderworkerset.x-k8s.io) with no upstream schema: its embedded pod templates
(``leaderTemplate`` and ``workerTemplate``) are validated as ``v1/PodTemplate`` objects instead, and the rest of
the object is checked for the fields the LWS controller requires.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import fcntl
import functools
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
NOTEBOOKS = REPO / "notebooks"
NOTEBOOKS_GROUP = "notebooks"
# The longest chains, started at once on their own workers: the notebooks' one execution (and what reads it on the
# same worker), the browser tests that need live kernels (tests/test_browser.py).
FIRST_GROUPS = (NOTEBOOKS_GROUP, "browser-live")
# Groups that read the notebooks' execution from another worker: after the other slow groups, when it is done.
AFTER_SLOW_GROUPS = ("browser-pages",)
NBVAL_BUDGET_S = 600  # the whole nbval run; each cell has 300 s
if str(TESTS) not in sys.path:  # the test doubles import as ``fakes.<module>`` (pytest's importlib mode adds nothing)
    sys.path.insert(0, str(TESTS))

K8S_VERSIONS = ("1.28", "1.33")
LWS_API_VERSION = "leaderworkerset.x-k8s.io/v1"


def _validate_builtin(manifest: dict, versions=K8S_VERSIONS) -> None:
    import kubernetes_validate as kv

    for version in versions:
        problem = None
        try:
            kv.validate(copy.deepcopy(manifest), version, strict=True)
        except kv.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path) or "<root>"
            name = manifest.get("metadata", {}).get("name", "?")
            problem = f"{manifest.get('kind')}/{name} is invalid for Kubernetes {exc.version}: {path}: {exc.message}"
        except kv.SchemaNotFoundError as exc:
            problem = exc.message
        if problem:  # failed outside the except block, so the report shows the message without chained tracebacks
            pytest.fail(problem, pytrace=False)


def _pod_template(metadata_name: str, template: dict) -> dict:
    return {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": metadata_name}, "template": template}


def _validate_lws(manifest: dict, versions=K8S_VERSIONS) -> None:
    name = manifest.get("metadata", {}).get("name", "?")
    if manifest.get("apiVersion") != LWS_API_VERSION:
        pytest.fail(f"LeaderWorkerSet/{name}: apiVersion must be {LWS_API_VERSION}", pytrace=False)
    _validate_builtin({"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest.get("metadata", {})}, versions)
    spec = manifest.get("spec") or {}
    unknown_spec = set(spec) - {"replicas", "leaderWorkerTemplate", "rolloutStrategy", "startupPolicy",
                                "networkConfig"}
    if unknown_spec:
        pytest.fail(f"LeaderWorkerSet/{name}: unknown spec fields {sorted(unknown_spec)}", pytrace=False)
    lwt = spec.get("leaderWorkerTemplate") or {}
    unknown_lwt = set(lwt) - {"leaderTemplate", "workerTemplate", "size", "restartPolicy", "subGroupPolicy"}
    if unknown_lwt:
        pytest.fail(f"LeaderWorkerSet/{name}: unknown leaderWorkerTemplate fields {sorted(unknown_lwt)}",
                    pytrace=False)
    size = lwt.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        pytest.fail(f"LeaderWorkerSet/{name}: leaderWorkerTemplate.size must be an integer >= 1, got {size!r}",
                    pytrace=False)
    if "workerTemplate" not in lwt:
        pytest.fail(f"LeaderWorkerSet/{name}: leaderWorkerTemplate.workerTemplate is required", pytrace=False)
    for key in ("leaderTemplate", "workerTemplate"):
        if key in lwt:
            _validate_builtin(_pod_template(f"{name}-{key.lower()}", lwt[key]), versions)
    _validate_lws_crd(manifest)


LWS_CRD = Path(__file__).resolve().parents[2] / "shared" / "reference" / "upstream" / \
    "lws-leaderworkerset-crd-v0.10.0.yaml"


def _strict(schema):
    """The CRD schema with unknown fields rejected wherever it lists properties and does not preserve unknowns."""
    if isinstance(schema, dict):
        schema = {k: _strict(v) for k, v in schema.items()}
        if "properties" in schema and "additionalProperties" not in schema and \
                not schema.get("x-kubernetes-preserve-unknown-fields"):
            schema["additionalProperties"] = False
    elif isinstance(schema, list):
        schema = [_strict(v) for v in schema]
    return schema


@functools.lru_cache(maxsize=1)
def lws_crd_validator():
    """A jsonschema validator for LeaderWorkerSet v1 from the LWS v0.10.0 CRD (strict), or None without the file."""
    if not LWS_CRD.exists():
        return None
    import jsonschema
    import yaml

    crd = yaml.load(LWS_CRD.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return jsonschema.Draft7Validator(_strict(version["schema"]["openAPIV3Schema"]))


def _validate_lws_crd(manifest: dict) -> None:
    validator = lws_crd_validator()
    if validator is None:  # ../shared is absent: the pod templates were still checked above
        return
    error = next(iter(sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))), None)
    if error is not None:
        path = ".".join(str(p) for p in error.absolute_path) or "<root>"
        pytest.fail(f"LeaderWorkerSet/{manifest.get('metadata', {}).get('name', '?')} is invalid for the LWS v0.10.0 "
                    f"CRD: {path}: {error.message}", pytrace=False)


def validate_manifest(manifest: dict, versions=K8S_VERSIONS) -> dict:
    """Validate ``manifest`` strictly against each version in ``versions``; fail the test otherwise."""
    if not isinstance(manifest, dict):
        pytest.fail(f"a manifest must be a dict, got {type(manifest).__name__}", pytrace=False)
    if manifest.get("kind") == "LeaderWorkerSet":
        _validate_lws(manifest, versions)
    else:
        _validate_builtin(manifest, versions)
    return manifest


@pytest.fixture
def k8s_valid():
    """A function: ``k8s_valid(manifest)`` validates in strict mode against Kubernetes 1.28 and 1.33."""
    return validate_manifest


@pytest.fixture
def lws_crd():
    """The strict jsonschema validator of the LWS v0.10.0 CRD; skips when ../shared is absent."""
    validator = lws_crd_validator()
    if validator is None:
        pytest.skip(f"the LWS CRD is not at {LWS_CRD} (../shared absent)")
    return validator


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh toolkit home (state, secrets, the local PVC folders) on the offline local target."""
    monkeypatch.setenv("TKE_PLAYBOOK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TKE_PLAYBOOK_OFFLINE", "1")
    monkeypatch.delenv("TKE_PLAYBOOK_TARGET", raising=False)
    return tmp_path / "home"


@pytest.fixture
def pb(home):
    """The local playbook in that home; stops what it started."""
    from tke_playbook.playbook import open_target

    playbook = open_target("local")
    yield playbook
    playbook.serving.stop_servers()
    playbook.download.stop()


# --- parallel runs: groups and their order ------------------------------------------------------------------------


def _group(item) -> str:
    """The test's xdist group: its ``xdist_group`` marks (joined as xdist joins them), else ``notebooks`` for a
    test that reads the notebooks' execution, else its module."""
    marked = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default"))
                     for m in item.iter_markers("xdist_group")})
    if marked:
        return "_".join(marked)
    if "executed_notebooks" in item.fixturenames:
        return NOTEBOOKS_GROUP
    return item.nodeid.split("::", 1)[0]  # the module


def _put_in_group(item, group: str) -> None:
    """Mark ``item`` with its group, and on an xdist worker of a ``--dist loadgroup`` run also give its node id the
    ``@group`` suffix xdist's scheduler reads: xdist 3.8 writes that suffix to ``Node._nodeid``, which pytest 9.2
    no longer reads (node ids are structured, ``Node._id``), so every test would be scheduled alone
    (pytest-dev/pytest-xdist#1386, fix pending in #1388). With an older pytest xdist's own suffix works."""
    if item.get_closest_marker("xdist_group") is None:
        item.add_marker(pytest.mark.xdist_group(group))
    if getattr(item.config.option, "loadgroup", False) and hasattr(item, "_id") and not hasattr(item, "_nodeid") \
            and not item.nodeid.endswith(f"@{group}"):
        from _pytest.nodeid import NodeId

        item._id = NodeId.parse(f"{item.nodeid}@{group}")


def _rank(group: str, slow: set[str]) -> tuple[int, int]:
    if group in FIRST_GROUPS:
        return 0, FIRST_GROUPS.index(group)
    if group in AFTER_SLOW_GROUPS:
        return 2, AFTER_SLOW_GROUPS.index(group)
    return (1 if group in slow else 3), 0


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the groups
def pytest_collection_modifyitems(config, items):
    """Give every test its xdist group (see the module docstring) and put the groups in order: ``FIRST_GROUPS``,
    the groups with a slow test, ``AFTER_SLOW_GROUPS``, the rest (each in collection order)."""
    groups = {item: _group(item) for item in items}
    for item in items:
        _put_in_group(item, groups[item])
    slow = {groups[item] for item in items if item.get_closest_marker("slow") is not None}
    first_seen = {}
    for index, item in enumerate(items):
        first_seen.setdefault(groups[item], index)
    items.sort(key=lambda item: (_rank(groups[item], slow), first_seen[groups[item]]))


@pytest.fixture(scope="session", autouse=True)
def _own_state_folder(tmp_path_factory):
    """A state folder of this worker's own for the session (``TKE_PLAYBOOK_HOME``): no test reads or leaves
    state in another worker's, a developer's or ``~/.cache/tke-playbook``; servers left in it are stopped."""
    saved = os.environ.get("TKE_PLAYBOOK_HOME")
    home = tmp_path_factory.mktemp("worker-home")
    os.environ["TKE_PLAYBOOK_HOME"] = str(home)
    yield home
    from tke_playbook.cli.demo import stop_local_servers

    stop_local_servers(home)
    if saved is None:
        os.environ.pop("TKE_PLAYBOOK_HOME", None)
    else:
        os.environ["TKE_PLAYBOOK_HOME"] = saved


# --- port 60000 and the local target ---------------------------------------------------------------------------------


@contextlib.contextmanager
def tutorial_port_lock(tmp_path_factory):
    """Port 60000 (the tutorial's, where the notebooks deploy) for this holder alone among the workers of this test
    run: an exclusive lock on a file in the run's shared temporary folder. Without xdist there is nobody to wait for."""
    base = tmp_path_factory.getbasetemp()
    folder = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    with open(folder / "port-60000.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture
def port_60000(tmp_path_factory):
    """Port 60000, held for this test alone (see :func:`tutorial_port_lock`): for a test that deploys on it or
    checks that nothing listens there. A program outside this test run may still hold it: check first."""
    from tke_playbook.specs.serving import CONTAINER_PORT

    with tutorial_port_lock(tmp_path_factory):
        yield CONTAINER_PORT


@pytest.fixture(scope="session")
def prepare_local_target():
    """A function: ``prepare_local_target(home)`` leaves the local target in ``home`` as notebooks 01 and 02 leave it
    (the PVC folder, the offline model downloaded and verified on it, nothing deployed) and returns ``home``."""

    def prepare(home: Path) -> Path:
        from tke_playbook.playbook import open_target
        from tke_playbook.reporting import QuietReporter

        saved = {key: os.environ.get(key) for key in ("TKE_PLAYBOOK_HOME", "TKE_PLAYBOOK_OFFLINE")}
        os.environ.update(TKE_PLAYBOOK_HOME=str(home), TKE_PLAYBOOK_OFFLINE="1")
        try:
            pb = open_target("local", reporter=QuietReporter())
            pb.storage.create(pb.storage.defaults())
            download = pb.download.defaults()
            pb.download.start(download, pb.download.plan(download))
            pb.download.wait()
        finally:
            for key, value in saved.items():
                os.environ.pop(key, None) if value is None else os.environ.__setitem__(key, value)
        return home

    return prepare


# --- the notebooks, executed once ---------------------------------------------------------------------------------


PLANTED = "zz_planted_problems.ipynb"


def write_planted_notebook(path: Path) -> Path:
    """A notebook with what no reader should see - a stderr line, a table wider than the page, a cut-off widget
    label, a traceback (its cell tagged ``raises-exception``, so nbval expects it) - and two outputs a recorder must
    fold as a front end does: a display updated by its id, and output cleared (``wait=True``) before the next."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell
    nb.cells = [nbformat.v4.new_markdown_cell("Planted problems: the checks must find each."),
                cell("import sys\nprint('a warning on stderr', file=sys.stderr)"),
                cell("import pandas as pd\npd.DataFrame([[123456789.123] * 40], "
                     "columns=[f'column_{i}_ms' for i in range(40)])"),
                cell("import ipywidgets\nipywidgets.IntText(description='maxBatchSize (max-num-seqs) and a label "
                     "longer still')"),
                cell("from IPython.display import clear_output, display\nshown = display('first', display_id=True)\n"
                     "shown.update('updated')"),
                cell("for step in range(3):\n    clear_output(wait=True)\n    print(f'step {step}')"),
                cell("raise RuntimeError('this notebook raises on purpose')")]
    nb.cells[-1].metadata["tags"] = ["raises-exception"]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@dataclass
class ExecutedNotebooks:
    """One nbval run of every notebook (in order, on the local target, in a fresh state folder ``home``, quick
    mode) and of the planted notebook; ``folder`` holds each notebook as executed (``tests/nbval_record.py``)."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    folder: Path
    home: Path
    names: list[str]
    port_60000_was_free: bool

    def to_json(self) -> str:
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(self).items()})

    @classmethod
    def from_json(cls, text: str) -> ExecutedNotebooks:
        values = json.loads(text)
        return cls(**dict(values, folder=Path(values["folder"]), home=Path(values["home"])))

    @property
    def report(self) -> str:
        return self.stdout[-6000:] + self.stderr[-2000:]

    def path(self, name: str) -> Path:
        """The executed copy of notebook ``name`` (``04_embeddings`` or ``04_embeddings.ipynb``)."""
        path = self.folder / f"{name.removesuffix('.ipynb')}.ipynb"
        if not path.is_file():
            pytest.fail(f"nbval did not execute {path.name} to its end: see test_all_notebooks_run_under_nbval_on_"
                        f"the_local_target\n{self.report}", pytrace=False)
        return path

    @property
    def planted(self) -> Path:
        return self.path(PLANTED)

    def keys(self) -> list[str]:
        """The API keys the run generated (03 makes one; 99 deletes it, so the recorder kept a copy)."""
        folder = self.folder / "secrets"
        return [p.read_text().strip() for p in sorted(folder.iterdir())] if folder.is_dir() else []


def _nbval_command(notebooks: list[Path], folder: Path, home: Path) -> list[str]:
    return [sys.executable, "-m", "pytest", "--nbval-lax", "--nbval-current-env", "-p", "no:cacheprovider",
            "-p", "no:xdist", "-o", "addopts=", "--nbval-cell-timeout=300", "-q",
            "-p", "nbval_record", "--record-to", str(folder), "--record-copy-after", str(home / "secrets"),
            *[str(p) for p in notebooks]]


def _run_notebooks(tmp: Path, tmp_path_factory) -> ExecutedNotebooks:
    from tke_playbook.cli.demo import stop_local_servers
    from tke_playbook.hostenv import port_is_free
    from tke_playbook.specs.serving import CONTAINER_PORT

    home, folder = tmp / "home", tmp / "notebooks"
    notebooks = sorted(NOTEBOOKS.glob("*.ipynb")) + [write_planted_notebook(tmp / "planted" / PLANTED)]
    env = dict(os.environ, TKE_PLAYBOOK_TARGET="local", TKE_PLAYBOOK_HOME=str(home), TKE_PLAYBOOK_QUICK="1",
               TKE_PLAYBOOK_OFFLINE="1",
               PYTHONPATH=os.pathsep.join(p for p in (str(TESTS), str(REPO), os.environ.get("PYTHONPATH")) if p))
    env.pop("KUBECONFIG", None)
    started = time.monotonic()
    with tutorial_port_lock(tmp_path_factory):
        port_was_free = port_is_free(CONTAINER_PORT)
        try:
            done = subprocess.run(_nbval_command(notebooks, folder, home), cwd=NOTEBOOKS, env=env,
                                  capture_output=True, text=True, timeout=NBVAL_BUDGET_S + 120)
        finally:  # a local server outlives its notebook's kernel; 99 stops it, unless a notebook before it failed
            stop_local_servers(home)
    return ExecutedNotebooks(done.returncode, done.stdout, done.stderr, time.monotonic() - started, folder, home,
                             [p.stem for p in notebooks], port_was_free)


@pytest.fixture(scope="session")
def executed_notebooks(tmp_path_factory) -> ExecutedNotebooks:
    """Every notebook executed once under nbval, recorded - once per test run, whichever worker asks first (the
    others wait for it and read its result). Its tests are in the xdist group ``notebooks`` unless marked otherwise.
    The run holds port 60000 (03 deploys there, 04 shows it in its curl command)."""
    from tke_playbook.cli.demo import stop_local_servers

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "executed-notebooks"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the run is done: the others then read its result
        result = shared / "result.json"
        if result.is_file():
            run = ExecutedNotebooks.from_json(result.read_text(encoding="utf-8"))
        else:
            run = _run_notebooks(shared, tmp_path_factory)
            result.write_text(run.to_json(), encoding="utf-8")
    yield run
    stop_local_servers(run.home)  # what a kernel of a browser test may have deployed in the same folder
