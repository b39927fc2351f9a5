"""Manifests as text: multi-document YAML in builder order, Secrets redacted for anything shown or saved."""

from __future__ import annotations

import yaml


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data):  # never &id001 anchors: each object reads on its own
        return True


def _str(dumper, value: str):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


REDACTED = "<redacted>"


def redact_secrets(manifests: list[dict]) -> list[dict]:
    """Copies of ``manifests`` with every Secret's ``data``/``stringData`` values replaced by ``<redacted>``
    (the inputs are not changed). For showing a plan; apply the unredacted one."""
    out = []
    for manifest in manifests:
        if manifest.get("kind") == "Secret":
            manifest = {**manifest, **{key: {k: REDACTED for k in manifest[key]}
                                       for key in ("data", "stringData") if isinstance(manifest.get(key), dict)}}
        out.append(manifest)
    return out


_redact = redact_secrets


def plan_to_yaml(manifests: list[dict], notes=(), *, redact_secrets: bool = False) -> str:
    """Multi-document YAML (``---`` between objects), keys in builder order; ``notes`` become leading comments.
    ``redact_secrets=True`` shows Secret values as ``<redacted>``: use it for anything displayed or saved
    (notebook outputs, logs); the redacted YAML cannot be applied."""
    if redact_secrets:
        manifests = _redact(manifests)
    head = "".join(f"# {line}\n" for note in notes for line in str(note).splitlines())
    # width: never fold long lines, so the vLLM command reads (and greps) as one line
    docs = [yaml.dump(m, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=2**20) for m in manifests]
    return head + "---\n" + "---\n".join(docs)
