"""Issue 13, library side: the notebooks in any order - port 60000 across redeploys, one record of what runs shared
by every kernel, cleanup that sticks, no download of another model than the form says, stale endpoints, and the
tutorial's objects shown."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import textwrap
import time

import pytest

from fakes.localtarget import free_port, link_offline_model
from tke_playbook.errors import (BadRequestError, DownloadError, EndpointGoneError, IncompleteModelError,
                                 InvalidSpecError, NoDownloadError, NotDeployedError, PlanMismatchError, PlaybookError)
from tke_playbook.hostenv import port_is_free
from tke_playbook.playbook import ServiceEndpoint, default_max_model_len
from tke_playbook.playbook.runs import DownloadRecord, RunRegistry, ServerRecord, is_local_server, process_alive
from tke_playbook.podworker import progress
from tke_playbook.podworker.modelfolder import write_completion
from tke_playbook.specs.catalog import OFFLINE_MODEL

SMALL_ZH = "BAAI/bge-small-zh-v1.5"


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


# --- 1. the free-port check binds as the server does -------------------------------------------------------


def _time_wait_on(port: int) -> None:
    """Leave a connection of a stopped listener on ``port`` in TIME_WAIT (the listener's side closes first, as a
    server does after answering a ``Connection: close`` request such as a health check)."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen()
    client = socket.create_connection(("127.0.0.1", port))
    conn, _ = listener.accept()
    conn.close()
    client.recv(1)  # the FIN arrived
    client.close()
    listener.close()
    time.sleep(0.05)


def test_port_of_a_just_stopped_server_counts_as_free():
    port = free_port()
    _time_wait_on(port)
    plain = socket.socket()
    with pytest.raises(OSError):  # the precondition: a bind without SO_REUSEADDR fails in TIME_WAIT
        plain.bind(("127.0.0.1", port))
    plain.close()
    assert port_is_free(port)


def test_port_with_a_listener_is_busy():
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not port_is_free(sock.getsockname()[1])


# --- 2. the plan must be for the spec being launched --------------------------------------------------------


def test_launch_with_another_models_plan_is_refused_and_a_failed_plan_leaves_none(pb):
    pb.storage.create(pb.storage.defaults())
    minilm = pb.download.defaults(completions=2, parallelism=2)
    plan = pb.download.plan(minilm)
    small_zh = pb.download.defaults(SMALL_ZH, completions=2, parallelism=2)
    with pytest.raises(DownloadError, match="cannot be reached"):
        pb.download.plan(small_zh)  # offline: the plan cell fails
    with pytest.raises(PlanMismatchError, match="run the plan cell again"):
        pb.download.start(small_zh, plan)  # the old `plan` variable is still in the kernel
    with pytest.raises(NoDownloadError, match="plan cell"):
        pb.download.start(small_zh)
    with pytest.raises(NoDownloadError, match="plan cell"):
        pb.download.start(minilm)  # the last plan cell failed: its earlier plan is gone too
    with pytest.raises(NoDownloadError, match="plan cell failed"):
        pb.download.start(minilm, plan)  # even passed explicitly
    assert pb.records.runs.downloads() == []
    assert not (pb.storage.path("ai-model") / OFFLINE_MODEL).exists()


# --- 3. one record of what runs, checked on every read ------------------------------------------------------


def _server_record(pid: int, name: str = "vllm-x") -> ServerRecord:
    return ServerRecord(name=name, pid=pid, port=1, url="http://127.0.0.1:1", model=OFFLINE_MODEL,
                        served_model_name=OFFLINE_MODEL, spec={}, model_dir="/nowhere")


def test_records_of_dead_or_foreign_processes_are_dropped_on_read(tmp_path):
    runs = RunRegistry(tmp_path)
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    done.wait()
    runs.add_server(_server_record(done.pid, "vllm-dead"))
    runs.add_server(_server_record(os.getpid(), "vllm-not-a-server"))  # alive, but not the local server
    assert runs.servers() == []
    assert list((tmp_path / "servers").glob("*.json")) == []


def test_a_zombie_is_not_alive():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    time.sleep(0.5)  # exited, not yet collected by Popen
    assert not process_alive(child.pid)
    child.wait()


def test_a_download_whose_kernel_is_gone_reads_as_interrupted(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    runs = RunRegistry(tmp_path)
    runs.put_download(DownloadRecord(slug="m", model="m", spec={}, plan_id="p", shard_bytes=(1,), folder="f",
                                     kernel_pid=gone.pid, started_at=1.0))
    assert runs.download().current_status() == "interrupted"


KERNEL = textwrap.dedent("""
    import sys
    from tke_playbook.playbook import open_target

    pb = open_target("local")
    if sys.argv[1] == "deploy":
        print(pb.serving.deploy(pb.serving.defaults().replace(service_port=int(sys.argv[2]))).url, flush=True)
    elif sys.argv[1] == "endpoint":
        print(pb.serving.endpoint().url, flush=True)
    else:
        print(len(pb.teardown()), flush=True)
    sys.stdin.read()  # alive, like a JupyterLab kernel, until the test lets it go
""")


class Kernel:
    """Another notebook's kernel: a Python process running one facade call and staying alive."""

    def __init__(self, *call: str):
        self.process = subprocess.Popen([sys.executable, "-c", KERNEL, *call], stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.answer = self.process.stdout.readline().strip()
        if not self.answer:
            raise AssertionError(self.process.stderr.read())

    def close(self) -> None:
        self.process.stdin.close()
        self.process.wait(30)


@pytest.mark.slow
def test_any_kernel_order_keeps_one_server_on_the_port_and_cleanup_sticks(pb):
    """03 deploys in its own kernel; 04 finds that server from its kernel (starting nothing); 03 deploys again from
    this kernel and must replace the first server; 99 cleans up from a third kernel; 03 deploys again: the same port
    every time."""
    link_offline_model(pb)
    port = free_port()
    spec = pb.serving.defaults().replace(service_port=port)
    notebook_03 = Kernel("deploy", str(port))
    notebook_04 = Kernel("endpoint")
    try:
        started_by_03 = pb.records.runs.server(spec.name)
        assert notebook_04.answer == notebook_03.answer == started_by_03.url
        assert started_by_03.kernel_pid == notebook_03.process.pid and len(pb.records.runs.servers()) == 1
        first = ServiceEndpoint(started_by_03.url, spec.served_model_name, "local-process", pb.serving.api_key(spec))
        first.curl("hello")  # a connection the server closes first: TIME_WAIT on its port
        second = pb.serving.deploy(spec)  # 03 redeploys from another kernel: the first server must stop, the port stays
        assert not is_local_server(started_by_03.pid) and not second.note
        second.curl("hello")
        ours = pb.records.runs.server(spec.name)
        Kernel("teardown").close()  # 99 in a third kernel
        assert pb.running().empty and not is_local_server(ours.pid)
        with pytest.raises(EndpointGoneError, match="run 03_deploy_vllm"):
            second.curl("hello")
    finally:
        notebook_04.close()
        notebook_03.close()
    with pytest.raises(NotDeployedError, match="Nothing is deployed: run 03"):
        pb.serving.endpoint()  # nothing is started quietly
    assert pb.running().empty
    third = pb.serving.deploy(spec)  # cleanup kept the PVC and the model on it
    assert [_port(e.url) for e in (first, second, third)] == [port] * 3
    assert len(pb.running()) == 1


def test_after_cleanup_every_step_says_nothing_is_deployed(pb):
    pb.records.record_serving(pb.serving.defaults())  # 03 deployed (its server has stopped since)
    pb.teardown()
    for step in (pb.serving.endpoint, pb.serving.logs, pb.serving.diagnose, pb.evaluation.comparison_pair):
        with pytest.raises(NotDeployedError, match="run 03_deploy_vllm"):
            step()
    for step in (pb.download.progress, pb.download.wait, pb.download.verify):
        with pytest.raises(NoDownloadError, match="02_download_model"):
            step()
    assert pb.running().empty


def test_nothing_deployed_yet_is_an_error_not_a_quiet_start(pb):
    with pytest.raises(NotDeployedError, match="run 03_deploy_vllm"):
        pb.serving.endpoint()
    assert pb.running().empty


# --- 5. stale endpoint ---------------------------------------------------------------------------------------


def test_stale_endpoint_says_the_server_is_gone_and_what_to_run():
    endpoint = ServiceEndpoint(f"http://127.0.0.1:{free_port()}", OFFLINE_MODEL, "local-process", "k")
    with pytest.raises(EndpointGoneError, match="the server is gone: run 03_deploy_vllm"):
        endpoint.curl("hello")
    with pytest.raises(EndpointGoneError, match="the server is gone"):
        endpoint.client()


def test_an_over_long_input_says_to_shorten_it():
    import http.server
    import json
    import threading

    too_long = {"error": {"message": "This model's maximum context length is 256 tokens. However, you requested "
                                     "300 tokens in the input for embedding generation. Please reduce the length "
                                     "of the input.", "type": "BadRequestError", "param": None, "code": 400}}

    class Vllm(http.server.BaseHTTPRequestHandler):  # answers as vLLM 0.10.1 does to a too-long input
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            body = json.dumps(too_long).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Vllm)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = ServiceEndpoint(f"http://127.0.0.1:{server.server_port}", OFFLINE_MODEL, "local-process")
        with pytest.raises(BadRequestError, match="maximum context length is 256 tokens.*shorten the text"):
            endpoint.curl("word " * 300)
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("text", [pytest.param("", id="empty"), pytest.param("   \n", id="blank")])
def test_blank_text_is_refused_not_replaced(text):
    endpoint = ServiceEndpoint("http://127.0.0.1:1", OFFLINE_MODEL, "local-process")
    with pytest.raises(InvalidSpecError, match="empty"):
        endpoint.curl(text)


# --- 6. the tutorial's objects, and 03 following 02 ---------------------------------------------------------


def test_a_failed_deploy_on_an_unknown_pvc_creates_no_folder(pb):
    link_offline_model(pb)
    with pytest.raises(InvalidSpecError, match="PVC 'other-pvc' does not exist"):
        pb.serving.deploy(pb.serving.defaults().replace(pvc_name="other-pvc"))
    assert pb.storage.names() == ["ai-model"]


def test_deploy_of_a_model_not_downloaded_names_the_notebook(pb):
    pb.storage.create(pb.storage.defaults())
    with pytest.raises(IncompleteModelError, match="02_download_model|completion marker|does not exist"):
        pb.serving.deploy(pb.serving.defaults(SMALL_ZH))


def _record_download(pb, model: str, pvc: str, status: str, plan_id: str = "p1", started_at: float | None = None):
    spec = pb.download.defaults(model, completions=2, parallelism=2).__class__(
        model=model, source="huggingface", completions=2, parallelism=2, pvc=pvc)
    record = DownloadRecord(slug=spec.slug, model=spec.model, spec=spec.to_dict(), plan_id=plan_id,
                            shard_bytes=(300, 200), folder=str(pb.storage.path(pvc) / spec.model_path), status=status,
                            kernel_pid=os.getpid(), started_at=time.time() if started_at is None else started_at)
    pb.records.runs.put_download(record)
    return record


def test_serving_defaults_start_from_what_02link_offline_model(pb):
    _record_download(pb, SMALL_ZH, "models", "done")
    spec = pb.serving.defaults()
    assert (spec.model, spec.pvc_name, spec.max_model_len) == (SMALL_ZH, "models", 512)
    assert pb.serving.defaults("BAAI/bge-m3").max_model_len == 2048  # the tutorial's maxModelLen, within the limit


@pytest.mark.parametrize("model, expected", [pytest.param("intfloat/e5-mistral-7b-instruct", 2048, id="tutorial"),
                                             pytest.param(SMALL_ZH, 512, id="short-model"),
                                             pytest.param(OFFLINE_MODEL, 256, id="minilm")])
def test_max_model_len_follows_the_model(model, expected):
    assert default_max_model_len(model) == expected


def test_progress_right_after_a_relaunch_shows_no_earlier_shard_as_done(pb):
    earlier = time.time() - 60
    record = _record_download(pb, SMALL_ZH, "ai-model", "running", plan_id="same-plan")
    folder = record.folder
    progress.write_json(progress.plan_file(folder), {"plan_id": "same-plan", "files": [],
                                                     "shards": [[["a", 0, 300]], [["b", 0, 200]]]})
    for index, size in ((0, 300), (1, 200)):  # the previous run of the same plan finished both shards
        progress.write_json(progress.shard_file(folder, index), {"plan_id": "same-plan", "status": "done",
                                                                  "bytes_done": size, "updated": earlier})
    frame = pb.download.progress()
    assert frame["status"].tolist() == ["pending", "pending"] and frame["bytes_done"].tolist() == [0, 0]
    progress.write_json(progress.shard_file(folder, 0), {"plan_id": "same-plan", "status": "running",
                                                         "bytes_done": 100, "updated": time.time()})
    assert pb.download.progress()["status"].tolist() == ["running", "pending"]


def test_verify_reports_how_each_file_was_checked(pb):
    record = _record_download(pb, SMALL_ZH, "ai-model", "done")
    (pb.storage.path("ai-model") / SMALL_ZH).mkdir(parents=True)
    write_completion(record.folder, {"files": [
        {"path": "model.safetensors", "size": 5, "sha256": "a" * 64, "git_sha1": "c" * 40, "check": "sha256"},
        {"path": "config.json", "size": 3, "sha256": "b" * 64, "git_sha1": "d" * 40, "check": "git-sha1"}]})
    for name, size in (("model.safetensors", 5), ("config.json", 3)):
        (pb.storage.path("ai-model") / SMALL_ZH / name).write_bytes(b"x" * size)
    frame = pb.download.verify()
    assert dict(zip(frame["file"], frame["check"])) == {"model.safetensors": "sha256", "config.json": "git-sha1"}
    # each hash column says what it holds: the git blob sha1 the hub compared for config.json, never a sha256
    # under a "sha256" heading (issue 20)
    assert "sha256" not in frame.columns
    rows = {r["file"]: (r["algorithm"], r["hash"]) for r in frame.to_dict("records")}
    assert rows == {"model.safetensors": ("sha256", "a" * 16), "config.json": ("git-sha1", "d" * 16)}


def _plan(pb, model=SMALL_ZH, completions=3):
    from tke_playbook.podworker.planner import make_plan
    from tke_playbook.podworker.rules import RepoFile

    spec = pb.download.defaults(model, source="modelscope", completions=completions, parallelism=completions)
    files = [RepoFile(f"model-0000{i}-of-00004.safetensors", size, "c" * 64)
             for i, size in enumerate((4000, 1000, 1000, 1000), start=1)] + [RepoFile("config.json", 10, "d" * 64)]
    return spec, make_plan(spec, files)


def test_the_indexed_job_and_its_configmap_are_shown(pb):
    import yaml

    spec, plan = _plan(pb)
    docs = list(yaml.safe_load_all(pb.download.render(spec, plan)))
    assert [d["kind"] for d in docs] == ["ConfigMap", "Job"]
    job = docs[1]["spec"]
    assert (job["completionMode"], job["completions"], job["parallelism"]) == ("Indexed", 3, 3)
    table = pb.download.job_table(spec, plan)
    assert table["index"].tolist() == [0, 1, 2] and set(table["completionMode"]) == {"Indexed"}
    assert table["bytes"].sum() == plan.total_bytes
    other_spec, _ = _plan(pb, "BAAI/bge-m3")
    with pytest.raises(PlanMismatchError):
        pb.download.render(other_spec, plan)


def test_bytes_per_pod_chart_puts_the_tutorials_split_beside_ours(pb):
    from tke_playbook.plots.download import plot_bytes_per_pod

    spec, plan = _plan(pb)
    tutorial = pb.download.tutorial_plan(spec, plan)
    # the tutorial's split: safetensors cut by count, everything else on index 0
    assert tutorial.bytes_per_shard[0] == 4000 + 1000 + 10 and plan.imbalance < tutorial.imbalance
    fig = plot_bytes_per_pod(plan, tutorial=tutorial)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(label.startswith("tutorial (by file count)") for label in labels) and len(fig.axes[0].containers) == 2


def test_cfs_storage_class_with_vpc_subnet_and_zone(pb):
    import yaml

    spec = pb.storage.defaults("ai-model", vpc_id="vpc-abc12345", subnet_id="subnet-abc12345", zone="ap-guangzhou-3")
    docs = [d for d in yaml.safe_load_all(pb.storage.render(spec)) if d]
    storage_class = next(d for d in docs if d["kind"] == "StorageClass")
    assert storage_class["provisioner"] == "com.tencent.cloud.csi.cfs"
    assert {k: storage_class["parameters"][k] for k in ("vpcid", "subnetid", "zone")} == {
        "vpcid": "vpc-abc12345", "subnetid": "subnet-abc12345", "zone": "ap-guangzhou-3"}
    assert pb.storage.defaults("", vpc_id="", subnet_id="  ").creates_storage_class is False


def test_an_invalid_pvc_name_is_a_playbook_error(pb):
    with pytest.raises(InvalidSpecError, match="PVC name"):
        pb.storage.defaults("Other_PVC")
    with pytest.raises(PlaybookError):
        pb.storage.path("../escape")
