"""The root package is light and re-exports nothing: every public name has one path, its package (issue 22)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import tke_playbook


def test_the_root_exports_only_its_version():
    assert tke_playbook.__all__ == ["__version__"] and tke_playbook.__version__
    with pytest.raises(AttributeError):
        tke_playbook.ServingSpec  # noqa: B018 - from tke_playbook.specs import ServingSpec


def test_import_is_light():
    code = "import sys, tke_playbook; print(sorted({'torch', 'matplotlib', 'kubernetes'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_package_imported_under_another_name_is_the_package():
    # issue 22: `import tke_playbook.evaluate as ev` gave the function evaluate (re-exported at the root)
    code = ("import tke_playbook\n"
            "getattr(tke_playbook, 'evaluate', None)\n"
            "import tke_playbook.evaluate as ev\n"
            "import tke_playbook.cli.commands as commands\n"
            "import tke_playbook.kube.apply as apply\n"
            "print(type(ev).__name__, ev.ndcg_at_k.__name__, type(commands).__name__, type(apply).__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["module", "ndcg_at_k", "module", "module"]
