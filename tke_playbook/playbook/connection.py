"""The cluster client of one playbook, connected on first use (so building a playbook needs no kubeconfig)."""

from __future__ import annotations

from collections.abc import Callable

from ..kube import Kube, connect


class KubeConnection:
    """One playbook's connection to the cluster. ``context`` picks the kubeconfig context; ``client`` is an
    already connected :class:`~tke_playbook.kube.Kube` (a test's fake API server, a caller's own connection);
    ``connect(kubeconfig, context)`` makes one on first use (default :func:`tke_playbook.kube.connect`)."""

    def __init__(self, context: str | None = None, client: Kube | None = None,
                 connect: Callable[[str | None, str | None], Kube] = connect):
        self.context = context
        self._client = client
        self._connect = connect

    @property
    def kube(self) -> Kube:
        """The client, connecting now if this is its first use."""
        if self._client is None:
            self._client = self._connect(None, self.context)
        return self._client
