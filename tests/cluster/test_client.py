"""Connecting from a kubeconfig (context selection, bad files) and the generic request path."""

from __future__ import annotations

import pytest

from tke_playbook.errors import ClusterError, UnknownNameError
from tke_playbook.kube import Kube, ObjectRef, connect


def _kubeconfig(tmp_path, server_url, current="fake"):
    path = tmp_path / "config"
    path.write_text(f"""apiVersion: v1
kind: Config
clusters:
- {{name: fake, cluster: {{server: "{server_url}"}}}}
- {{name: nowhere, cluster: {{server: "http://127.0.0.1:9"}}}}
users:
- {{name: dev, user: {{token: secret-token}}}}
contexts:
- {{name: fake, context: {{cluster: fake, user: dev, namespace: team-a}}}}
- {{name: other, context: {{cluster: nowhere, user: dev}}}}
current-context: {current}
""")
    return path


def test_connect_from_kubeconfig_uses_its_current_context_and_token(tmp_path, server):
    with connect(_kubeconfig(tmp_path, server.url)) as kube:
        assert kube.context == "fake" and kube.host == server.url
        assert kube.version.get_code().git_version.startswith("v1.30")
    assert server.authorizations[-1] == "Bearer secret-token"


def test_connect_picks_the_named_context(tmp_path, server):
    with connect(_kubeconfig(tmp_path, server.url), context="other") as kube:
        assert (kube.context, kube.host) == ("other", "http://127.0.0.1:9")


@pytest.mark.parametrize("context", [pytest.param("prod", id="unknown-context")])
def test_bad_context_is_a_cluster_error_that_says_what_to_do(tmp_path, server, context):
    with pytest.raises(ClusterError, match="Cannot load kubeconfig .*'prod'.*KUBECONFIG"):
        connect(_kubeconfig(tmp_path, server.url), context=context)


def test_no_kubeconfig_and_not_in_a_pod(monkeypatch, tmp_path):
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="in-cluster config \\(no kubeconfig found\\)"):
        connect()


def test_kubeconfig_variable_pointing_nowhere_names_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="KUBECONFIG is set to .*missing, but no such file exists"):
        connect()


def test_object_ref_paths():
    assert ObjectRef("apps/v1", "Deployment", "d", "ns").path() == "/apis/apps/v1/namespaces/ns/deployments/d"
    assert ObjectRef("v1", "Node", "n").path() == "/api/v1/nodes/n"
    assert ObjectRef("storage.k8s.io/v1", "StorageClass", "").path(collection=True) == \
        "/apis/storage.k8s.io/v1/storageclasses"
    assert str(ObjectRef("v1", "Service", "s", "ns")) == "Service 's' in namespace ns"
    with pytest.raises(UnknownNameError, match="Did you mean 'Deployment'"):
        ObjectRef("apps/v1", "Deploymnt", "d").path()


def test_bearer_token_reaches_the_server(server):
    with Kube.from_host(server.url, token="t0k3n") as kube:
        kube.request("GET", "/api/v1/namespaces")
    assert server.requests[-1][1] == "/api/v1/namespaces"
    assert server.authorizations[-1] == "Bearer t0k3n"
