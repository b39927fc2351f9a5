"""What the machine says, read in one place (tke_playbook/hostenv.py): each reader takes the environment it is
given, and the rule it applies is a pure function of specs."""

from __future__ import annotations

import socket

import pytest

from tke_playbook import hostenv
from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.specs.apikeys import api_key_problem
from tke_playbook.specs.target import Target, choose_target


def test_the_target_rule_is_pure():
    assert choose_target("", kubeconfig_found=True) is Target.CLUSTER
    assert choose_target("auto", kubeconfig_found=False) is Target.LOCAL
    assert choose_target(" Local ", kubeconfig_found=True) is Target.LOCAL
    assert choose_target("cluster", kubeconfig_found=False, in_cluster=True) is Target.CLUSTER  # a pod
    with pytest.raises(InvalidSpecError, match="needs a kubeconfig"):
        choose_target("cluster", kubeconfig_found=False)
    with pytest.raises(UnknownNameError, match="Did you mean 'local'"):
        choose_target("locl", kubeconfig_found=False)


def test_the_target_follows_the_environment_it_is_given(tmp_path):
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text("apiVersion: v1\n")
    assert hostenv.resolve_target(environ={"KUBECONFIG": str(kubeconfig)}) is Target.CLUSTER
    assert hostenv.resolve_target(environ={"KUBECONFIG": str(tmp_path / "none"), "HOME": str(tmp_path)}) \
        is Target.LOCAL
    assert hostenv.resolve_target(environ={"KUBECONFIG": str(kubeconfig), hostenv.TARGET_ENV: "local"}) \
        is Target.LOCAL
    assert hostenv.resolve_target("local", environ={}) is Target.LOCAL


def test_the_state_folder_and_a_pvc_folder_are_made_where_the_environment_says(tmp_path):
    home = hostenv.state_dir({hostenv.HOME_ENV: str(tmp_path / "home")})
    assert home == tmp_path / "home" and home.is_dir()
    assert hostenv.local_pvc_dir("models", root=home) == home / "pvcs" / "models" and (home / "pvcs/models").is_dir()


def test_prices_come_from_the_file_the_environment_names(tmp_path):
    prices = tmp_path / "prices.csv"
    prices.write_text("node_type,per_hour,currency\nPNV5b.8XLARGE96,7.5,CNY\n")
    table = hostenv.load_prices(environ={hostenv.PRICES_ENV: str(prices)})
    assert table["PNV5b.8XLARGE96"].per_hour == 7.5 and table["PNV5b.8XLARGE96"].verified
    assert not hostenv.load_prices(environ={})["PNV5b.8XLARGE96"].verified  # the illustrative default
    with pytest.raises(InvalidSpecError, match="does not exist"):
        hostenv.load_prices(environ={hostenv.PRICES_ENV: str(tmp_path / "none.yaml")})


def test_hub_tokens_come_from_the_environment_given_and_stay_masked():
    token = hostenv.token_from_env("huggingface", {"HF_TOKEN": "hf_secret"})
    assert token.reveal() == "hf_secret" and "hf_secret" not in repr(token)
    assert hostenv.token_from_env("modelscope", {"HF_TOKEN": "hf_secret"}) is None
    assert hostenv.token_from_env("modelscope", {"HUB_TOKEN": "t"}).reveal() == "t"


def test_a_new_api_key_is_random_and_long():
    keys = {hostenv.generate_api_key() for _ in range(3)}
    assert len(keys) == 3 and all(len(k) >= 32 and api_key_problem(k) is None for k in keys)


def test_a_port_in_use_is_not_free():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert not hostenv.port_is_free(sock.getsockname()[1])
