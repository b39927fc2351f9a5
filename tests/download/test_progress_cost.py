"""Large repositories (issue 21, item 7): a 20,013-file listing crawled at ~15 files/s because every progress poll
re-read one record per file and every finished piece rewrote (and every shard re-read) a state listing every
piece. These tests count what is read and written, not how long it takes (timings live in
benchmarks/bench_verify.py): a poll reads the shards' small states, a worker writes its state a bounded number of
times, and connections to the hub are kept alive."""

from __future__ import annotations

import builtins
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from fakes.hub import FakeHub
from hubfiles import FAST, REPO, make_repo

from tke_playbook.download import plan_download, run_local_download
from tke_playbook.errors import HubError
from tke_playbook.podworker import progress, transfer, worker
from tke_playbook.specs.download import DownloadSpec

MANY = {f"d{i % 7}/f{i}.json": 100 + i for i in range(240)}


@pytest.fixture
def many_hub(tmp_path):
    with FakeHub({REPO: make_repo(tmp_path / "many", MANY)}) as hub:
        yield hub


def _count_opens(monkeypatch) -> list:
    opened = []
    real_os_open, real_open = os.open, builtins.open
    monkeypatch.setattr(os, "open", lambda path, *a, **k: opened.append(str(path)) or real_os_open(path, *a, **k))
    monkeypatch.setattr(builtins, "open", lambda path, *a, **k: opened.append(str(path)) or real_open(path, *a, **k))
    return opened


def test_a_progress_poll_reads_the_shards_not_the_files(many_hub, tmp_path, monkeypatch):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=many_hub.url)
    folder = run_local_download(spec, plan_download(spec), tmp_path / "pvc", poll_s=0.05, worker_args=FAST)
    first = progress.read_progress(folder)
    assert first["files_verified"] == first["files_total"] == len(MANY) and sum(first["checks"].values()) == len(MANY)
    opened = _count_opens(monkeypatch)
    again = progress.read_progress(folder)  # what the command line and the notebook do twice a second
    monkeypatch.undo()
    assert again == first
    shards = len(first["shards"])
    assert len(opened) <= shards + 2, opened  # each shard's small state and the marker, never a record per file
    assert not [p for p in opened if "/verified/" in p]


def test_a_worker_writes_and_reads_its_state_a_bounded_number_of_times(many_hub, tmp_path, monkeypatch):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=many_hub.url, completions=2, parallelism=2)
    plan = plan_download(spec).to_dict()
    monkeypatch.setattr(worker, "SAVE_EVERY_S", 1e9, raising=False)  # only the saves that must happen
    monkeypatch.setattr(worker, "PIECES_EVERY_S", 1e9, raising=False)
    writes, reads = [], []
    real_write, real_read = progress.write_json, progress.read_json
    monkeypatch.setattr(progress, "write_json",
                        lambda path, obj, **k: writes.append(path) or real_write(path, obj, **k))
    monkeypatch.setattr(progress, "read_json", lambda path: reads.append(path) or real_read(path))
    for index in (0, 1):
        worker.run({"plan": plan}, tmp_path / "pvc", index, run_id="one-run", retries=2, backoff=0.01)
    parts = lambda paths: [p for p in paths if p.parent.name == "parts"]  # noqa: E731
    assert len(plan["files"]) == len(MANY) and len(parts(writes)) <= 12 and len(parts(reads)) <= 12, \
        (len(parts(writes)), len(parts(reads)))
    summary = progress.read_progress(tmp_path / "pvc" / REPO)
    assert summary["complete"] and summary["files_verified"] == len(MANY)


def test_the_shards_count_every_file_once_while_the_download_runs(many_hub, tmp_path):
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=many_hub.url, completions=3, parallelism=3)
    seen = []
    run_local_download(spec, plan_download(spec), tmp_path / "pvc", poll_s=0.02, worker_args=FAST,
                       on_progress=lambda s: seen.append(s["files_verified"]))
    assert all(0 <= n <= len(MANY) for n in seen) and seen == sorted(seen) and seen[-1] == len(MANY)


# --- the hub connection: kept alive, the token never carried to another host ------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    seen: list
    connections: list
    redirect_to: str | None = None

    def setup(self):
        super().setup()
        self.connections.append(self.client_address)

    def do_GET(self):
        self.seen.append((self.path, self.headers.get("Authorization")))
        if self.redirect_to and self.path.startswith("/hop"):
            self.send_response(302)
            self.send_header("Location", self.redirect_to + self.path.replace("/hop", "/file", 1))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b"x" * 100
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def _server(redirect_to=None):
    handler = type("H", (_Recorder,), {"seen": [], "connections": [], "redirect_to": redirect_to})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server, handler, f"http://127.0.0.1:{server.server_address[1]}"


def test_requests_to_one_hub_share_a_kept_alive_connection():
    server, handler, url = _server()
    try:
        for i in range(20):
            with transfer.open_url(f"{url}/file{i}", {"Authorization": "Bearer tok"}, 10) as resp:
                assert resp.status == 200 and resp.read() == b"x" * 100
        assert len(handler.seen) == 20 and len(handler.connections) == 1
    finally:
        server.shutdown()


def test_a_redirect_to_another_host_drops_the_token_and_one_to_the_same_host_keeps_it():
    other, other_handler, other_url = _server()
    hub, hub_handler, hub_url = _server(redirect_to=other_url)
    try:
        with transfer.open_url(f"{hub_url}/hop/a", {"Authorization": "Bearer tok", "Cookie": "m=1"}, 10) as resp:
            assert resp.read() == b"x" * 100
        assert hub_handler.seen == [("/hop/a", "Bearer tok")] and other_handler.seen == [("/file/a", None)]
        hub_handler.redirect_to = hub_url  # a relative hop on the same host keeps it
        with transfer.open_url(f"{hub_url}/hop/b", {"Authorization": "Bearer tok"}, 10) as resp:
            resp.read()
        assert hub_handler.seen[-1] == ("/file/b", "Bearer tok")
        hub_handler.redirect_to = "file:///etc/passwd#"
        with pytest.raises(HubError, match="only http and https"):
            transfer.open_url(f"{hub_url}/hop/c", {}, 10)
    finally:
        hub.shutdown()
        other.shutdown()


def test_the_workers_fetches_reuse_one_connection(tmp_path):
    server, handler, url = _server()
    opts = SimpleNamespace(timeout=10, retries=1, backoff=0.01, max_backoff=0.01, index=0)
    try:
        for i in range(10):
            fd = os.open(tmp_path / f"f{i}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                transfer.fetch(f"{url}/file{i}", {}, fd, 0, 100, 100, opts, f"f{i}", "main", lambda pos, fd: None)
            finally:
                os.close(fd)
            assert (tmp_path / f"f{i}").read_bytes() == b"x" * 100
        assert len(handler.seen) == 10 and len(handler.connections) == 1
    finally:
        server.shutdown()


def test_a_verification_record_is_written_only_once_its_bytes_are_durable(many_hub, tmp_path, monkeypatch):
    # one fsync per small file made 20,000 files crawl, so the records wait for one sync of the file system per
    # batch; a record is trusted on a rerun without hashing again, so it must never come before that sync
    spec = DownloadSpec(model=REPO, source="huggingface", endpoint=many_hub.url, completions=1, parallelism=1)
    plan = plan_download(spec).to_dict()
    events = []
    real_fetch, real_record, real_fsync = worker.fetch_file, worker._record, os.fsync
    real_syncfs = worker.sync_file_system

    def fetch_file(plan, f, *args, **kw):
        real_fetch(plan, f, *args, **kw)
        events.append(("fetched", f["path"]))

    def record(folder, f, *args, **kw):
        events.append(("record", f["path"]))
        real_record(folder, f, *args, **kw)

    def synced(real):
        return lambda arg: (events.append(("sync", None)), real(arg))[1]

    monkeypatch.setattr(worker, "fetch_file", fetch_file)
    monkeypatch.setattr(worker, "_record", record)
    monkeypatch.setattr(worker, "sync_file_system", synced(real_syncfs))
    monkeypatch.setattr(os, "fsync", synced(real_fsync))
    monkeypatch.setattr(worker.Durability, "BATCH", 16)
    worker.run({"plan": plan}, tmp_path / "pvc", 0, run_id="one", retries=2, backoff=0.01)
    fetched = {path: i for i, (what, path) in enumerate(events) if what == "fetched"}
    syncs = [i for i, (what, _) in enumerate(events) if what == "sync"]
    records = [(i, path) for i, (what, path) in enumerate(events) if what == "record" and path in fetched]
    assert len(records) == len(MANY)
    for at, path in records:
        assert any(fetched[path] < s < at for s in syncs), path
    assert len(syncs) < len(MANY) / 4  # batched: not one sync per file
