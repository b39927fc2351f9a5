"""The playbook's settings, read from the environment once: :meth:`Settings.from_env` (``open_target`` and the command
line call it) and handed down as values, so no lower layer reads ``os.environ`` for them.

    settings = Settings.from_env(os.environ)       # TKE_PLAYBOOK_TARGET, _HOME, _QUICK, _NAMESPACE, ...
    settings.home / "workflow-local.json"

What the machine says is read by :mod:`tke_playbook.hostenv` (the target by
:func:`~tke_playbook.hostenv.resolve_target`: ``cluster`` when a kubeconfig is found, else ``local``; the state
folder; the prices file); the settings only the playbook uses are read here, each by one rule: :func:`quick_mode`
is the one reading of ``TKE_PLAYBOOK_QUICK`` (the notebooks' parameters cells call it too).

Below the playbook, whatever keeps a file in the state folder takes it as ``home`` (the local server's log, an
interrupted run's requests, ``vllm bench serve`` JSON, the embedding cache) and whatever prices takes the table
(:meth:`Settings.node_prices`, :meth:`Settings.storage_prices`); the playbook's steps, the notebooks and the command line pass the settings'
values, so nothing lands in the environment's folder when the settings name another.
"""

from __future__ import annotations

import dataclasses
import os
from os import environ  # for the notebooks' parameters cells: environ.get(...), then quick_mode(...)
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..hostenv import DEFAULT_HOME, HOME_ENV, PRICES_ENV, STORAGE_PRICES_ENV, load_prices, resolve_target
from ..specs.prices import NodePrice
from ..specs.target import Target

if TYPE_CHECKING:  # pandas and the scorecard load only when the storage prices are asked for
    from ..scorecard.storage_prices import StoragePrice

QUICK_ENV = "TKE_PLAYBOOK_QUICK"
NAMESPACE_ENV = "TKE_PLAYBOOK_NAMESPACE"
OFFLINE_ENV = "TKE_PLAYBOOK_OFFLINE"
CONTEXT_ENV = "TKE_PLAYBOOK_CONTEXT"
DEFAULT_NAMESPACE = "default"
YES = ("1", "true", "yes", "on")


def quick_mode(value: object = "") -> bool:
    """The one reading of ``TKE_PLAYBOOK_QUICK``: True for 1/true/yes/on (any case), False otherwise ("false",
    "0", empty). ``value`` may already be a bool (papermill injects ``QUICK=True``)."""
    if isinstance(value, bool):
        return value
    return str(value or "").strip().lower() in YES


@dataclass(frozen=True)
class Settings:
    """What the environment says, as typed values: the target, the state folder (``home``), quick mode, the
    namespace, the node price file, whether to act offline (no hub reachable), the kubeconfig context and the
    storage price file."""

    target: Target
    home: Path
    quick: bool = False
    namespace: str = DEFAULT_NAMESPACE
    prices_file: Path | None = None
    offline: bool = False
    context: str | None = None
    storage_prices_file: Path | None = None

    def __post_init__(self):
        object.__setattr__(self, "target", Target(self.target))
        object.__setattr__(self, "home", Path(self.home))
        for name in ("prices_file", "storage_prices_file"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, Path(getattr(self, name)))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, target: str | Target | None = None,
                 context: str | None = None) -> Settings:
        """Read every setting once from ``environ`` (default ``os.environ``); ``target`` and ``context``, when
        given, win over the environment."""
        env = os.environ if environ is None else environ
        prices = env.get(PRICES_ENV, "").strip()
        storage_prices = env.get(STORAGE_PRICES_ENV, "").strip()
        return cls(target=resolve_target(target or None, env),
                   home=Path(env.get(HOME_ENV) or DEFAULT_HOME).expanduser(),
                   quick=quick_mode(env.get(QUICK_ENV)),
                   namespace=env.get(NAMESPACE_ENV, "").strip() or DEFAULT_NAMESPACE,
                   prices_file=Path(prices).expanduser() if prices else None,
                   offline=env.get(OFFLINE_ENV, "").strip() == "1",
                   context=context or env.get(CONTEXT_ENV, "").strip() or None,
                   storage_prices_file=Path(storage_prices).expanduser() if storage_prices else None)

    def replace(self, **changes) -> Settings:
        return dataclasses.replace(self, **changes)

    def node_prices(self) -> dict[str, NodePrice]:
        """The node price table these settings name: the illustrative defaults, with ``prices_file`` on top when
        set. The environment is not asked again (it was read once, by :meth:`from_env`): what the playbook's steps
        price with, and what a notebook hands the library (``plan_capacity(..., prices=pb.settings.node_prices())``)."""
        return load_prices(self.prices_file, environ={})

    def storage_prices(self) -> dict[str, StoragePrice]:
        """The storage price table these settings name (the defaults, ``storage_prices_file`` on top), read like
        :meth:`node_prices`: ``storage_price_table(prices=pb.settings.storage_prices())``."""
        from ..scorecard.storage_prices import load_storage_prices

        return load_storage_prices(self.storage_prices_file, environ={})

    def frontier_inputs(self, storage_prices=None) -> dict:
        """What a frontier takes from these settings, for both targets: the state folder, the node price table and
        the storage price table (``storage_prices``, a table the caller edited, wins over the settings' file)."""
        from ..scorecard.cost import price_table
        from ..scorecard.storage_prices import storage_price_table

        return {"home": self.home, "prices": price_table(prices=self.node_prices()),
                "storage_prices": storage_prices if storage_prices is not None else
                storage_price_table(prices=self.storage_prices())}
