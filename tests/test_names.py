"""Kubernetes names, quantities, ports, slugs and did-you-mean."""

from __future__ import annotations

import re

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs.names import (quantity_to_float, slug, suggest, unknown, validate_label, validate_name,
                                      validate_port, validate_quantity, validate_subdomain)


@pytest.mark.parametrize("value", ["ai-model", "a", "vllm-e5-mistral-7b-instruct", "x" * 63, "0abc"])
def test_valid_names(value):
    assert validate_name(value, "PVC name") == value


@pytest.mark.parametrize("value, message", [
    pytest.param("AI_Model", "PVC name 'AI_Model' is not a valid Kubernetes name: use lowercase letters, digits "
                 "and '-'", id="uppercase-underscore"),
    pytest.param("-model", "not a valid Kubernetes name", id="leading-dash"),
    pytest.param("model-", "not a valid Kubernetes name", id="trailing-dash"),
    pytest.param("a.b", "not a valid Kubernetes name", id="dot-in-label"),
    pytest.param("x" * 64, "is 64 characters long: Kubernetes allows at most 63", id="too-long"),
    pytest.param("", "must be a non-empty string", id="empty"),
    pytest.param(None, "must be a non-empty string", id="none"),
])
def test_invalid_names(value, message):
    with pytest.raises(InvalidSpecError, match=message) as info:
        validate_name(value, "PVC name")
    assert info.value.field == "PVC name" and info.value.value == value


def test_subdomains_allow_dots():
    assert validate_subdomain("cfs.tencent", "StorageClass name") == "cfs.tencent"
    with pytest.raises(InvalidSpecError, match="'CFS' is not a valid Kubernetes name"):
        validate_subdomain("CFS", "StorageClass name")


@pytest.mark.parametrize("value, number", [("100Gi", 100 * 2**30), ("15Gi", 15 * 2**30), ("500m", 0.5),
                                           ("2", 2), (3, 3), ("1.5k", 1500), ("1e3", 1000), ("64Mi", 64 * 2**20)])
def test_quantities(value, number):
    assert validate_quantity(value, "size") == str(value)
    assert quantity_to_float(value) == pytest.approx(number)


@pytest.mark.parametrize("value", ["100GB", "lots", "", "1.2.3Gi", "Gi", None, "10 Gi"])
def test_malformed_quantities(value):
    with pytest.raises(InvalidSpecError, match="is not a Kubernetes quantity"):
        validate_quantity(value, "PVC size")


@pytest.mark.parametrize("value", [1, 60000, 65535])
def test_valid_ports(value):
    assert validate_port(value) == value


@pytest.mark.parametrize("value", [0, -1, 65536, "80", True, 8.0])
def test_ports_outside_range(value):
    with pytest.raises(InvalidSpecError, match="outside 1–65535"):
        validate_port(value, "service port")


@pytest.mark.parametrize("text, expected", [("BAAI/bge-m3", "bge-m3"),
                                            ("intfloat/e5-mistral-7b-instruct", "e5-mistral-7b-instruct"),
                                            ("BAAI/bge-large-zh-v1.5", "bge-large-zh-v1-5"),
                                            ("Qwen/Qwen3-Embedding-0.6B", "qwen3-embedding-0-6b"),
                                            ("___", "model")])
def test_slug(text, expected):
    assert slug(text) == expected
    validate_name(slug(text), "slug")


def test_slug_respects_length():
    assert len(slug("org/" + "a-" * 50, max_length=40)) <= 40


def test_suggest_and_unknown():
    assert "bge-m3" in suggest("bge-m4", ["BAAI/bge-m3", "bge-m3"])
    error = unknown("GPU", "L2O", ["L20", "L40", "T4"])
    assert isinstance(error, UnknownNameError) and isinstance(error, LookupError)
    assert str(error).startswith("Unknown GPU 'L2O'. Did you mean 'L20'")
    assert str(unknown("GPU", "zzz", ["L20", "T4"])) == "Unknown GPU 'zzz'. Known: L20, T4."


@pytest.mark.parametrize("key, value, message", [
    pytest.param("team", "search", None, id="plain"),
    pytest.param("example.com/team", "", None, id="prefixed-empty-value"),
    pytest.param("Example.com/team", "x", "label prefix in 'Example.com/team'", id="prefix-uppercase"),
    pytest.param("-team", "x", "label key '-team' is not valid", id="key-leading-dash"),
    pytest.param("t" * 64, "x", "is not valid: use letters", id="key-too-long"),
    pytest.param("team", "a b", "label value 'a b' for 'team' is not valid", id="value-space"),
    pytest.param("team", "v" * 64, "at most 63 characters", id="value-too-long"),
])
def test_validate_label(key, value, message):
    if message is None:
        assert validate_label(key, value) is None
    else:
        with pytest.raises(InvalidSpecError, match=re.escape(message)):
            validate_label(key, value)


@pytest.mark.parametrize("value, kwargs, expected", [
    pytest.param(float("nan"), {}, "positive number", id="nan"),
    pytest.param(float("inf"), {}, "positive number", id="inf"),
    pytest.param(True, {}, "positive number", id="bool"),
    pytest.param("3", {}, "positive number", id="string"),
    pytest.param(0, {}, "positive number", id="zero"),
    pytest.param(2.5, {"whole": True}, "positive whole number", id="not-whole"),
    pytest.param(0.5, {"minimum": 1.0, "strict": False}, "at least 1", id="below-minimum"),
])
def test_validate_number_refuses_with_what_to_do(value, kwargs, expected):
    from tke_playbook.specs.names import validate_number

    with pytest.raises(InvalidSpecError, match=expected) as caught:
        validate_number(value, "rate", 2.0, **kwargs)
    assert "such as 2.0" in str(caught.value)


def test_validate_number_returns_int_for_whole_and_float_otherwise():
    from tke_playbook.specs.names import validate_number

    assert validate_number(3.0, "inputs", 32, whole=True) == 3 and isinstance(
        validate_number(3.0, "inputs", 32, whole=True), int)
    assert validate_number(1, "peak_factor", 1.5, minimum=1.0, strict=False) == 1.0
