"""Issue 22: the settings read once reach every reader of the state folder and of the node prices.

A playbook opened with ``Settings(home=A, prices_file=PA, storage_prices_file=SA)`` while the environment says
``TKE_PLAYBOOK_HOME=B``, ``TKE_PLAYBOOK_NODE_PRICES=PB`` and ``TKE_PLAYBOOK_STORAGE_PRICES=SB`` keeps everything
under A and prices with PA and SA: the local server's log, the servers that tuning and the frontier start, what an
interrupted load run kept, the ``vllm bench serve`` JSON, the corpus scorecard's vectors, and every price. Before,
those lower layers asked the environment themselves and wrote under B. B is never even created.

The last test reads the code: every call the playbook, the command line and the notebooks make to a function below
the playbook that takes the state folder (``home``) or the price table (``prices``) passes it.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from fakes.localtarget import free_port, link_offline_model
from tke_playbook.errors import RunInterrupted, ServerError
from tke_playbook.playbook import open_target
from tke_playbook.playbook.settings import Settings
from tke_playbook.reporting import QuietReporter
from tke_playbook.specs.target import Target

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "tke_playbook"
NODE = "SA5.LARGE8"   # the CPU node the local target prices on
GPU_NODE = "PNV5b.8XLARGE96"
SETTINGS_PRICES = {NODE: 7.5, GPU_NODE: 11.0}
ENVIRONMENT_PRICES = {NODE: 99.0, GPU_NODE: 999.0}
STORAGE = "memory"  # where a vector index is kept, priced per GiB-month
SETTINGS_STORAGE_PRICE, ENVIRONMENT_STORAGE_PRICE = 1.5, 99.0


@dataclass
class World:
    pb: object          # the local playbook opened with Settings(home=settings_home, prices_file=...)
    settings_home: Path
    environment_home: Path  # what $TKE_PLAYBOOK_HOME says: nothing may land here
    endpoint: object    # the server pb deployed (one start for the whole module)


def _prices_file(path: Path, prices: dict, unit: str = "per_hour") -> Path:
    path.write_text("".join(f"{name}: {{{unit}: {price}, currency: CNY}}\n" for name, price in prices.items()),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("two-homes")
    settings_home, environment_home = root / "settings-home", root / "environment-home"
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TKE_PLAYBOOK_HOME", str(environment_home))
        env.setenv("TKE_PLAYBOOK_NODE_PRICES", str(_prices_file(root / "environment-prices.yaml",
                                                                ENVIRONMENT_PRICES)))
        env.setenv("TKE_PLAYBOOK_STORAGE_PRICES", str(_prices_file(
            root / "environment-storage.yaml", {STORAGE: ENVIRONMENT_STORAGE_PRICE}, "per_gib_month")))
        env.setenv("TKE_PLAYBOOK_OFFLINE", "1")
        env.delenv("TKE_PLAYBOOK_TARGET", raising=False)
        settings = Settings(Target.LOCAL, settings_home, offline=True,
                            prices_file=_prices_file(root / "settings-prices.yaml", SETTINGS_PRICES),
                            storage_prices_file=_prices_file(root / "settings-storage.yaml",
                                                             {STORAGE: SETTINGS_STORAGE_PRICE}, "per_gib_month"))
        pb = open_target(settings=settings, reporter=QuietReporter())
        try:
            link_offline_model(pb)
            endpoint = pb.serving.deploy(pb.serving.defaults().replace(service_port=free_port()))
            yield World(pb, settings_home, environment_home, endpoint)
        finally:
            pb.serving.stop_servers()


@pytest.fixture
def homes(world):
    """The world, and after the test: nothing was written under (or even made at) the environment's folder."""
    yield world
    assert not world.environment_home.exists(), \
        f"written under $TKE_PLAYBOOK_HOME instead of the settings' home: {sorted(world.environment_home.rglob('*'))}"


def _under(path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


# --- the state folder ---------------------------------------------------------------------------------------------


def test_the_deployed_servers_log_is_in_the_settings_home(homes):
    record = homes.pb.records.runs.server(homes.pb.serving.require_deployed().name)
    assert _under(record.log, homes.settings_home / "logs") and Path(record.log).is_file()
    assert homes.pb.serving.logs(5)  # what 03 shows is that file


class _StopOnFirstAnswer:
    """A progress bar (``update(n)``, ``close()``) that presses the stop button once the first request is answered,
    so the run has something to keep: drawn by the waiting thread, where an interrupt lands."""

    def update(self, n: int = 1) -> None:
        raise KeyboardInterrupt

    def close(self) -> None:
        pass


def _closed(url, model, key, home):
    from tke_playbook.loadgen import run_closed_loop

    return run_closed_loop(url, model, [1], None, [8], max_duration_s=30, api_key=key, progress=_StopOnFirstAnswer(),
                           home=home)


def _search(url, model, key, home):
    from tke_playbook.capacity import find_sustainable_rate

    return find_sustainable_rate(url, model, 60_000, input_tokens=8, concurrency=(1,), ceiling_level_s=30,
                                 api_key=key, progress=_StopOnFirstAnswer(), home=home)


def _replay(url, model, key, home):
    from tke_playbook.capacity import replay

    return replay(url, model, 5.0, 60_000, input_tokens=8, duration_s=30, warmup_requests=0, api_key=key,
                  progress=_StopOnFirstAnswer(), home=home)


@pytest.mark.parametrize("run", [_closed, _search, _replay], ids=["closed-loop", "rate-search", "replay"])
def test_an_interrupted_load_run_keeps_its_requests_in_the_settings_home(homes, run):
    """06's sweeps as the notebook calls them (``home=pb.settings.home``), stopped after the first answer."""
    endpoint = homes.endpoint
    with pytest.raises(RunInterrupted) as stopped:
        run(endpoint.url, endpoint.model, endpoint.api_key, homes.pb.settings.home)
    run_name = str(stopped.value).split(":")[0]  # "closed loop: stopped after ..."
    kept = homes.settings_home / "interrupted" / f"{run_name.replace(' ', '-')}.csv"
    assert kept.is_file(), f"{stopped.value}; kept: {sorted(homes.settings_home.rglob('*.csv'))}"
    assert len(pd.read_csv(kept)) >= 1


def test_the_vllm_bench_json_is_written_in_the_settings_home(homes):
    from tke_playbook.loadgen import run_closed_loop, write_vllm_bench_json

    endpoint = homes.endpoint
    closed = run_closed_loop(endpoint.url, endpoint.model, [1], 3, [8], api_key=endpoint.api_key,
                             home=homes.pb.settings.home)
    paths = write_vllm_bench_json(closed.records, endpoint.model, home=homes.pb.settings.home)
    assert paths and all(_under(p, homes.settings_home / "vllm-bench") and p.is_file() for p in paths)


def test_the_corpus_scorecards_vectors_are_cached_in_the_settings_home(homes, tmp_path):
    """07's flow on two short documents: the served model and BM25, run with ``home=pb.settings.home``."""
    from tke_playbook.corpus import load_corpus
    from tke_playbook.scorecard.corpusrun import RunOptions, run_corpus

    pb = homes.pb
    (tmp_path / "a.txt").write_text("Kubernetes schedules pods onto nodes.", encoding="utf-8")
    (tmp_path / "b.txt").write_text("vLLM serves embedding models over HTTP.", encoding="utf-8")
    systems, chunker, _ = pb.evaluation.document_systems("bm25")
    corpus = load_corpus(tmp_path, chunker, progress=False)
    result = run_corpus(corpus, {"q": "which server embeds text?"}, systems, home=pb.settings.home,
                        options=RunOptions(progress=False))
    assert result.systems[0] == homes.endpoint.model
    cached = list((homes.settings_home / "embeddings" / "corpus").rglob("*"))
    assert any(p.is_file() for p in cached), "no vectors cached under the settings' home"


def _gives_up_at_once(monkeypatch, module) -> None:
    """``module``'s start_server with a timeout too short for the model to load: the server is started for real (its
    log opened where the caller said), then stopped with ServerError - no model load to wait for."""
    real = module.start_server
    monkeypatch.setattr(module, "start_server", lambda *args, **kwargs: real(*args, **{**kwargs, "timeout": 0.2}))


@pytest.mark.parametrize("module, step", [
    ("tke_playbook.capacity.local", lambda pb: pb.serving.tune(pd.DataFrame(), 200.0, max_candidates=0)),
    ("tke_playbook.scorecard.frontier", lambda pb: pb.evaluation.frontier(quick=True)),
], ids=["tuning", "frontier"])
def test_the_servers_tuning_and_the_frontier_start_log_in_the_settings_home(homes, monkeypatch, module, step):
    import importlib

    _gives_up_at_once(monkeypatch, importlib.import_module(module))
    before = set((homes.settings_home / "logs").iterdir())
    with pytest.raises(ServerError) as failed:
        step(homes.pb)
    new = set((homes.settings_home / "logs").iterdir()) - before
    assert len(new) == 1 and str(next(iter(new))) in str(failed.value)


# --- the prices -----------------------------------------------------------------------------------------------------


def test_the_settings_prices_are_the_settings_file_never_the_environments_again(homes):
    settings = homes.pb.settings
    assert settings.node_prices()[NODE].per_hour == SETTINGS_PRICES[NODE]
    assert settings.storage_prices()[STORAGE].per_gib_month == SETTINGS_STORAGE_PRICE
    unset = settings.replace(prices_file=None, storage_prices_file=None)  # the settings name no file: the defaults
    assert unset.node_prices()[NODE].per_hour not in ENVIRONMENT_PRICES.values()
    assert not unset.node_prices()[NODE].verified
    assert unset.storage_prices()[STORAGE].per_gib_month != ENVIRONMENT_STORAGE_PRICE
    assert not unset.storage_prices()[STORAGE].verified


def test_the_frontier_gets_the_settings_home_and_prices(homes, monkeypatch):
    """The facade's frontier hands the library the settings' home and price tables. Run to its end it starts a second
    server and an mteb scorecard (too long for here): the test above starts that server, this one reads what the
    library is given."""
    from tke_playbook.scorecard import frontier as fr

    given: dict = {}
    monkeypatch.setattr(fr, "local_frontier", lambda *args, **kwargs: given.update(kwargs))
    homes.pb.evaluation.frontier(quick=True)
    assert given["home"] == homes.settings_home
    assert given["prices"].loc[NODE, "hourly_price"] == SETTINGS_PRICES[NODE]
    assert given["storage_prices"].loc[STORAGE, "per_gib_month"] == SETTINGS_STORAGE_PRICE


def test_06s_plan_and_projection_price_with_the_settings_file(homes):
    from tke_playbook.capacity import QueryLoad, project_gpu
    from tke_playbook.scorecard.htmlreport import cost_rows

    prices = homes.pb.settings.node_prices()
    projection = project_gpu(QueryLoad(100, 200), "BAAI/bge-m3", GPU_NODE, tokens_per_query=34, prices=prices)
    assert projection.nodes >= 1 and projection.price_verified
    assert projection.cost_per_day == pytest.approx(SETTINGS_PRICES[GPU_NODE] * 24 * projection.nodes)
    rows = cost_rows(pd.DataFrame({"chunks/s": [100.0]}, index=["s"]), NODE, prices)  # 07's report and the CLI's
    assert rows.iloc[0].filter(like="per 1M").iloc[0] == pytest.approx(SETTINGS_PRICES[NODE] / (100 * 3600) * 1e6)


# --- every caller passes them ---------------------------------------------------------------------------------------

CALLERS = [*sorted((PACKAGE / "playbook").glob("*.py")), *sorted((PACKAGE / "cli").glob("*.py")),
           *sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py"))]
# the readers issue 22 named: each must take the state folder as `home`
READERS = {"start_server", "run_closed_loop", "run_open_loop", "find_sustainable_rate", "replay", "measure_local",
           "tune_local", "tune_local_server", "write_vllm_bench_json", "run_scorecard", "run_frontier",
           "local_frontier", "run_corpus", "default_cache_dir"}


def _takers(param: str) -> dict[str, int | None]:
    """Public module-level functions below the playbook with a parameter ``param``: name -> its position (None
    when keyword-only)."""
    found: dict[str, int | None] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] in ("playbook", "cli"):
            continue
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                positional = [a.arg for a in node.args.posonlyargs + node.args.args]
                if param in positional:
                    found[node.name] = positional.index(param)
                elif param in (a.arg for a in node.args.kwonlyargs):
                    found[node.name] = None
    return found


def _calls_without(param: str, takers: dict[str, int | None]) -> list[str]:
    missing = []
    for path in CALLERS:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name not in takers:
                continue
            position = takers[name]
            given = any(k.arg in (param, None) for k in node.keywords) or \
                (position is not None and len(node.args) > position)
            if not given:
                missing.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(...)")
    return missing


def test_the_readers_of_the_state_folder_take_it_as_a_parameter():
    takers = _takers("home")
    assert READERS <= set(takers), f"these still read $TKE_PLAYBOOK_HOME with no way to be told: " \
                                   f"{sorted(READERS - set(takers))}"


@pytest.mark.parametrize("param", ["home", "prices"])
def test_the_playbook_the_command_line_and_the_notebooks_pass_the_settings_values(param):
    """Every call from the playbook's steps, the command line and the notebooks to a function below the playbook
    that takes the state folder (``home``) or the price table (``prices``) gives it - the settings' value (the
    standalone default, the environment, stays for direct library users)."""
    takers = _takers(param)
    assert takers, f"no function takes {param}"
    missing = _calls_without(param, takers)
    assert not missing, f"these calls leave {param} to the environment: {missing}"
