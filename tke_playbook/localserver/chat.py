"""Chat templates rendered out of the server's process: a time bound, a memory bound and an output bound.

A chat template is a Jinja program. Even in Jinja's sandbox (which transformers uses) three nested
``range(100000)`` loops run for hours and ``{{ 'ab ' * 10**8 }}`` fills memory, and a thread running them cannot
be stopped. So templates are rendered in worker processes (a :mod:`pebble` pool, started by ``forkserver``):
each render has ``timeout_s`` seconds, after which its worker is killed and replaced; each worker may grow by
at most :data:`WORKER_MEMORY_BYTES` (``RLIMIT_AS``) and runs at a lower CPU priority than the server, so the
event loop keeps answering ``/health``; the rendered prompts of one request may hold at most ``max_chars``
characters (the server's body limit: no more text than the client could have sent as ``input``). A client that
leaves cancels its render (the worker is stopped).

What reaches the template follows vLLM 0.33/0.34 (``build_chat_params`` and ``safe_apply_chat_template``):
``chat_template_kwargs`` are the template's variables, the request's own ``add_generation_prompt`` and
``continue_final_message`` win over the same keys in them, ``tokenize`` there makes vLLM tokenise inside the
template call (the prompt's ids then carry no extra special tokens), ``chat_template`` there is a
request-supplied template (refused unless ``--trust-request-chat-template``, see :mod:`.protocol`), and what the
template raises is the client's 400 with the template's own reason.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import dataclass
from typing import Any

from ..errors import BadRequestError, ServerError

log = logging.getLogger("tke_playbook.localserver")

WORKERS = 2  # renders side by side: one hostile template does not hold up every chat request
WORKER_MEMORY_BYTES = 512 * 2 ** 20  # how much a render worker may grow beyond its start (RLIMIT_AS)
WORKER_NICE = 10  # below the server's event loop and encoding threads
MAX_WAITING = 64  # renders queued beyond the running ones before chat requests get 503

# apply_chat_template's own parameters that shape tokenisation, not the template: with tokenize=False (how vLLM
# renders for pooling) they change nothing, so they are not template variables.
_TOKENIZER_PARAMS = frozenset({"padding", "truncation", "max_length", "return_tensors", "return_dict",
                               "tokenizer_kwargs"})
# ... and those transformers refuses when the template is rendered to text (vLLM answers its ValueError with 400).
_TEXT_REFUSED = {"return_assistant_tokens_mask": "`return_assistant_tokens_mask=True` requires `return_dict=True` "
                                                 "and `tokenize=True`",
                 "sanitize_control_tokens": "`sanitize_control_tokens=True` requires `tokenize=True` and is not "
                                            "compatible with `return_assistant_tokens_mask=True`."}
_UNSET = (None, "auto")  # vLLM's merge_kwargs drops these values


class ChatBusy(ServerError):
    """Too many chat renders are waiting (HTTP 503; retry later)."""


@dataclass(frozen=True)
class TemplateCall:
    """One request's render: the template, its conversations and every variable the template sees."""

    template: str
    conversations: tuple[tuple[dict, ...], ...]
    variables: dict[str, Any]
    tokenize: bool = False  # vLLM tokenised inside the template call: no special tokens added afterwards


def template_call(template: str, conversations, *, add_generation_prompt: bool = False,
                  continue_final_message: bool = False, chat_template_kwargs: dict | None = None,
                  special_tokens: dict | None = None) -> TemplateCall:
    """The variables vLLM hands the template for an EmbeddingChatRequest (see the module docstring)."""
    kwargs = {k: v for k, v in (chat_template_kwargs or {}).items() if not _unset(v)}
    tokenize = bool(kwargs.pop("tokenize", False))
    kwargs.pop("chat_template", None)  # the template itself: already chosen (and checked against the trust rule)
    for name, reason in _TEXT_REFUSED.items():
        if kwargs.pop(name, False):
            raise _bad(reason)
    variables = {**(special_tokens or {}), **{k: v for k, v in kwargs.items() if k not in _TOKENIZER_PARAMS}}
    variables.update(add_generation_prompt=bool(add_generation_prompt),
                     continue_final_message=bool(continue_final_message))
    return TemplateCall(template=template, conversations=tuple(tuple(c) for c in conversations),
                        variables=variables, tokenize=tokenize)


def _unset(value) -> bool:
    return isinstance(value, str) and value in _UNSET or value is None


def _bad(message: str) -> BadRequestError:
    from .protocol import bad_request  # protocol imports nothing from here; late to keep the worker light
    return bad_request(message)


# --- the worker side (runs in the pool's processes) -------------------------------------------------------------


def _start_worker(memory_bytes: int) -> None:
    """Each worker: import the renderer, then lower its priority and cap its address space."""
    from transformers.utils.chat_template_utils import render_jinja_template  # noqa: F401 - import once, here
    try:
        os.nice(WORKER_NICE)
    except OSError:
        pass
    try:
        import resource

        with open("/proc/self/statm", encoding="ascii") as statm:
            size = int(statm.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (size + memory_bytes, resource.RLIM_INFINITY))
    except (ImportError, OSError, ValueError):
        log.warning("cannot cap the chat-template worker's memory on this platform")


def _render(call: TemplateCall, max_chars: int) -> tuple[str, Any]:
    """``("ok", prompts)`` or ``("refused", reason)``; never raises (exceptions need not be picklable)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    variables = dict(call.variables)
    named = {name: variables.pop(name, None) for name in ("tools", "documents")}
    try:
        prompts, _ = render_jinja_template(conversations=[list(c) for c in call.conversations],
                                           chat_template=call.template, **named, **variables)
    except MemoryError:
        return "refused", (f"The chat template needed more than this server's {WORKER_MEMORY_BYTES // 2 ** 20} MiB "
                           f"to render these messages.")
    except Exception as exc:  # noqa: BLE001 - what the template raises is the client's (vLLM: 400)
        return "refused", _reason(exc)
    size = sum(len(p) for p in prompts)
    if size > max_chars:
        return "refused", (f"The chat template rendered {size} characters, more than this server's limit of "
                           f"{max_chars}: send shorter messages.")
    return "ok", prompts


def _reason(exc: BaseException) -> str:
    """The most specific reason in the chain: the Jinja error if there is one (as vLLM reports it)."""
    from jinja2 import TemplateError

    seen, current = set(), exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, TemplateError):
            return str(current)
        current = current.__cause__ or current.__context__
    return str(exc) or type(exc).__name__


def _ready() -> bool:
    return True


# --- the server side ------------------------------------------------------------------------------------------


class ChatRenderer:
    """Renders :class:`TemplateCall`\\ s in a pool of worker processes, each bounded in time, memory and output."""

    def __init__(self, *, timeout_s: float, max_chars: int, workers: int = WORKERS,
                 memory_bytes: int = WORKER_MEMORY_BYTES):
        self.timeout_s, self.max_chars = float(timeout_s), int(max_chars)
        self.workers, self.memory_bytes = int(workers), int(memory_bytes)
        self._pool = None
        self._in_flight = 0
        self.timeouts = 0  # renders stopped at the time bound (for tests and logs)

    def start(self) -> None:
        """Start the workers now (each takes a second or two to import the renderer) instead of on first use."""
        self._ensure_pool().schedule(_ready)

    def _ensure_pool(self):
        if self._pool is None:
            from pebble import ProcessPool

            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPool(max_workers=self.workers, initializer=_start_worker,
                                     initargs=(self.memory_bytes,), context=context)
        return self._pool

    def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
            pool.join(timeout=5)

    async def render(self, call: TemplateCall) -> list[str]:
        """The prompts, or a 400 (timeout, memory, output size, the template's own error); 503 when too busy."""
        if self._in_flight >= self.workers + MAX_WAITING:
            raise ChatBusy(f"The server is rendering {self._in_flight} chat requests: retry later.")
        self._in_flight += 1
        future = self._ensure_pool().schedule(_render, args=(call, self.max_chars), timeout=self.timeout_s)
        try:
            status, value = await asyncio.wrap_future(future)
        except TimeoutError:
            self.timeouts += 1
            raise _bad(f"Chat template rendering timed out after {self.timeout_s:g}s. This may indicate a "
                       f"malicious or excessively complex template.") from None
        except FutureCancelled:  # the pool is stopping
            raise ServerError("The server is shutting down; retry against a running one.") from None
        except Exception as exc:  # noqa: BLE001 - a worker that died (e.g. killed by the OS) fails this render
            raise _bad(f"The chat template could not be rendered: {type(exc).__name__}: {exc}") from None
        finally:
            self._in_flight -= 1
        if status != "ok":
            raise _bad(value)
        return value
