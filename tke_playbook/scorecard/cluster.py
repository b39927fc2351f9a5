"""The scorecard's cluster side: clients for models deployed by notebook 03 (Service ``vllm-<slug>``, API key in
Secret ``vllm-<slug>-api-key``), found through the Kubernetes API - a load balancer's address or a port-forward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..embed.http import EmbeddingClient
from ..errors import InvalidSpecError
from ..specs.catalog import get_model
from ..specs.names import slug

if TYPE_CHECKING:  # the local path never loads the Kubernetes client
    from ..kube import Kube


def service_name(model: str) -> str:
    return f"vllm-{slug(get_model(model).hf_id)}"


def deployed_embedders(kube: Kube, namespace: str, models: Sequence[str], *, port: int | None = None,
                       **client_options) -> list[EmbeddingClient]:
    """One :class:`~tke_playbook.embed.http.EmbeddingClient` per deployed model (catalog prompts applied); any
    port-forward stays open while the client lives (``client.endpoint.close()`` ends it)."""
    from ..kube import get_endpoint, read_api_key  # late: local scorecards never load the Kubernetes client

    if not models:
        raise InvalidSpecError("name the deployed models to compare, e.g. ['BAAI/bge-m3', "
                               "'intfloat/e5-mistral-7b-instruct']", field="models", value=models)
    clients = []
    for model in models:
        info = get_model(model)
        name = service_name(info.hf_id)
        endpoint = get_endpoint(kube, name, namespace, port)
        client = EmbeddingClient(endpoint.url, info.hf_id, read_api_key(kube, f"{name}-api-key", namespace),
                                 **client_options)
        client.endpoint = endpoint
        clients.append(client)
    return clients
