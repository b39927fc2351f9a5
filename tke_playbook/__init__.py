"""tke-playbook: from an empty TKE cluster to a running vLLM embedding service - and the same steps on this machine.

Each public name has one documented path: its package, which lists it in ``__all__`` (``from tke_playbook.specs
import ServingSpec``, ``from tke_playbook.playbook import open_target``), or - for a package without such a list
(``podworker``) and for the modules at this level (``errors``, ``hostenv``) - its module. Nothing is re-exported
here, and no package re-exports another's names (``tests/test_faces.py`` holds both), so ``import tke_playbook`` loads
nothing but this line and ``tke_playbook.evaluate`` is always the package.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
