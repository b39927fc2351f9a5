"""Issue 20 items 7 and 8, issue 21 item 8: numbers outside what Kubernetes, vLLM or the node allow are refused in one
line naming the field and the allowed range - in the notebook forms (nothing is clamped behind the user's back) and
on the command line (exit code 2) - and one layout rule (GPUs per pod = tp × pp ÷ nodes) serves both.

Expectations come from upstream facts: a TCP port is 1-65535; Deployment/LeaderWorkerSet replicas are int32; a label
value is at most 63 characters of [A-Za-z0-9_.-]; vLLM's --gpu-memory-utilization is a fraction in (0, 1]; vLLM
refuses a tensor-parallel size that does not divide the model's attention heads ("Total number of attention heads
(16) must be divisible by tensor parallel size (3)", read from config.json); a pod cannot ask for more GPUs than
its node has.
"""

from __future__ import annotations

import html
import json

import pytest
import yaml

from tke_playbook.cli.commands import main
from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import offline_model_dir
from tke_playbook.playbook.widgets import DownloadForm, ServingForm
from tke_playbook.specs import DownloadSpec
from tke_playbook.specs.catalog import OFFLINE_MODEL, get_model, list_models
from tke_playbook.specs.fit import check_fit
from tke_playbook.specs.hardware import GPUS, get_node_type
from tke_playbook.specs.serving import layout_changes, seed_profile

HUGE = str(10**30)
L20_NODE = get_node_type("PNV5b.8XLARGE96")  # one L20
BGE = seed_profile().replace(model="BAAI/bge-m3")  # fits one L20: only the value under test is wrong


def _text(widget_html: str) -> str:
    return html.unescape(widget_html)


# --- the serving form: refuse, never clamp ----------------------------------------------------------------------


@pytest.mark.parametrize("box, value, words", [
    pytest.param("service_port", 70000, ["Service port 70000", "1–65535"], id="port-70000"),
    pytest.param("service_port", 0, ["Service port 0", "1–65535"], id="port-0"),
    pytest.param("replicas", 0, ["replicas 0", "from 1 to 2,147,483,647"], id="replicas-0"),
    pytest.param("gpu_memory_utilization", 1.5, ["gpu_memory_utilization 1.5", "(0, 1]"], id="utilization-1.5"),
    pytest.param("gpu_memory_utilization", 0.0, ["gpu_memory_utilization 0.0", "(0, 1]"], id="utilization-0"),
    pytest.param("nodes", 0, ["nodes (lwsGroupSize) 0", "at least 1"], id="nodes-0"),
])
def test_serving_form_refuses_out_of_range_numbers_and_keeps_what_was_typed(box, value, words):
    form = ServingForm(BGE, ["ai-model"], L20_NODE)
    assert "Valid." in form.message.value
    getattr(form, box).value = value
    assert getattr(form, box).value == value, "the box changed the number behind the user's back"
    message = _text(form.message.value)
    assert all(w in message for w in words) and "Valid." not in message, message
    with pytest.raises(InvalidSpecError):
        form.spec()


def test_tp_3_on_a_one_gpu_node_is_refused_never_valid_and_never_asks_for_3_gpus():
    form = ServingForm(BGE, ["ai-model"], L20_NODE)
    form.tp_size.value = 3
    message = _text(form.message.value)
    assert "Valid." not in message and form.message.value.count("<div") == 1, message
    assert form.model.verdict_html.value == ""  # one red line, not a red verdict above a green "Valid."
    with pytest.raises(InvalidSpecError):
        form.spec()


@pytest.mark.parametrize("tp", [2, 3, 5])
def test_tp_that_does_not_fit_the_node_or_the_heads_is_refused(tp):
    form = ServingForm(BGE, ["ai-model"], L20_NODE)
    form.tp_size.value = tp
    with pytest.raises(InvalidSpecError) as refused:
        form.spec()
    assert "tpSize" in str(refused.value) and "tp_size" not in str(refused.value)  # the box's name


def test_the_form_and_the_command_line_share_one_layout_rule(capsys):
    """GPUs per pod = tp × pp ÷ nodes, whichever way the layout is given."""
    for tp, nodes in ((1, 1), (2, 1), (2, 2), (4, 2), (8, 4)):
        form = ServingForm(seed_profile(), ["ai-model"])
        form.tp_size.value, form.nodes.value = tp, nodes
        spec = form.spec()
        assert (spec.tp_size, spec.lws_group_size, spec.gpu_count) == (tp, nodes, tp // nodes)
        assert main(["render", "--tp", str(tp), "--nodes", str(nodes)]) == 0
        docs = [d for d in yaml.safe_load_all(capsys.readouterr().out) if d]
        workload = next(d for d in docs if d["kind"] in ("Deployment", "LeaderWorkerSet"))
        text = json.dumps(workload)
        assert f'"nvidia.com/gpu": "{tp // nodes}"' in text, (tp, nodes)
        assert layout_changes(seed_profile(), tp=tp, nodes=nodes)["gpu_count"] == tp // nodes


def test_layout_that_does_not_split_evenly_is_refused_in_both():
    with pytest.raises(InvalidSpecError, match="does not split evenly over 2 nodes"):
        layout_changes(seed_profile(), tp=3, nodes=2)
    form = ServingForm(seed_profile())
    form.tp_size.value, form.nodes.value = 4, 3
    assert "does not split evenly over 3 nodes" in _text(form.message.value)


# --- the download form ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [1000, 65, 0, -1])
def test_download_form_refuses_completions_outside_1_to_64_without_clamping(value):
    form = DownloadForm(DownloadSpec(model=OFFLINE_MODEL, source="huggingface", completions=3, parallelism=1))
    form.completions.value = value
    assert form.completions.value == value
    assert f"Completions {value} must be a whole number from 1 to 64" in _text(form.message.value)
    with pytest.raises(InvalidSpecError, match="from 1 to 64"):
        form.spec()


# --- the command line: one line, exit code 2 (issue 21 item 8) ----------------------------------------------------


@pytest.mark.parametrize("argv, words", [
    pytest.param(["render", "--gpus", HUGE], "is more GPUs than one node has (at most 8)", id="gpus-1e30"),
    pytest.param(["render", "--gpus", "9"], "is more GPUs than one node has (at most 8)", id="gpus-9"),
    pytest.param(["render", "--replicas", HUGE], "must be a whole number from 1 to 2,147,483,647", id="replicas-1e30"),
    pytest.param(["render", "--replicas", str(2**31)], "from 1 to 2,147,483,647", id="replicas-int32-overflow"),
    pytest.param(["render", "--instance-type", ""], "node instance type '' is empty", id="instance-type-empty"),
    pytest.param(["render", "--instance-type", "bad type"], "node instance type value 'bad type'",
                 id="instance-type-space"),
    pytest.param(["render", "--instance-type", "x" * 64], "at most 63 characters", id="instance-type-64"),
    pytest.param(["render", "--instance-type", "GN7.2XLARGE32", "--gpus", "2", "--gpu", "T4"],
                 "node type GN7.2XLARGE32 has 1", id="gpus-above-the-pinned-node"),
    pytest.param(["fit", "BAAI/bge-m3", "--gpu", "L20", "--tensor-parallel", HUGE],
                 "does not divide bge-m3's 16 attention heads", id="fit-tp-1e30"),
    pytest.param(["fit", "BAAI/bge-m3", "--gpu", "L20", "--tensor-parallel", "3"],
                 "does not divide bge-m3's 16 attention heads", id="fit-tp-3"),
    pytest.param(["fit", "BAAI/bge-m3", "--gpu", "PNV5b.8XLARGE96", "--tensor-parallel", "2"],
                 "needs 2 GPUs but node type PNV5b.8XLARGE96 has 1", id="fit-tp-2-on-one-gpu-node"),
])
def test_command_line_refuses_impossible_numbers_in_one_line(capsys, argv, words):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out
    assert len(err.strip().splitlines()) == 1 and words in err, err


def test_a_pinned_instance_type_renders_as_the_label_value_it_is(capsys):
    assert main(["render", "--instance-type", "PNV5b.8XLARGE96"]) == 0
    text = capsys.readouterr().out
    assert "node.kubernetes.io/instance-type" in text and "- PNV5b.8XLARGE96" in text


# --- the tensor-parallel rule comes from the model's config.json --------------------------------------------------


def test_attention_heads_of_the_offline_model_are_its_config_json():
    config = json.loads((offline_model_dir() / "config.json").read_text())
    assert get_model(OFFLINE_MODEL).num_attention_heads == config["num_attention_heads"]
    assert all(m.num_attention_heads > 0 for m in list_models())


def test_every_accepted_tensor_parallel_divides_the_heads():
    for info in list_models():
        for tp in range(1, 40):
            try:
                check_fit(info, "H100", min(512, info.max_tokens), tensor_parallel=tp)
            except InvalidSpecError:
                assert info.num_attention_heads % tp, (info.hf_id, tp)
            else:
                assert info.num_attention_heads % tp == 0, (info.hf_id, tp)


# --- the fit verdict's parts add up to its total -------------------------------------------------------------------


def test_fit_summary_parts_add_up_to_the_total_as_shown():
    import re

    for info in list_models():
        for gpu in GPUS:
            summary = check_fit(info, gpu, min(512, info.max_tokens)).summary()
            needs = float(re.search(r"needs about ([0-9.]+) of", summary).group(1))
            parts = [float(x) for x in re.findall(r"(?:weights|KV cache|runtime) ([0-9.]+)", summary)]
            assert len(parts) == 3 and round(sum(parts), 2) == needs, summary
            assert parts[0] > 0 or info.params * 2 < 2**30 * 0.005, summary  # 45 MB of weights is not "0.0"
