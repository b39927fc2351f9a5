"""What the notebooks show besides charts: settings tables, tidy result tables, notes and the generator-ceiling
warning of 06_benchmark."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.playbook import Level, Note, headroom_note, spec_table, tidy
from tke_playbook.specs.catalog import OFFLINE_MODEL
from tke_playbook.specs.serving import ServingChoices, resolve
from tke_playbook.specs.storage import StorageSpec


def _summary(*req_per_s: float) -> pd.DataFrame:
    return pd.DataFrame({"concurrency": [float(2 ** i) for i in range(len(req_per_s))],
                         "req_per_s": list(req_per_s), "p50_ms": [12.3456] * len(req_per_s)})


# --- notes ---------------------------------------------------------------------------------------------------


def test_note_renders_as_text_and_escaped_html():
    note = Note("latency < 5 ms & <b>fast</b>", Level.WARNING)
    assert str(note) == "Warning: latency < 5 ms & <b>fast</b>" and repr(note) == str(note)
    html = note._repr_html_()
    assert "&lt;b&gt;fast&lt;/b&gt;" in html and "<b>fast</b>" not in html and "Warning" in html


@pytest.mark.parametrize("text", [pytest.param("", id="empty"), pytest.param("   ", id="blank")])
def test_note_without_text_says_what_to_do(text):
    with pytest.raises(InvalidSpecError, match="needs text"):
        Note(text)


def test_note_level_by_value():
    assert Note("x", "ok").level is Level.OK
    with pytest.raises(ValueError):
        Note("x", "fatal")


# --- spec tables ---------------------------------------------------------------------------------------------


def test_spec_table_lists_every_setting_with_enums_by_value():
    table = spec_table(StorageSpec(pvc_name="models"))
    assert list(table.columns) == ["value"]
    assert table.loc["pvc_name", "value"] == "models"
    assert table.loc["reclaim_policy", "value"] == "Retain"  # the enum's value, not its repr
    assert table.loc["vpc_id", "value"] == "-" and table.loc["mount_options", "value"] == "-"
    assert "<" not in table.to_string()  # no <CfsStorageType.STANDARD: 'SD'> style reprs


def test_spec_table_picks_and_orders_fields():
    spec = resolve(ServingChoices(model=OFFLINE_MODEL, max_model_len=256))
    table = spec_table(spec, ["model", "name", "service_port"])
    assert list(table.index) == ["model", "name", "service_port"]
    assert table["value"].tolist() == [OFFLINE_MODEL, "vllm-all-minilm-l6-v2", "60000"]


def test_spec_table_unknown_field_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'model'"):
        spec_table(resolve(ServingChoices(model=OFFLINE_MODEL, max_model_len=256)), ["modle"])


@pytest.mark.parametrize("thing", [pytest.param({"a": 1}, id="dict"), pytest.param(StorageSpec, id="class")])
def test_spec_table_refuses_what_is_not_a_spec(thing):
    with pytest.raises(InvalidSpecError, match="needs a spec"):
        spec_table(thing)


# --- tidy tables ---------------------------------------------------------------------------------------------


def test_tidy_drops_empty_columns_rounds_and_shows_whole_numbers_as_integers():
    frame = pd.DataFrame({"concurrency": [1.0, 4.0], "requests": [30, 30], "req_per_s": [19.092413, 22.33654],
                          "server_p50_ms": [math.nan, math.nan], "p99_ms": [math.nan, 267.58]})
    out = tidy(frame)
    assert "server_p50_ms" not in out.columns and "p99_ms" in out.columns  # partly empty columns stay
    assert out["concurrency"].tolist() == [1, 4] and str(out["concurrency"].dtype) == "Int64"
    assert out["req_per_s"].tolist() == [19.1, 22.3]
    assert "server_p50_ms" in frame.columns and frame.loc[0, "req_per_s"] == 19.092413  # input untouched


def test_tidy_keeps_small_fractions_readable():
    out = tidy(pd.DataFrame({"error_rate": [0.05, 0.0], "p50_ms": [45.678, 12.0]}))
    assert out["error_rate"].tolist() == [0.05, 0.0] and out["p50_ms"].tolist() == [45.7, 12.0]


def test_tidy_keeps_text_columns_and_refuses_non_frames():
    out = tidy(pd.DataFrame({"model": ["a", "b"], "score": [12.3456, 50.5]}), digits=2)
    assert out["model"].tolist() == ["a", "b"] and out["score"].tolist() == [12.35, 50.5]
    with pytest.raises(InvalidSpecError, match="needs a DataFrame"):
        tidy([1, 2])


# --- the generator ceiling -----------------------------------------------------------------------------------


def test_headroom_warns_when_the_server_comes_within_half_of_the_generator():
    note = headroom_note(1000.0, _summary(100.0, 300.0), _summary(620.0))
    assert note.level is Level.WARNING and "620" in note.text and "1,000" in note.text


def test_headroom_is_ok_far_below_the_ceiling():
    note = headroom_note(50_000.0, _summary(20.8, 24.4), _summary(8.0))
    assert note.level is Level.OK and "24.4 req/s" in note.text and "under 1%" in note.text


def test_headroom_just_below_half_is_ok_and_at_half_warns():
    assert headroom_note(1000.0, _summary(499.0)).level is Level.OK
    assert headroom_note(1000.0, _summary(500.0)).level is Level.WARNING


@pytest.mark.parametrize("ceiling", [pytest.param(None, id="none"), pytest.param(0.0, id="zero"),
                                     pytest.param(math.nan, id="nan")])
def test_headroom_without_a_ceiling_says_to_measure_it(ceiling):
    note = headroom_note(ceiling, _summary(10.0))
    assert note.level is Level.WARNING and "measure_ceiling" in note.text


def test_headroom_without_results_is_a_plain_note():
    assert headroom_note(1000.0, pd.DataFrame(), None).level is Level.INFO


def test_an_embedding_answer_is_a_readable_summary_not_a_raw_dict():
    """Issue 20: 04 printed the answer as a dict with 'prompt_tokens_details': None. vLLM's EmbeddingResponse
    (OpenAI layout) holds model, data[].embedding and usage {prompt_tokens, total_tokens, completion_tokens,
    prompt_tokens_details}."""
    from tke_playbook.playbook import describe_embedding_answer

    answer = {"id": "embd-1", "object": "list", "created": 1, "model": "m",
              "data": [{"index": 0, "object": "embedding", "embedding": [0.6, -0.8, 0.0, 0.0, 0.0]}],
              "usage": {"prompt_tokens": 3, "total_tokens": 3, "completion_tokens": 0,
                        "prompt_tokens_details": None}}
    described = describe_embedding_answer(answer)
    assert isinstance(described, pd.DataFrame)
    value = described["value"].to_dict()
    assert value["served model"] == "m" and value["dimension"] == "5" and value["vectors"] == "1"
    assert value["length (L2 norm)"] == "1.0000 - normalised"
    assert value["first values"] == "+0.600, -0.800, +0.000, +0.000 (first 4 of 5)"
    assert value["tokens"] == "3 prompt tokens"
    shown = described.to_string()
    assert "None" not in shown and "details" not in shown and "..." not in shown  # nothing cut off, nothing empty
    with pytest.raises(InvalidSpecError, match="JSON object"):
        describe_embedding_answer("{}")

# --- 04's request text and the hardware a figure names ---------------------------------------------------------


def _deployed(tmp_path, target):
    """A playbook as 04 sees it after 03: a deployed spec and its key, nothing running."""
    from types import SimpleNamespace

    from tke_playbook.playbook import SecretStore
    from tke_playbook.specs.hardware import get_node_type
    from tke_playbook.specs.target import Target

    secrets = SecretStore(tmp_path)
    spec = resolve(ServingChoices(model=OFFLINE_MODEL, max_model_len=256))
    key = secrets.ensure(spec.api_key_secret)
    pb = SimpleNamespace(target=Target(target), secrets=secrets, deployed_spec=lambda model="": spec,
                         node_type=lambda: get_node_type("GN7.2XLARGE32"))
    return pb, spec, key


def _shell(line: str, path: str = "") -> str:
    import os
    import subprocess

    env = {"PATH": f"{path}:{os.environ['PATH']}" if path else os.environ["PATH"]}
    done = subprocess.run(["bash", "-c", f'{line}; printf %s "$VLLM_API_KEY"'], capture_output=True, text=True,
                          env=env, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_curl_text_fills_in_where_the_key_is_read_from_without_the_key(tmp_path):
    """Issue 20: 04 told the reader to fill in `vllm-<model>-api-key` themselves; the notebook knows the name."""
    from tke_playbook.playbook import ServiceEndpoint, api_key_source

    pb, spec, key = _deployed(tmp_path / "home", "local")
    line = api_key_source(pb)
    assert key not in line and spec.api_key_secret in line and "<" not in line
    assert _shell(line) == key  # the line, run in a shell, sets the variable to the real key
    endpoint = ServiceEndpoint("http://127.0.0.1:60000", OFFLINE_MODEL, "local-process", key)
    text = endpoint.curl_text("hello", key_from=line)
    assert text.splitlines()[0] == line and key not in text and '"Authorization: Bearer $VLLM_API_KEY"' in text
    with pytest.raises(InvalidSpecError, match="never hold it"):
        endpoint.curl_text("hello", key_from=f"export VLLM_API_KEY={key}")


def test_on_a_cluster_the_key_is_read_from_the_secret(tmp_path):
    """The Secret holds the key base64-encoded under data['api-key'] (Kubernetes Secret API)."""
    import base64

    from tke_playbook.playbook import api_key_source

    pb, spec, _ = _deployed(tmp_path / "home", "cluster")
    line = api_key_source(pb)
    assert f"kubectl get secret {spec.api_key_secret} -n {spec.namespace}" in line
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "kubectl").write_text("#!/bin/sh\nprintf %s " + base64.b64encode(b"from-the-secret").decode() + "\n")
    (fake / "kubectl").chmod(0o755)
    assert _shell(line, str(fake)) == "from-the-secret"


def test_figures_name_the_hardware_that_served(tmp_path):
    from tke_playbook.playbook import measured_on

    pb_local, _, _ = _deployed(tmp_path, "local")
    assert measured_on(pb_local).startswith("this machine's CPU (") and "cores), local server" in measured_on(pb_local)
    assert "GN7" not in measured_on(pb_local)  # locally the chosen node type served nothing
    pb_cluster, _, _ = _deployed(tmp_path, "cluster")
    assert measured_on(pb_cluster) == "GN7.2XLARGE32 (1 x T4)"
