"""The one API-key rule (issue 21, items 3 and 4), wherever a key enters, and the pods' key annotation.

The grammar is RFC 6750's b64token (``1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="``), the token
a client sends after ``Authorization: Bearer``: a trailing newline, a space or a control character is no part of
it, so a key holding one can never be sent, and the proxy answers 401 to everyone.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import subprocess
import sys

import pytest
import yaml

from tke_playbook.errors import InvalidSpecError
from tke_playbook.hostenv import annotation_salt, generate_api_key, read_key_file
from tke_playbook.manifests.profiles import render_profile
from tke_playbook.manifests.serving import KEY_REVISION_ANNOTATION
from tke_playbook.playbook.state import SecretStore
from tke_playbook.specs.apikeys import API_KEY_RULE, KEY_MIN_LENGTH, check_api_key

GOOD = "Abc-123_xyz.~+/key=="  # every character class a b64token may hold


def _cli(env_extra: dict, *argv: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TKE_PLAYBOOK_API_KEY"} | env_extra
    return subprocess.run([sys.executable, "-m", "tke_playbook.cli", *argv], capture_output=True, text=True,
                          env=env, timeout=120)


@pytest.mark.parametrize("key, problem", [
    pytest.param("GoodKey1234567890\n", "ends with a line break", id="trailing-newline"),
    pytest.param("GoodKey1234567890\r\n", "ends with a line break", id="trailing-crlf"),
    pytest.param("GoodKey12345\n67890", "contains whitespace", id="inner-newline"),
    pytest.param(" GoodKey1234567890", "contains whitespace", id="leading-space"),
    pytest.param("GoodKey 1234567890", "contains whitespace", id="inner-space"),
    pytest.param("GoodKey1234567890\t", "contains whitespace", id="tab"),
    pytest.param("GoodKey\x071234567890", "contains a control character", id="bell"),
    pytest.param("GoodKey\x001234567890", "contains a control character", id="nul"),
    pytest.param("GoodKey\u200b1234567890", "contains a control character", id="zero-width-space"),
    pytest.param("GoodKey\u00e91234567890", "bearer token cannot hold", id="non-ascii"),
    pytest.param("Good=Key1234567890", "bearer token cannot hold", id="inner-equals"),
    pytest.param("a", "1 character, too short", id="one-letter"),
    pytest.param("GoodKey123", "10 characters, too short", id="ten-letters"),
    pytest.param("", "is empty", id="empty"),
    pytest.param("k" * 5000, "more than fit one request header", id="huge"),
])
def test_keys_outside_the_rule_are_refused_in_one_line_that_never_shows_them(key, problem):
    with pytest.raises(InvalidSpecError) as info:
        check_api_key(key, "$TKE_PLAYBOOK_API_KEY")
    message = str(info.value)
    assert problem in message and API_KEY_RULE in message and "\n" not in message
    if len(key) > 3:
        assert key.strip() not in message


@pytest.mark.parametrize("key", [GOOD, "k" * KEY_MIN_LENGTH, "A" * 4096, "sk-" + "x" * 40])
def test_bearer_tokens_of_a_safe_length_are_accepted(key):
    assert check_api_key(key) == key


def test_generated_keys_satisfy_the_rule():
    keys = {generate_api_key() for _ in range(500)}
    assert len(keys) == 500 and all(check_api_key(k) == k for k in keys)


@pytest.mark.parametrize("value, words", [
    pytest.param("GoodKey123\n", "$TKE_PLAYBOOK_API_KEY ends with a line break", id="issue-newline"),
    pytest.param("a", "$TKE_PLAYBOOK_API_KEY has 1 character, too short", id="one-letter"),
    pytest.param("Good Key 1234567890", "$TKE_PLAYBOOK_API_KEY contains whitespace", id="space"),
])
def test_render_refuses_a_bad_key_from_the_environment_in_one_line(tmp_path, value, words):
    # the command: TKE_PLAYBOOK_API_KEY=$'GoodKey123\n' tke-playbook render --service-type LoadBalancer
    done = _cli({"TKE_PLAYBOOK_API_KEY": value, "TKE_PLAYBOOK_HOME": str(tmp_path)},
                "render", "--service-type", "LoadBalancer", "--show-secrets")
    assert done.returncode == 2 and done.stdout == ""
    assert len(done.stderr.splitlines()) == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith("tke-playbook render: error: ") and words in done.stderr
    assert "GoodKey" not in done.stderr


def test_a_good_key_from_the_environment_is_stored_exactly(tmp_path):
    done = _cli({"TKE_PLAYBOOK_API_KEY": GOOD, "TKE_PLAYBOOK_HOME": str(tmp_path)},
                "render", "--service-type", "LoadBalancer", "--show-secrets")
    secret = next(d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Secret")
    assert done.returncode == 0 and base64.b64decode(secret["data"]["api-key"]) == GOOD.encode()


def test_the_playbooks_key_store_applies_the_rule(tmp_path):
    store = SecretStore(tmp_path)
    with pytest.raises(InvalidSpecError, match="too short"):
        store.ensure("vllm-key", "a")
    with pytest.raises(InvalidSpecError, match="ends with a line break"):
        store.ensure("vllm-key", GOOD + "\n")
    generated = store.ensure("vllm-key")
    assert check_api_key(generated) == generated and store.read("vllm-key") == generated
    assert (store.path("vllm-key").stat().st_mode & 0o777) == 0o600
    store.path("vllm-key").write_text(generated + "\n\n", encoding="utf-8")  # edited by hand: a second line
    with pytest.raises(InvalidSpecError, match="delete it to have a new key generated"):
        store.read("vllm-key")


@pytest.mark.parametrize("content, mode, words", [
    pytest.param(GOOD + "\n", 0o600, None, id="one-line"),
    pytest.param(GOOD + "\r\n", 0o600, None, id="crlf"),
    pytest.param(GOOD + "\n", 0o644, "permissions 0644 for '{path}' are too open: chmod 600 {path}", id="0644"),
    pytest.param(GOOD + "\n", 0o640, "permissions 0640 for '{path}' are too open", id="0640"),
    pytest.param(GOOD + "  \n", 0o600, "contains whitespace", id="trailing-spaces"),
    pytest.param(GOOD + "\n\n", 0o600, "ends with a line break", id="two-newlines"),
    pytest.param("a\n", 0o600, "too short", id="one-letter"),
    pytest.param(b"\xff\xfe\x00binary", 0o600, "is not text", id="binary"),
    pytest.param("k" * 100_000, 0o600, "has 100000 bytes", id="huge"),
])
def test_key_files_are_private_regular_files_holding_one_key(tmp_path, content, mode, words):
    path = tmp_path / "key"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    path.chmod(mode)
    if words is None:
        assert read_key_file(path) == GOOD
        return
    with pytest.raises(InvalidSpecError) as info:
        read_key_file(path)
    assert words.format(path=path) in str(info.value) and "\n" not in str(info.value)


def test_key_files_that_would_block_or_never_end_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(InvalidSpecError, match="is a FIFO: give a regular file"):
        read_key_file(fifo)  # opening a FIFO for reading would wait for a writer forever
    with pytest.raises(InvalidSpecError, match="is a device: give a regular file"):
        read_key_file("/dev/zero")
    with pytest.raises(InvalidSpecError, match="is a folder"):
        read_key_file(tmp_path)


# --- item 4: the pods' annotation tells nothing about the key -------------------------------------------------


def _rendered(key: str, salt: bytes | None) -> tuple[str, str]:
    """(the annotation, the YAML without it) of the seed plan rendered without --show-secrets."""
    text = render_profile("seed", api_key=key, key_salt=salt)
    docs = [d for d in yaml.safe_load_all(text) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    value = deployment["spec"]["template"]["metadata"]["annotations"].pop(KEY_REVISION_ANNOTATION)
    return value, yaml.safe_dump_all(docs)


def test_the_annotation_holds_nothing_computable_from_the_key_and_the_yaml(tmp_path):
    weak = "password12345678"  # long enough for the rule, yet in every wordlist
    salt_a, salt_b = annotation_salt(tmp_path / "a"), annotation_salt(tmp_path / "b")
    first, rest = _rendered(weak, salt_a)
    again, rest_again = _rendered(weak, salt_a)
    other_home, rest_other = _rendered(weak, salt_b)
    # everything public is the same for both homes, yet the annotation differs: it is no function of the key and
    # the YAML, so no guess of the key can be checked against it
    assert rest == rest_again == rest_other and other_home != first
    assert again == first  # the same key on the same machine: the pods are left running
    changed, _ = _rendered("password12345679", salt_a)
    assert changed != first  # a new key restarts the pods
    # the attack from the issue: a wordlist against functions of the key and the public names finds nothing
    text = render_profile("seed", api_key=weak, key_salt=salt_a)
    namespaced = b"default/vllm-e5-mistral-7b-instruct-api-key"
    for guess in ("password", "password123", weak, "123456", "letmein"):
        for candidate in (hashlib.pbkdf2_hmac("sha256", guess.encode(), namespaced, 10_000).hex(),
                          hashlib.sha256(guess.encode()).hexdigest(), hashlib.sha1(guess.encode()).hexdigest(),
                          base64.b64encode(guess.encode()).decode()):
            assert candidate[:16] not in text
    assert weak not in text


def test_the_salt_stays_on_this_machine_and_is_private(tmp_path):
    salt = annotation_salt(tmp_path)
    assert annotation_salt(tmp_path) == salt and len(salt) == 32
    files = [p for p in tmp_path.iterdir()]
    assert len(files) == 1 and files[0].stat().st_mode & 0o777 == 0o600
    assert tmp_path.stat().st_mode & 0o777 == 0o700
    assert salt.hex() not in render_profile("seed", api_key=GOOD, key_salt=salt)


def test_render_keeps_the_annotation_for_the_same_key_and_changes_it_for_another(tmp_path):
    def annotation(key: str) -> str:
        done = _cli({"TKE_PLAYBOOK_API_KEY": key, "TKE_PLAYBOOK_HOME": str(tmp_path)}, "render")
        deployment = next(d for d in yaml.safe_load_all(done.stdout) if d and d["kind"] == "Deployment")
        return deployment["spec"]["template"]["metadata"]["annotations"][KEY_REVISION_ANNOTATION]

    key = secrets.token_urlsafe(24)
    assert annotation(key) == annotation(key) != annotation(key + "x")
