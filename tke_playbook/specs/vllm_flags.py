"""Which vLLM accepts which flag: versions, the flag table, translation between versions, and the check of a
spec's extra arguments. Facts about vLLM's command line, no spec: :mod:`tke_playbook.specs.serving` checks a spec's
extra arguments here when it is resolved, and :mod:`tke_playbook.specs.vllm_args` builds the command line.

:data:`FLAG_TABLE` is the one place that says which vLLM accepts which flag. Its boundaries come from running each
release's own ``vllm serve`` argument parser (0.9.2, 0.10.0, 0.10.1, 0.11.0–0.11.2, 0.12.0, 0.13.0, 0.16.0, 0.17.0,
0.20.0, 0.33.0 - facts.md section 3 - and 0.34.0, whose parser ``tools/check_vllm_parsers.py`` ran on every plan
variant: ``tests/data/vllm_serve_parsers.json``); versions between two checked releases are assumed to behave like
the older one. The retrieval flags (``--hf-overrides`` for a reranker, bge-m3's modes and Matryoshka, the pooler's
``task``) were checked with the parsers of 0.33.0 and 0.34.0 only: :data:`RETRIEVAL_CHECKED_FROM`. A flag one
version does not accept and that cannot be translated raises :class:`~tke_playbook.errors.InvalidSpecError`.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass

from ..errors import InvalidSpecError

VERSION_PATTERN = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
Version = tuple[int, int, int]
Range = tuple["Version | None", "Version | None"]
OLDEST_CHECKED: Version = (0, 9, 2)
NEWEST_CHECKED: Version = (0, 34, 0)
# the oldest release whose parser was run on the retrieval variants' lines (--hf-overrides, the pooler's "task")
RETRIEVAL_CHECKED_FROM: Version = (0, 33, 0)


def parse_vllm_version(text: str) -> tuple[int, int, int]:
    """``'0.10.1'``, ``'v0.12'`` or an image tag like ``'v0.10.1-20250801'`` → ``(0, 10, 1)``."""
    match = VERSION_PATTERN.match(str(text).strip())
    if not match:
        raise InvalidSpecError(f"vLLM version '{text}' is not a version: write it like '0.10.1'",
                               field="vllm_version", value=text)
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


@dataclass(frozen=True)
class FlagRule:
    """Which vLLM versions accept ``flag``: any of the half-open ``accepted`` ranges ``[from, until)`` (None =
    unbounded). ``deprecated``: from then on the toolkit writes the newer name (:data:`NEWER_NAME`) where that is
    accepted. ``droppable``: a flag whose absence means the same (so it is left out where rejected)."""

    flag: str
    accepted: tuple[Range, ...] = ((None, None),)
    deprecated: Version | None = None
    droppable: bool = False
    note: str = ""

    def accepts(self, version: Version) -> bool:
        return any((lo is None or version >= lo) and (hi is None or version < hi) for lo, hi in self.accepted)

    @property
    def added(self) -> Version | None:
        return self.accepted[0][0]

    @property
    def removed(self) -> Version | None:
        """The first version that rejects the flag (None if no checked version does)."""
        return next((hi for _, hi in self.accepted if hi is not None), None)


_V0_9_2, _V0_10_1, _V0_11_0, _V0_11_1 = (0, 9, 2), (0, 10, 1), (0, 11, 0), (0, 11, 1)
_V0_12, _V0_13, _V0_16, _V0_17, _V0_33 = (0, 12, 0), (0, 13, 0), (0, 16, 0), (0, 17, 0), (0, 33, 0)

FLAG_TABLE: tuple[FlagRule, ...] = (
    FlagRule("--task", ((None, _V0_13),), deprecated=_V0_10_1,
             note="deprecated in 0.10.1 for --runner/--convert, removed in 0.13.0"),
    FlagRule("--runner", ((_V0_10_1, None),), note="from 0.10.1"),
    FlagRule("--convert", ((_V0_10_1, None),), note="from 0.10.1"),
    FlagRule("--disable-log-requests", ((None, _V0_17), (_V0_33, None)), droppable=True,
             note="deprecated in 0.10.1 (request logging is off by default); rejected from 0.17.0, accepted again "
                  "in 0.33.0"),
    FlagRule("--enable-log-requests", ((_V0_10_1, None),), note="exists from 0.10.1"),
    FlagRule("--cuda-graph-sizes", ((None, _V0_13),), deprecated=_V0_11_1,
             note="deprecated in 0.11.1 for --cudagraph-capture-sizes, removed in 0.13.0"),
    FlagRule("--cudagraph-capture-sizes", ((_V0_11_1, None),), note="from 0.11.1"),
    FlagRule("--max-cudagraph-capture-size", ((_V0_11_1, None),), note="from 0.11.1"),
    FlagRule("--override-pooler-config", ((None, _V0_12),), deprecated=_V0_11_0,
             note="deprecated in 0.11.0 for --pooler-config, removed in 0.12.0"),
    FlagRule("--pooler-config", ((_V0_11_0, None),), note="from 0.11.0"),
)
RULES = {rule.flag: rule for rule in FLAG_TABLE}
POOLER_FLAGS = ("--pooler-config", "--override-pooler-config")
POOLER_NORMALIZE_REMOVED: Version = _V0_16  # pooler JSON key `normalize` rejected; `use_activation` replaces it
# a deprecated flag (with the value it must have, if any) → its successor, and back for older versions
NEWER_NAME = {("--task", "embed"): ("--runner", "pooling"), ("--cuda-graph-sizes",): ("--cudagraph-capture-sizes",),
              ("--override-pooler-config",): ("--pooler-config",)}
OLDER_NAME = {("--runner", "pooling"): ("--task", "embed"), ("--convert", "embed"): ("--task", "embed"),
              ("--cudagraph-capture-sizes",): ("--cuda-graph-sizes",),
              ("--pooler-config",): ("--override-pooler-config",)}


def accepts(flag: str, version: Version) -> bool:
    """Whether vLLM ``version`` accepts ``flag`` (flags without a rule always pass)."""
    rule = RULES.get(flag)
    return True if rule is None else rule.accepts(version)


def _v(version: Version) -> str:
    return ".".join(str(p) for p in version)


def split_flags(args) -> list[list[str]]:
    """Group tokens into ``[flag, value…]`` lists; each item may hold several tokens (``'--x 1 2'``)."""
    groups: list[list[str]] = []
    for item in args:
        for token in shlex.split(str(item)):
            if token.startswith("-") and not _is_number(token):
                flag, eq, value = token.partition("=")
                groups.append([flag, value] if eq else [flag])
            elif groups:
                groups[-1].append(token)
            else:
                raise InvalidSpecError(f"extra argument '{token}' is a value without a flag: start with '--'",
                                       field="extra_args", value=item)
    return groups


def _is_number(token: str) -> bool:
    try:
        float(token)
        return True
    except ValueError:
        return False


def _rename(group: list[str], mapping: dict) -> list[str] | None:
    for old, new in mapping.items():
        if tuple(group[:len(old)]) == old:
            return [*new, *group[len(old):]]
    return None


def _translate_one(group: list[str], version: Version) -> list[str] | None:
    rule = RULES.get(group[0])
    if rule is None:
        return group
    if rule.deprecated is not None and version >= rule.deprecated:
        newer = _rename(group, NEWER_NAME)
        if newer is not None and accepts(newer[0], version):
            return newer
    if rule.accepts(version):
        return group
    older = _rename(group, OLDER_NAME)
    if older is not None and accepts(older[0], version):
        return older
    return None if rule.droppable else group  # an unaccepted group left as it is: translate() reports it


def _why_not(rule: FlagRule, version: Version) -> str:
    if rule.added is not None and version < rule.added:
        return f"added in {_v(rule.added)}"
    gap = next((hi, lo) for (_, hi), (lo, _) in zip(rule.accepted, (*rule.accepted[1:], (None, None)))
               if hi is not None and version >= hi and (lo is None or version < lo))
    return f"removed in {_v(gap[0])}" + (f", back in {_v(gap[1])}" if gap[1] else "")


def check_pooler_json(flag: str, text: str, version: Version) -> tuple[str, str | None]:
    """Validate a pooler-config JSON value; from 0.16 rename ``normalize`` to ``use_activation``. Returns the
    (compact) JSON and a note when it changed."""
    try:
        config = json.loads(text)
    except ValueError as exc:
        why = (" - extra_args items are shell words, as in the chart's bash, so unquoted JSON loses its double "
               "quotes" if '"' not in text else "")
        raise InvalidSpecError(f"{flag} value {text!r} is not JSON ({exc.msg}){why}: put the JSON in single quotes, "
                               f"in one item: {flag} '{{\"pooling_type\":\"MEAN\"}}'", field="extra_args",
                               value=text) from None
    if not isinstance(config, dict):
        raise InvalidSpecError(f"{flag} value {text!r} must be a JSON object such as '{{\"pooling_type\":\"MEAN\"}}'",
                               field="extra_args", value=text)
    if version < POOLER_NORMALIZE_REMOVED or "normalize" not in config:
        return text, None
    if "use_activation" in config:
        raise InvalidSpecError(f"{flag} sets both 'normalize' and 'use_activation': vLLM {_v(version)} knows only "
                               f"'use_activation', keep that one", field="extra_args", value=text)
    config = {("use_activation" if k == "normalize" else k): v for k, v in config.items()}
    return json.dumps(config, separators=(",", ":")), (f"{flag}: JSON key 'normalize' → 'use_activation' (vLLM "
                                                       f"{_v(version)} rejects 'normalize' from 0.16)")


def _pooler_value(group: list[str], version: Version, notes: list[str]) -> list[str]:
    if group[0] not in POOLER_FLAGS:
        return group
    if len(group) != 2:
        raise InvalidSpecError(f"{group[0]} takes one JSON object (quote it), got {' '.join(group[1:])!r}",
                               field="extra_args", value=" ".join(group))
    value, note = check_pooler_json(group[0], group[1], version)
    notes += [note] if note else []
    return [group[0], value]


def translate(groups: list[list[str]], version: Version) -> tuple[list[list[str]], list[str]]:
    """Rewrite flag groups for ``version``; return them and plain notes about what changed."""
    out, notes = [], []
    for group in groups:
        new = _translate_one(group, version)
        if new is None:
            notes.append(f"dropped {group[0]}: vLLM {_v(version)} does not accept it ({RULES[group[0]].note})")
            continue
        if new != group:
            notes.append(f"{' '.join(group)} → {' '.join(new)} for vLLM {_v(version)}")
        if not accepts(new[0], version):
            raise InvalidSpecError(f"{new[0]} is not accepted by vLLM {_v(version)} "
                                   f"({_why_not(RULES[new[0]], version)}) and has no equivalent there: remove it "
                                   f"from extra_args or choose another vLLM version", field="extra_args",
                                   value=" ".join(group))
        out.append(_pooler_value(new, version, notes))
    return out, notes


RESERVED_FLAGS = frozenset({"--host", "--port", "--served-model-name", "--max-model-len", "--max-num-seqs", "-tp",
                            "-pp", "--tensor-parallel-size", "--pipeline-parallel-size", "--api-key",
                            "--gpu-memory-utilization"})


def user_flags(extra_args) -> list[list[str]]:
    """The extra arguments as flag groups; InvalidSpecError when one sets a flag the spec controls."""
    groups = split_flags(extra_args)
    for group in groups:
        if group[0] in RESERVED_FLAGS:
            raise InvalidSpecError(f"extra_args sets {group[0]}, which the spec already controls: set the spec's "
                                   f"field instead (or, for --api-key, use the API key Secret)",
                                   field="extra_args", value=" ".join(group))
    return groups


def check_extra_args(extra_args, version: str) -> None:
    """Refuse extra arguments vLLM ``version`` would not start with: a value without a flag, a flag the spec
    controls, a flag that version rejects and that has no equivalent there, pooler JSON that is not an object.
    The same rules :func:`~tke_playbook.specs.vllm_args.build_vllm_args` applies, without building the command."""
    translate(user_flags(extra_args), parse_vllm_version(version))


def embedding_flags(version: Version, reranker: bool = False) -> list[str]:
    """The flags that make vLLM serve a pooling model: ``--runner pooling`` from 0.10.1; before it ``--task embed``
    for an embedder and ``--task score`` for a cross-encoder (vLLM 0.9's pooling tasks)."""
    if accepts("--runner", version):
        return ["--runner", "pooling"]
    return ["--task", "score" if reranker else "embed"]


def version_notes(version: Version) -> list[str]:
    """A note when ``version`` lies outside the releases whose parsers were checked."""
    if OLDEST_CHECKED <= version <= NEWEST_CHECKED:
        return []
    return [f"vLLM {_v(version)} is outside the checked releases {_v(OLDEST_CHECKED)}–{_v(NEWEST_CHECKED)}: flags "
            f"are assumed to behave as in the nearest checked one; compare with `vllm serve --help` of the image"]


def command_string(argv: list[str]) -> str:
    """argv as one shell line (tokens quoted only where the shell needs it)."""
    return " ".join(shlex.quote(token) for token in argv)
