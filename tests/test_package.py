"""The package re-exports its public names lazily: every listed name resolves, and importing the package does
not load the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tke_playbook


@pytest.mark.parametrize("name", tke_playbook.__all__)
def test_every_public_name_resolves(name):
    assert getattr(tke_playbook, name) is not None


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        tke_playbook.nope  # noqa: B018


def test_import_is_light():
    code = "import sys, tke_playbook; print(sorted({'torch', 'matplotlib', 'kubernetes'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
