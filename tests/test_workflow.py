"""The two-target facade: state between notebooks, API keys, the local target end to end, the cluster target
against the fake API server."""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
from pathlib import Path

import pytest

from tke_playbook.errors import (DownloadError, EmbeddingAPIError, IncompleteModelError, InvalidSpecError,
                                 NotDeployedError, UnknownNameError)
from tke_playbook.manifests.yamldoc import REDACTED
from tke_playbook.playbook import SecretStore, StateStore, WorkflowState
from tke_playbook.playbook import local as local_module
from tke_playbook.playbook import mask_secret, open_target
from tke_playbook.playbook.runs import DownloadRecord
from tke_playbook.specs.catalog import OFFLINE_MODEL
from tke_playbook.specs.serving import ServingChoices, resolve
from tke_playbook.specs.storage import StorageSpec
from tke_playbook.specs.target import Target

# --- state and secrets -------------------------------------------------------------------------------------


def test_state_store_round_trip_of_typed_records(tmp_path):
    store = StateStore(Target.LOCAL, tmp_path)
    serving = resolve(ServingChoices(model=OFFLINE_MODEL, max_model_len=256))
    store.update(storage=StorageSpec(pvc_name="models"), serving=serving, server_log="/tmp/x.log")
    store.update(server_log=None)
    state = StateStore("local", tmp_path).read()
    assert state == WorkflowState(storage=StorageSpec(pvc_name="models"), serving=serving)
    assert WorkflowState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    with pytest.raises(TypeError):
        store.update(serving_spec=serving)  # a key that is not a record is refused, not written


def test_a_damaged_record_reads_as_missing_and_old_keys_are_ignored(tmp_path):
    store = StateStore(Target.LOCAL, tmp_path)
    store.path.write_text(json.dumps({"serving": {"model": "no-such-model"}, "server": {"url": "u"},
                                      "storage": {"pvc_name": "models"}, "node_type": {"name": 3}}), encoding="utf-8")
    state = store.read()
    assert state.serving is None and state.storage == StorageSpec(pvc_name="models")


def test_damaged_state_file_is_set_aside_not_fatal(tmp_path):
    store = StateStore(Target.LOCAL, tmp_path)
    store.path.write_text("{not json", encoding="utf-8")
    assert store.read() == WorkflowState()
    assert store.path.with_suffix(".json.damaged").is_file()


def test_secret_store_generates_once_with_owner_only_mode(tmp_path):
    secrets = SecretStore(tmp_path)
    key = secrets.ensure("vllm-x-api-key")
    assert len(key) >= 32 and secrets.ensure("vllm-x-api-key") == key
    mode = stat.S_IMODE(os.stat(tmp_path / "secrets" / "vllm-x-api-key").st_mode)
    assert mode == 0o600


@pytest.mark.parametrize("bad", [pytest.param("has space", id="space"), pytest.param("", id="empty")])
def test_secret_store_refuses_bad_keys(tmp_path, bad):
    with pytest.raises(InvalidSpecError):
        SecretStore(tmp_path).write("k", bad)


def test_mask_secret_never_shows_the_whole_key():
    key = "3bXyZabcdefghijklmnopqrstuv1a1d"
    assert not any(key[:n] in mask_secret(key) for n in range(2, len(key)))  # not even a prefix (issue 20)
    assert "31 characters" in mask_secret(key)
    assert mask_secret(None) == "(none)"


@pytest.mark.parametrize("spec", [
    pytest.param(resolve(ServingChoices(model=OFFLINE_MODEL, max_model_len=256, labels={"team": "a"})), id="serving"),
    pytest.param(StorageSpec(pvc_name="models", size="50Gi"), id="storage"),
])
def test_specs_survive_the_state_file(spec):
    data = json.loads(json.dumps(spec.to_dict()))
    assert type(spec).from_dict(data) == spec


# --- choosing the target ------------------------------------------------------------------------------------


def test_no_kubeconfig_means_local(home, monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert open_target().target is Target.LOCAL


def test_unknown_target_suggests(home):
    with pytest.raises(UnknownNameError, match="Did you mean 'local'"):
        open_target("locl")


# --- local target: storage, rendering, defaults -------------------------------------------------------------


def test_local_preflight_is_a_table_of_checks(pb):
    frame = pb.site.preflight().to_frame()
    assert {"python", "torch", "offline model", "disk", "serving port"} <= set(frame["check"])
    assert set(frame["result"]) <= {"PASS", "FAIL", "skip"}


def test_create_storage_makes_the_folder_and_remembers_the_pvc(pb, home):
    frame = pb.storage.create(StorageSpec(pvc_name="models"))
    assert (home / "pvcs" / "models").is_dir() and frame.loc[0, "status"] == "Bound"
    assert pb.storage.names() == ["models"]
    assert pb.serving.defaults().pvc_name == "models"  # the later notebooks follow the recorded PVC
    assert pb.download.defaults().pvc == "models"


def test_defaults_fit_the_target(pb):
    spec = pb.serving.defaults()
    assert spec.model == OFFLINE_MODEL and spec.max_model_len == 256 and spec.service_port == 60000
    assert pb.download.defaults(completions=2, parallelism=5).parallelism == 2


def test_rendered_manifests_hold_no_key(pb):
    spec = pb.serving.defaults()
    key = pb.serving.api_key(spec)
    text = pb.serving.render(spec) + pb.serving.helm_values(spec)
    assert key not in text and "kind: Secret" in text and f"api-key: {REDACTED}" in text
    assert "kind: PersistentVolumeClaim" in pb.storage.render(pb.storage.defaults())


def test_node_type_choice_is_remembered(pb):
    nodes = pb.site.node_types()
    chosen = next(n for n in nodes if n.name == "GN7.2XLARGE32")
    pb.site.choose_node_type(chosen)
    assert open_target("local").site.node_type().name == "GN7.2XLARGE32"


def test_deploy_refuses_an_incomplete_model_folder(pb):
    pb.storage.create(pb.storage.defaults())
    with pytest.raises(IncompleteModelError, match="02_download_model"):
        pb.serving.deploy(pb.serving.defaults())


def test_wait_without_a_started_download_says_what_to_do(pb):
    with pytest.raises(DownloadError, match="launch cell"):
        pb.download.wait()


def test_comparison_pair_refuses_a_model_the_local_target_cannot_serve(pb, monkeypatch):
    monkeypatch.setattr(local_module.ServiceEndpoint, "check", lambda self: self)
    monkeypatch.setattr(type(pb.serving), "endpoint", lambda self, model="": local_module.ServiceEndpoint(
        "http://x", OFFLINE_MODEL, "local-process"))
    with pytest.raises(InvalidSpecError, match="serves one model"):
        pb.evaluation.comparison_pair("BAAI/bge-m3")
    a, b = pb.evaluation.comparison_pair()
    assert a.name == OFFLINE_MODEL and b.name == "lexical-tfidf"


def test_progress_right_after_launch_lists_every_shard_as_pending(pb):
    pb.storage.create(pb.storage.defaults())
    spec = pb.download.defaults(completions=3, parallelism=3)
    pb.records.runs.put_download(DownloadRecord(slug=spec.slug, model=spec.model, spec=spec.to_dict(), plan_id="p",
                                        shard_bytes=(30, 20, 10), folder=str(pb.download.folder(spec))))
    frame = pb.download.progress()  # no worker has written its plan or progress yet
    assert frame["shard"].tolist() == [0, 1, 2] and set(frame["status"]) == {"pending"}
    assert frame["bytes_total"].tolist() == [30, 20, 10] and "error" not in frame.columns


@pytest.mark.parametrize("lines, expected", [
    pytest.param(["Loading m ...", "", "Loading weights:   0%|          | 0/103 [00:00<?, ?it/s]",
                  "Loading weights:  50%|#####     | 52/103", "Loading weights: 100%|##########| 103/103", "",
                  "Serving m"],
                 ["Loading m ...", "Loading weights: 100%|##########| 103/103", "Serving m"], id="one-bar-folded"),
    pytest.param(["a:  10%|#", "b:  10%|#", "b: 100%|##"], ["a:  10%|#", "b: 100%|##"], id="two-bars-kept-apart"),
    pytest.param(["x\rLoading: 100%|##"], ["Loading: 100%|##"], id="carriage-return"),
    pytest.param(["accuracy: 90% | fine", "plain"], ["accuracy: 90% | fine", "plain"], id="not-a-bar"),
])
def test_log_tail_folds_progress_bars(lines, expected):
    assert local_module.without_progress_bars(lines) == expected


def test_curl_text_is_a_shell_command_that_expands_the_key_variable():
    import json
    import subprocess

    endpoint = local_module.ServiceEndpoint("http://127.0.0.1:60000", OFFLINE_MODEL, "local-process", "s3cretKey")
    text = endpoint.curl_text("it's 用Python实现快速排序算法")
    assert "s3cretKey" not in text and text.count("\\\n") == 3  # one option per line, as in the tutorial
    echo = "printf '%s\\n'" + text[len("curl"):]  # the same words, printed one per line instead of sent
    done = subprocess.run(["bash", "-c", echo], capture_output=True, text=True, env={"VLLM_API_KEY": "abc"})
    words = done.stdout.splitlines()
    assert "Authorization: Bearer abc" in words
    assert json.loads(words[-1]) == {"model": OFFLINE_MODEL, "input": "it's 用Python实现快速排序算法"}


def test_displays_of_the_playbook_and_endpoint_hold_no_key(pb):
    assert "Target local" in pb._repr_html_() and "folder" in pb.site.describe()
    key = "3bXyZq7Lr2Kd9Wm4Vn8Tp1Hs6Jf5Gc0A"
    endpoint = local_module.ServiceEndpoint("http://127.0.0.1:60000", OFFLINE_MODEL, "local-process", key, "a <note>")
    html = endpoint._repr_html_()
    assert key not in html and key not in repr(endpoint) and "3bX" not in html and "a &lt;note&gt;" in html


# --- local target end to end: download through the mirror, deploy, restart, tear down -----------------------


@pytest.mark.slow
def test_local_download_deploy_restart_teardown(pb, home):
    pb.storage.create(pb.storage.defaults())
    spec = pb.download.defaults(completions=2, parallelism=2)
    plan = pb.download.plan(spec)
    assert len(plan.shards) == 2 and plan.total_bytes > 80_000_000
    pb.download.start(spec, plan)
    with pytest.raises(DownloadError, match="still running"):
        pb.download.start(spec, plan)
    pb.download.wait()
    verified = pb.download.verify()
    assert "model.safetensors" in set(verified["file"]) and verified["hash"].str.len().min() > 0

    with socket.socket() as sock:  # a port of its own: 60000 may serve another test or a demo right now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = pb.serving.deploy(pb.serving.defaults().replace(service_port=port))
    key = pb.serving.api_key(pb.serving.defaults())
    assert key not in repr(endpoint) and endpoint.api_key == key
    answer = endpoint.curl("hello")
    assert len(answer["data"][0]["embedding"]) == 384
    assert key not in endpoint.curl_text("hello")

    wrong = local_module.ServiceEndpoint(endpoint.url, endpoint.model, "local-process", "wrong-key")
    with pytest.raises(EmbeddingAPIError, match="401"):
        wrong.curl("hello")

    assert pb.serving.diagnose().loc[0, "severity"] == "ok" and "Serving" in pb.serving.logs(50)
    again = open_target("local").serving.endpoint()  # another kernel (04) finds 03's server
    assert again.url == endpoint.url == f"http://127.0.0.1:{port}" and again.client().embed(["x"]).shape == (1, 384)
    pb.serving.stop_servers()  # stopped (or crashed): 04 says to run 03 and starts nothing behind the user's back
    with pytest.raises(NotDeployedError, match="run 03_deploy_vllm again"):
        open_target("local").serving.endpoint()

    removed = pb.teardown(keep_pvc=False)
    assert "PVC folder" in set(removed["object"]) and pb.storage.names() == []


# --- cluster target against the fake API server -------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).parent / "cluster"))
from fake_cluster import serve_when_applied  # noqa: E402  (tests/cluster, just put on the path)


@pytest.fixture
def fake_api(home):
    """The fake API server with a GPU and a CPU node, and a client connected to it."""
    from fake_cluster import cluster_with_nodes

    with cluster_with_nodes(("gpu-1", {}), ("cpu-1", {"instance_type": "SA5.LARGE8", "gpus": 0})) as connected:
        yield connected


@pytest.fixture
def fake_cluster(fake_api):
    from tke_playbook.playbook import ClusterPlaybook

    server, kube = fake_api
    return server, ClusterPlaybook(kube=kube)


class Collecting:
    """A reporter that keeps the events and shows no bar."""

    def __init__(self):
        from tke_playbook.reporting import QuietReporter

        self.events, self.quiet = [], QuietReporter()

    def event(self, event):
        self.events.append(event)

    def bar(self, total=None, desc="", unit="it"):
        return self.quiet.bar(total, desc, unit)


def test_cluster_deploy_sends_the_log_to_the_reporter_not_print(fake_api, capsys):
    import threading

    from tke_playbook.playbook import ClusterPlaybook
    from tke_playbook.reporting import Level

    server, kube = fake_api
    reporter = Collecting()
    events = reporter.events
    cluster = ClusterPlaybook(kube=kube, reporter=reporter)
    spec = cluster.serving.defaults("BAAI/bge-m3")
    lines = ("INFO Loading weights", "INFO Application startup complete.")
    helper = threading.Thread(target=serve_when_applied, args=(server, spec, "vllm-bge-m3-6d5f-events"),
                              kwargs={"lines": lines})
    helper.start()
    cluster.serving.deploy(spec, timeout=60)
    helper.join()
    assert capsys.readouterr().out == ""  # nothing printed: every line went to the sink
    assert [e.message for e in events if e.level is Level.INFO] == list(lines)
    assert {e.source for e in events} == {"deploy"}
    assert "Application startup complete" in cluster.serving.logs(5)  # the pod found by the toolkit's labels


@pytest.mark.parametrize("kind", ["NotebookReporter", "PlainReporter"])
def test_reporters_show_events_as_the_notebooks_printed_them(capsys, kind):
    from tke_playbook import reporting
    from tke_playbook.reporting import Event, Level

    reporter = getattr(reporting, kind)()
    reporter.event(Event("INFO Application startup complete.", source="deploy"))
    reporter.event(Event("The model does not fit", Level.WARNING, "deploy"))
    assert capsys.readouterr().out == "INFO Application startup complete.\n!! The model does not fit\n"


def test_cluster_storage_that_binds_on_first_use_returns_at_once(fake_cluster):
    """A StorageClass with WaitForFirstConsumer binds only when the download Job's pod uses the PVC: create_storage
    must not wait for Bound then (it used to, until its timeout)."""
    import threading

    from fake_cluster import until

    server, cluster = fake_cluster

    def cluster_side():
        until(lambda: server.exists("persistentvolumeclaims", "ai-model", "default"))
        server.add_event("default", "PersistentVolumeClaim", "ai-model", "WaitForFirstConsumer",
                         "waiting for first consumer to be created before binding", "Normal")

    helper = threading.Thread(target=cluster_side)
    helper.start()
    frame = cluster.storage.create(StorageSpec(), timeout=30)
    helper.join()
    assert frame.loc[0, "status"] == "Pending" and frame.loc[0, "pvc"] == "ai-model"


def test_cluster_storage_with_a_missing_storage_class_fails_with_the_diagnosis(fake_cluster):
    import threading

    from fake_cluster import until

    from tke_playbook.errors import ClusterError

    server, cluster = fake_cluster

    def cluster_side():
        until(lambda: server.exists("persistentvolumeclaims", "ai-model", "default"))
        server.add_event("default", "PersistentVolumeClaim", "ai-model", "ProvisioningFailed",
                         'storageclass.storage.k8s.io "cfs" not found')

    helper = threading.Thread(target=cluster_side)
    helper.start()
    with pytest.raises(ClusterError, match="StorageClass cfs does not exist"):
        cluster.storage.create(StorageSpec(), timeout=30)
    helper.join()


def test_cluster_download_progress_finds_the_job_pods_by_the_toolkit_labels(fake_cluster, monkeypatch):
    from fake_cluster import add_pod

    from tke_playbook.podworker.planner import make_plan
    from tke_playbook.podworker.rules import RepoFile
    from tke_playbook.specs import DownloadSpec

    server, cluster = fake_cluster
    spec = DownloadSpec(model="BAAI/bge-m3", source="huggingface", completions=2, parallelism=2)
    plan = make_plan(spec, [RepoFile("model.safetensors", 3000, "a" * 64), RepoFile("config.json", 10, "b" * 64)])
    for name in ("HF_TOKEN", "HUB_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    cluster.download.start(spec, plan)
    labels = server.get("jobs", spec.job_name, "default")["spec"]["template"]["metadata"]["labels"]
    add_pod(server, "default", f"{spec.job_name}-0-abcde", phase="Running",
            labels={**labels, "batch.kubernetes.io/job-completion-index": "0"})
    add_pod(server, "default", "someone-elses-pod", phase="Failed",
            labels={"batch.kubernetes.io/job-completion-index": "1"})
    frame = cluster.download.progress()
    assert frame["pod"].tolist() == ["Running", "not started"]


def test_cluster_node_types_come_from_the_nodes(fake_cluster):
    _, cluster = fake_cluster
    names = [n.name for n in cluster.site.node_types()]
    assert names[0] == "PNV5b.8XLARGE96" and "SA5.LARGE8" in names
    assert cluster.site.default_model == "intfloat/e5-mistral-7b-instruct"


def test_cluster_storage_waits_for_bound_then_teardown_keeps_it(fake_cluster):
    import threading

    server, cluster = fake_cluster
    timer = threading.Timer(0.3, lambda: server.set_status("persistentvolumeclaims", "ai-model", "default",
                                                           {"phase": "Bound"}))
    timer.start()
    frame = cluster.storage.create(StorageSpec())
    timer.join()
    assert frame.loc[0, "status"] == "Bound" and cluster.storage.names() == ["ai-model"]
    assert cluster.teardown(keep_pvc=True).empty and cluster.storage.names() == ["ai-model"]


def test_cluster_deploy_applies_the_key_secret_follows_the_log_and_returns_the_balancer(fake_cluster, capsys):
    import base64
    import threading

    server, cluster = fake_cluster
    spec = cluster.serving.defaults("BAAI/bge-m3")
    helper = threading.Thread(target=serve_when_applied, args=(server, spec, "vllm-bge-m3-6d5f-abcde"),
                              kwargs={"ip": "10.0.0.7"})
    helper.start()
    endpoint = cluster.serving.deploy(spec, timeout=60)
    helper.join()
    key = cluster.serving.api_key(spec)
    stored = server.get("secrets", spec.api_key_secret, "default")["data"]["api-key"]
    assert base64.b64decode(stored).decode() == key
    assert endpoint.url == "http://10.0.0.7:60000" and endpoint.kind == "load-balancer"
    assert endpoint.model == "BAAI/bge-m3" and key not in repr(endpoint)
    assert key not in capsys.readouterr().out
    assert cluster.serving.deployed_spec("bge-m3") == spec


def test_cluster_download_puts_the_env_token_in_a_secret_and_never_in_the_job(fake_cluster, monkeypatch, capsys):
    import base64

    from tke_playbook.podworker.planner import make_plan
    from tke_playbook.podworker.rules import RepoFile
    from tke_playbook.specs import DownloadSpec

    server, cluster = fake_cluster
    token = "hf_PrivateToken0123456789abcdef"
    monkeypatch.setenv("HF_TOKEN", token)
    spec = DownloadSpec(model="BAAI/bge-m3", source="huggingface", completions=2, parallelism=2)
    plan = make_plan(spec, [RepoFile("model.safetensors", 3000, "a" * 64), RepoFile("config.json", 10, "b" * 64)])
    cluster.download.start(spec, plan)
    secret = server.get("secrets", spec.token_secret, "default")
    stored = secret.get("data", {}).get("token") or base64.b64encode(secret["stringData"]["token"].encode()).decode()
    assert base64.b64decode(stored).decode() == token
    job = server.get("jobs", spec.job_name, "default")
    assert token not in repr(job) and "secretKeyRef" in repr(job)
    assert token not in capsys.readouterr().out


def test_cluster_deploy_of_a_public_balancer_applies_the_proxy_config_the_pod_mounts(fake_cluster):
    """A public LoadBalancer puts an nginx proxy in the pod that mounts ConfigMap <name>-proxy: deploy must apply
    it (and every other object the pod template references), and the Service must target the proxy."""
    import threading

    from tke_playbook.manifests.plan import references
    from tke_playbook.specs.serving import ServiceType

    server, cluster = fake_cluster
    spec = cluster.serving.defaults("BAAI/bge-m3").replace(service_type=ServiceType.LOAD_BALANCER,
                                                           api_key_required=True)
    helper = threading.Thread(target=serve_when_applied, args=(server, spec, "vllm-bge-m3-6d5f-proxy"),
                              kwargs={"ip": "10.0.0.8"})
    helper.start()
    cluster.serving.deploy(spec, timeout=60)
    helper.join()
    deployment = server.get("deployments", spec.name, "default")
    plural = {"ConfigMap": "configmaps", "Secret": "secrets", "PersistentVolumeClaim": "persistentvolumeclaims"}
    for kind, name in references(deployment):
        if kind != "PersistentVolumeClaim":  # the PVC is made by 01_storage
            assert server.exists(plural[kind], name, "default"), f"{kind}/{name} referenced but not applied"
    target = server.get("services", spec.name, "default")["spec"]["ports"][0]["targetPort"]
    vllm = next(c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm")
    assert target not in {p["containerPort"] for p in vllm.get("ports", [])} and target != "http"


# --- the facade's shape ------------------------------------------------------------------------------------


def test_which_playbook_a_target_opens_is_fixed_not_a_registry_subclasses_fill(tmp_path):
    """No kernel-global registry: defining another playbook class must not change what from_env opens."""
    from tke_playbook.playbook import PLAYBOOKS, LocalPlaybook, Playbook

    class Other(LocalPlaybook):
        target = Target.LOCAL

    assert type(Playbook.from_env("local", root=tmp_path)) is LocalPlaybook
    with pytest.raises(TypeError):
        PLAYBOOKS[Target.LOCAL] = Other


def _private_calls_on_others(path: Path) -> list[str]:
    """``x.y._z`` / ``obj._z(...)``: a private name read on any object but ``self``/``cls`` (its own). IPython's
    display protocol (``_repr_html_``, names ending in ``_``) is public."""
    import ast

    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("_")
                and isinstance(node.ctx, ast.Load)
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_no_playbook_module_uses_another_objects_private_names():
    import tke_playbook.playbook as package

    folder = Path(package.__file__).parent
    found = [hit for path in sorted(folder.glob("*.py")) for hit in _private_calls_on_others(path)]
    assert not found, f"make these public (or move the code to the class that owns them): {found}"


def test_step_classes_get_what_they_use_through_their_constructors(tmp_path):
    """Every attribute a step class reads on ``self`` is one its classes define or their constructors set (the
    cluster downloads once used a ``kube`` only the class they were mixed into defined)."""
    import ast
    import inspect

    from tke_playbook.playbook import cluster, download_cluster, download_local, local

    classes = [local.LocalSite, local.LocalStorage, local.LocalServing, local.LocalEvaluation,
               download_local.LocalDownloads, cluster.ClusterSite, cluster.ClusterStorage, cluster.ClusterServing,
               cluster.ClusterEvaluation, download_cluster.ClusterDownloads]
    for cls in classes:
        ours = [k for k in cls.__mro__ if k.__module__.startswith("tke_playbook.")]
        trees = [ast.parse(inspect.getsource(k)) for k in ours]
        used = {n.attr for t in trees for n in ast.walk(t) if isinstance(n, ast.Attribute)
                and isinstance(n.value, ast.Name) and n.value.id == "self"}
        assigned = {n.attr for t in trees for n in ast.walk(t) if isinstance(n, ast.Attribute)
                    and isinstance(n.ctx, ast.Store) and isinstance(n.value, ast.Name) and n.value.id == "self"}
        defined = {name for klass in cls.__mro__ for name in vars(klass)}
        assert used <= assigned | defined, f"{cls.__name__} uses {sorted(used - assigned - defined)}"


def test_the_facade_composes_steps_instead_of_forwarding(tmp_path):
    """Issue 22 item 2: the playbook held a backend and forwarded 29 calls to it; now each step is an object of
    its target's class, reached directly (``pb.download.start``), and the playbook keeps only what spans steps."""
    from tke_playbook.playbook import ClusterPlaybook, LocalPlaybook, Playbook

    public = {n for n in dir(Playbook) if not n.startswith("_")}
    assert public == {"from_env", "target", "settings", "records", "reporter", "read_form", "running", "teardown"}
    for cls in (LocalPlaybook, ClusterPlaybook):
        assert {n for n in vars(cls) if not n.startswith("_")} == {"open"}  # they only choose the step classes
    pb = Playbook.from_env("local", root=tmp_path)
    assert {"site", "storage", "download", "serving", "evaluation"} <= set(vars(pb))


def test_the_local_endpoint_of_another_model_says_the_target_serves_one(pb):
    """``pb.serving.endpoint(model)`` is one call on both targets (the scorecard asks for each model): locally a model
    other than the one 03 deployed is refused with what to do, before any server starts."""
    pb.records.record_serving(pb.serving.defaults())
    with pytest.raises(InvalidSpecError, match="serves one model at a time"):
        pb.serving.endpoint("BAAI/bge-m3")
    assert pb.records.runs.servers() == []
