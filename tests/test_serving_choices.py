"""The user's serving choices and the resolved spec (issue 22, item 3): two types, one resolve function, nothing
written to a frozen spec, replace() without a hand-written list of derived fields, validation without building the
vLLM command line, and every spec to plain JSON and back."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import json
from pathlib import Path

import pytest

from tke_playbook.errors import InvalidSpecError
from tke_playbook.manifests.scaleout import ScaleOutSpec
from tke_playbook.specs import serving as serving_module
from tke_playbook.specs import vllm_args
from tke_playbook.specs.download import DownloadSpec
from tke_playbook.specs.embedjob import EmbedJobSpec
from tke_playbook.specs.serving import ServiceType, ServingChoices, ServingSpec, resolve, seed_profile
from tke_playbook.specs.storage import StorageSpec

ROOT = Path(__file__).resolve().parents[1]
BGE = "BAAI/bge-m3"
QWEN = "Qwen/Qwen3-Embedding-0.6B"
DERIVED = ("served_model_name", "pvc_path", "local_path", "name", "api_key_secret", "vllm_version",
           "max_num_batched_tokens", "cpu_request", "memory_request", "embedding_flag")


def test_choices_and_the_resolved_spec_are_two_types_with_the_same_settings():
    choices = ServingChoices()
    assert all(getattr(choices, name) is None for name in DERIVED)  # "derive it"
    spec = resolve(choices)
    assert type(spec) is ServingSpec and spec.choices is choices
    public = [f.name for f in dataclasses.fields(ServingSpec) if not f.name.startswith("_")]
    assert public == [f.name for f in dataclasses.fields(ServingChoices)]
    assert all(getattr(spec, name) is not None for name in DERIVED if name != "max_num_batched_tokens")


def test_resolution_fills_what_derives_from_the_model_the_image_and_the_gpus():
    spec = ServingChoices(model=BGE, image="vllm/vllm-openai:v0.12.0", gpu_count=2, tp_size=2).resolve()
    assert (spec.name, spec.api_key_secret, spec.served_model_name) == ("vllm-bge-m3", "vllm-bge-m3-api-key", BGE)
    assert (spec.pvc_path, spec.local_path) == (BGE, f"/data0/{BGE}")
    assert spec.vllm_version == "0.12.0"          # from the image tag
    assert spec.cpu_request == "8"                # 4 per GPU
    assert spec.max_num_batched_tokens >= spec.max_model_len  # an encoder: a step holds a whole sequence
    assert spec.service_type is ServiceType.CLUSTER_IP and spec.extra_args == ServingChoices().extra_args
    # a decoder-based embedder keeps vLLM's own token budget and needs the embedding-mode flag
    qwen = resolve(ServingChoices(model=QWEN, max_model_len=2048))
    assert qwen.max_num_batched_tokens is None and qwen.embedding_flag is True
    assert resolve(ServingChoices(model=BGE)).embedding_flag is False


def test_replace_derives_again_what_was_not_chosen_and_keeps_what_was():
    seed = seed_profile()
    bge = seed.replace(model=BGE)
    assert (bge.name, bge.api_key_secret, bge.pvc_path) == ("vllm-bge-m3", "vllm-bge-m3-api-key", BGE)
    assert bge.memory_request != seed.memory_request  # the weights differ
    assert seed.replace(image="vllm/vllm-openai:v0.33.0").vllm_version == "0.33.0"
    assert seed.replace(name="e5").api_key_secret == "e5-api-key"
    chosen = resolve(ServingChoices(model=BGE, name="team-bge", cpu_request="3"))
    again = chosen.replace(gpu_count=2, tp_size=2, max_model_len=512)
    assert (again.name, again.cpu_request) == ("team-bge", "3")  # chosen, so kept
    assert chosen.replace(name=None).name == "vllm-bge-m3"       # None: derive it again


def test_a_resolved_spec_is_always_what_its_choices_resolve_to():
    spec = seed_profile()
    with pytest.raises(InvalidSpecError, match=r"spec\.replace\(replicas=\.\.\.\)"):
        dataclasses.replace(spec, replicas=3)  # would keep the old choices: a later replace() would lose it
    with pytest.raises(InvalidSpecError, match="resolve needs ServingChoices"):
        resolve(spec)


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_nothing_writes_to_a_serving_spec_and_replace_lists_no_fields():
    tree = ast.parse((ROOT / "tke_playbook/specs/serving.py").read_text(encoding="utf-8"))
    writes = [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Call) and (
        (isinstance(n.func, ast.Attribute) and n.func.attr == "__setattr__")
        or (isinstance(n.func, ast.Name) and n.func.id in ("setattr", "object.__setattr__")))]
    assert not writes, f"specs/serving.py writes to an object at lines {writes}"
    replace = next(f for f in _functions(ast.parse(inspect.getsource(ServingSpec))) if f.name == "replace")
    names = {f.name for f in dataclasses.fields(ServingChoices)}
    listed = [n.value for n in ast.walk(replace) if isinstance(n, ast.Constant) and n.value in names]
    assert not listed, f"ServingSpec.replace names fields by hand: {listed}"


def test_resolution_checks_extra_args_without_building_the_command_line(monkeypatch):
    def no_command_line(*args, **kwargs):
        raise AssertionError("resolution built the vLLM command line")

    monkeypatch.setattr(vllm_args, "build_vllm_args", no_command_line)
    assert "vllm_args" not in {n.split(".")[-1] for n in _imported_modules(serving_module)}
    resolve(ServingChoices(model=BGE))
    with pytest.raises(InvalidSpecError, match="extra_args sets --port"):
        resolve(ServingChoices(model=BGE, extra_args=("--port 8000",)))
    with pytest.raises(InvalidSpecError, match=r"--enable-log-requests is not accepted by vLLM 0\.10\.0"):
        resolve(ServingChoices(model=BGE, vllm_version="0.10.0", extra_args=("--enable-log-requests",)))


def _imported_modules(module) -> set[str]:
    tree = ast.parse(inspect.getsource(module))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


def test_bad_choices_are_refused_when_built_in_one_line():
    with pytest.raises(InvalidSpecError) as refused:
        ServingChoices(replicas=0)
    assert "replicas 0 must be a whole number" in str(refused.value) and "\n" not in str(refused.value)
    with pytest.raises(InvalidSpecError, match="not a CIDR block"):
        ServingChoices(lb_source_ranges=("not-a-cidr",))
    with pytest.raises(InvalidSpecError, match="does not match the 1 GPU"):  # the whole: at resolution
        ServingChoices(tp_size=2).resolve()


@pytest.mark.parametrize("spec", [
    pytest.param(StorageSpec(pvc_name="models", size="50Gi", vpc_id="vpc-ab12", subnet_id="subnet-cd34",
                             zone="ap-guangzhou-3"), id="storage"),
    pytest.param(DownloadSpec(model=BGE, source="huggingface", completions=2, parallelism=1,
                              node_selector={"node.kubernetes.io/instance-type": "SA5.LARGE8"}), id="download"),
    pytest.param(ServingChoices(model=BGE, labels={"team": "a"}, service_type="LoadBalancer-internal",
                                lb_subnet_id="subnet-ab12", lb_source_ranges=("10.0.0.0/8",)), id="choices"),
    pytest.param(resolve(ServingChoices(model=BGE, env={"A": "1"}, name="bge")), id="serving"),
    pytest.param(EmbedJobSpec(corpus="docs", model=BGE, endpoint="http://vllm-bge-m3.default.svc:60000"),
                 id="embed-job"),
    pytest.param(ScaleOutSpec("hpa", min_replicas=1, max_replicas=3), id="scale-out"),
])
def test_every_spec_survives_plain_json(spec):
    data = json.loads(json.dumps(spec.to_dict()))
    back = type(spec).from_dict(data)
    assert back == spec and back.to_dict() == data


def test_a_serving_record_keeps_its_choices_so_a_reloaded_spec_derives_again():
    spec = resolve(ServingChoices(model=BGE, gpu="L20"))
    back = ServingSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert back.replace(model="BAAI/bge-large-zh-v1.5", max_model_len=512).name == "vllm-bge-large-zh-v1-5"
    # a record from before the split (every value, no choices) still loads, its values taken as chosen
    old = {k: v for k, v in spec.to_dict().items() if k != "choices"}
    assert ServingSpec.from_dict(old) == spec
    assert spec.to_dict()["name"] == "vllm-bge-m3"  # readers of the state file see the resolved names


def _layout_fields_set(path: Path) -> list[str]:
    layout = {"tp_size", "pp_size", "lws_group_size", "gpu_count"}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = [k.arg for n in ast.walk(tree) if isinstance(n, ast.Call) for k in n.keywords if k.arg in layout]
    found += [k.value for n in ast.walk(tree) if isinstance(n, ast.Dict) for k in n.keys
              if isinstance(k, ast.Constant) and k.value in layout]
    return found


@pytest.mark.parametrize("path", ["tke_playbook/playbook/widgets.py", "tke_playbook/cli/commands.py"])
def test_the_form_and_the_command_line_leave_the_layout_to_layout_changes(path):
    source = (ROOT / path).read_text(encoding="utf-8")
    assert "layout_changes(" in source
    assert not _layout_fields_set(ROOT / path), f"{path} sets layout fields itself instead of layout_changes"
