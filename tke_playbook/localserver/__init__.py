"""The local target's vLLM-compatible embedding server on CPU.

``start_server(...)`` runs it as a subprocess and returns a :class:`LocalServer` (``.url``, ``.stop()``);
``tke-playbook serve`` / ``python -m tke_playbook.localserver`` run it in the foreground.
"""

from .process import LocalServer, start_server

__all__ = ["LocalServer", "start_server"]
