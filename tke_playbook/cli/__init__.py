"""``tke-playbook``: the command line (``main``, from :mod:`tke_playbook.cli.commands`) and its subcommands - ``render``, ``download``/``verify``,
``preflight``, ``serve`` - plus ``python -m tke_playbook.cli.demo``, which runs every notebook for ``make demo``.
The top layer: it may import anything below it; nothing imports it."""

from .commands import main

__all__ = ["main"]
