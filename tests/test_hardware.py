"""GPUs, node types, nodes described from labels, and the fit check."""

from __future__ import annotations

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs.catalog import get_model
from tke_playbook.specs.fit import check_fit
from tke_playbook.specs.hardware import (GPUS, NODE_TYPES, GiB, MiB, NodeRole, get_gpu, get_node_type, gpu_from_product,
                                         node_type_from_labels)

E5 = "intfloat/e5-mistral-7b-instruct"


# --- catalog of GPUs and node types ------------------------------------------------------------------------


@pytest.mark.parametrize("name, nominal", [("L20", 48), ("L40", 48), ("L40S", 48), ("A10", 24), ("T4", 16),
                                           ("A100-40GB", 40), ("A100-80GB", 80), ("H20", 96), ("H800", 80),
                                           ("H100", 80), ("V100-32GB", 32)])
def test_known_gpus(name, nominal):
    gpu = get_gpu(name.lower())
    assert gpu.name == name and gpu.nominal_gb == nominal
    assert 0.9 * nominal * 1e9 < gpu.memory_bytes <= nominal * GiB  # driver-reported: a bit under nominal


def test_tutorial_node_types():
    gpu_node = get_node_type("pnv5b.8xlarge96")
    assert (gpu_node.name, gpu_node.gpu.name, gpu_node.gpu_count, gpu_node.role) == ("PNV5b.8XLARGE96", "L20", 1,
                                                                                      NodeRole.GPU)
    assert gpu_node.gpu.nominal_gb == 48 and gpu_node.cpu == 32 and gpu_node.memory_bytes == 96 * GiB
    download = get_node_type("SA5.LARGE8")
    assert (download.gpu, download.gpu_count, download.cpu, download.memory_bytes, download.role) == (
        None, 0, 4, 8 * GiB, NodeRole.DOWNLOAD)


def test_uncertain_node_types_say_so():
    unverified = [n for n in NODE_TYPES if not n.verified]
    assert unverified and all("not verified" in n.note for n in unverified)
    assert all(g.note for g in GPUS if not g.verified)


@pytest.mark.parametrize("name, hints", [pytest.param("A100", ("A100-40GB", "A100-80GB"), id="ambiguous-a100"),
                                         pytest.param("L2O", ("L20",), id="typo-l20")])
def test_unknown_gpu_suggests(name, hints):
    with pytest.raises(UnknownNameError, match="Did you mean") as info:
        get_gpu(name)
    assert set(hints) <= set(info.value.suggestions)


def test_unknown_node_type_suggests():
    with pytest.raises(UnknownNameError, match="Did you mean 'PNV5b.8XLARGE96'"):
        get_node_type("PNV5b.8XLARGE")


@pytest.mark.parametrize("product, memory, expected", [
    ("NVIDIA-L20", None, "L20"), ("NVIDIA-L40S", None, "L40S"), ("NVIDIA-L40", None, "L40"),
    ("Tesla-T4", None, "T4"), ("NVIDIA-A10", None, "A10"), ("NVIDIA-A100-SXM4-80GB", None, "A100-80GB"),
    ("NVIDIA-A100-PCIE-40GB", None, "A100-40GB"), ("NVIDIA-A100-SXM4", 81920, "A100-80GB"),
    ("NVIDIA-H20", None, "H20"), ("NVIDIA-H800", None, "H800"), ("NVIDIA-H100-80GB-HBM3", None, "H100"),
    ("Tesla-V100-SXM2-32GB", None, "V100-32GB"), ("NVIDIA-H200", None, None), ("NVIDIA-B200", None, None)])
def test_gpu_from_product_label(product, memory, expected):
    gpu = gpu_from_product(product, memory)
    assert (gpu.name if gpu else None) == expected


# --- nodes described from labels and allocatable -----------------------------------------------------------


def test_node_from_instance_type_only():
    node = node_type_from_labels({"node.kubernetes.io/instance-type": "PNV5b.8XLARGE96"},
                                 {"cpu": "31850m", "memory": "94Gi", "nvidia.com/gpu": "1"}, name="10.0.0.7")
    assert node.name == "10.0.0.7" and node.gpu.name == "L20" and node.gpu_count == 1
    assert node.cpu == pytest.approx(31.85) and node.memory_bytes == 94 * GiB


def test_node_gpu_from_feature_discovery_labels():
    labels = {"beta.kubernetes.io/instance-type": "SOMETHING.NEW", "nvidia.com/gpu.product": "NVIDIA-A10",
              "nvidia.com/gpu.memory": "23028"}
    node = node_type_from_labels(labels, {"cpu": "28", "memory": "110Gi", "nvidia.com/gpu": "2"})
    assert (node.name, node.gpu.name, node.gpu_count, node.role) == ("SOMETHING.NEW", "A10", 2, NodeRole.GPU)


def test_node_with_unknown_gpu_product_uses_its_memory_label():
    labels = {"nvidia.com/gpu.product": "NVIDIA-RTX-PRO-6000", "nvidia.com/gpu.memory": "97887"}
    node = node_type_from_labels(labels, {"nvidia.com/gpu": "1"})
    assert node.gpu.name == "NVIDIA-RTX-PRO-6000" and node.gpu.memory_bytes == 97887 * MiB
    assert not node.gpu.verified and "not in the toolkit's list" in node.note
    assert check_fit(E5, node, 2048).fits


def test_gpu_memory_label_with_a_unit():
    node = node_type_from_labels({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4", "nvidia.com/gpu.memory": "80Gi"},
                                 {"nvidia.com/gpu": "8"})
    assert node.gpu.name == "A100-80GB" and node.gpu.memory_bytes == 80 * GiB and node.gpu_count == 8


def test_node_with_gpus_but_no_model_says_what_to_do():
    node = node_type_from_labels({}, {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"}, name="gpu-1")
    assert node.gpu is None and node.gpu_count == 1 and "GPU feature discovery" in node.note


def test_qgpu_cores_count_as_gpus():
    node = node_type_from_labels({"node.kubernetes.io/instance-type": "PNV5b.8XLARGE96"},
                                 {"tke.cloud.tencent.com/qgpu-core": "100", "cpu": "32", "memory": "90Gi"})
    assert node.gpu_count == 1 and node.gpu.name == "L20"


def test_cpu_node_has_no_gpu():
    node = node_type_from_labels({"node.kubernetes.io/instance-type": "SA5.LARGE8"}, {"cpu": "3920m",
                                                                                       "memory": "6Gi"})
    assert node.gpu is None and node.gpu_count == 0 and node.role is NodeRole.DOWNLOAD
    with pytest.raises(InvalidSpecError, match="has no GPU"):
        check_fit(E5, node)


# --- the fit check -----------------------------------------------------------------------------------------


def test_e5_fits_l20_at_2048():
    verdict = check_fit(E5, "L20", max_model_len=2048)
    assert verdict.fits and verdict.gpu == "L20" and verdict.gpu_count == 1 and verdict.max_model_len == 2048
    assert verdict.usable_bytes == int(verdict.total_bytes * 0.9)
    assert verdict.weights_bytes == get_model(E5).params * 2
    assert verdict.kv_cache_bytes == 128 * 1024 * 2048  # 128 KiB per token, one full sequence
    assert verdict.headroom_bytes == verdict.usable_bytes - verdict.needed_bytes > 20 * GiB
    assert verdict.kv_capacity_sequences > 50
    assert verdict.summary().startswith(f"{E5} fits on 1 × L20 at max_model_len 2048")
    assert verdict.recommendation.startswith("Fits on L20")
    assert [r["item"] for r in verdict.as_rows()] == ["GPU memory", "usable", "weights", "KV cache (minimum)",
                                                     "activations", "runtime overhead", "headroom"]


def test_e5_does_not_fit_t4_and_says_what_to_do():
    verdict = check_fit(E5, "T4", max_model_len=2048)
    assert not verdict.fits and verdict.headroom_bytes < 0
    assert "does not fit" in verdict.summary()
    assert "Use A10" in verdict.recommendation and "tensor parallel 2" in verdict.recommendation
    assert any("no bfloat16" in note for note in verdict.notes)


def test_tensor_parallel_splits_weights():
    one, two = check_fit(E5, "T4", 2048), check_fit(E5, "T4", 2048, tensor_parallel=2)
    assert two.weights_bytes == one.weights_bytes // 2 and two.fits and two.gpu_count == 2


def test_node_type_is_accepted_and_limits_tensor_parallel():
    assert check_fit(E5, "PNV5b.8XLARGE96", 2048).fits
    with pytest.raises(InvalidSpecError, match="needs 2 GPUs but node type PNV5b.8XLARGE96 has 1"):
        check_fit(E5, get_node_type("PNV5b.8XLARGE96"), 2048, tensor_parallel=2)


def test_encoder_has_no_kv_cache():
    verdict = check_fit("BAAI/bge-m3", "T4", 8192)
    assert verdict.fits and verdict.kv_cache_bytes == 0 and "no KV cache" in verdict.recommendation


def test_long_context_suggests_shorter_length():
    verdict = check_fit("Qwen/Qwen3-Embedding-8B", "A10", 32768)
    assert not verdict.fits and "lower max_model_len to" in verdict.recommendation


def test_default_length_is_the_recommended_one():
    assert check_fit(E5, "L20").max_model_len == 4096


@pytest.mark.parametrize("kwargs, message", [
    pytest.param({"max_model_len": 40000}, "above intfloat/e5-mistral-7b-instruct's limit of 32768",
                 id="length-above-limit"),
    pytest.param({"max_model_len": 0}, "positive whole number", id="length-zero"),
    pytest.param({"gpu_memory_utilization": 1.5}, r"fraction in \(0, 1\]", id="utilization-above-one"),
    pytest.param({"tensor_parallel": 0}, "must be a whole number of at least 1", id="tp-zero"),
])
def test_bad_fit_arguments(kwargs, message):
    with pytest.raises(InvalidSpecError, match=message):
        check_fit(E5, "L20", **kwargs)


def test_unknown_gpu_or_model_in_fit():
    with pytest.raises(UnknownNameError, match="Unknown GPU or node type 'L21'"):
        check_fit(E5, "L21")
    with pytest.raises(UnknownNameError, match="Did you mean 'BAAI/bge-m3'"):
        check_fit("bge-m4", "L20")
