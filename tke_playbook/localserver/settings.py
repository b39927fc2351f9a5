"""Checks of the local server's settings, shared by the command line, ``start_server`` and ``ServerConfig``.

Light on purpose (no aiohttp, no torch), so refusing a bad setting costs nothing. Each refusal is an
InvalidSpecError whose message names the setting (``--max-batch`` on the command line, ``max_batch`` in Python)
and says what to give.
"""

from __future__ import annotations

import ipaddress
import math
import os

from ..errors import InvalidSpecError

# Upper bounds catch typos (10^30 workers) rather than limit real use.
# A step of this many tokens takes ~0.1-0.3 s for all-MiniLM-L6-v2 on one core: a request arriving while batches
# run joins the next one quickly (benchmarks/bench_local_server.py measures small requests beside maximal ones).
MAX_BATCH_TOKENS = 1024
# Requests of at most this many inputs (queries) get an express worker while every regular worker is busy.
EXPRESS_ROWS = 8
# ... and the regular workers' threads run this much nicer (on 2 cores, bulk steps would otherwise starve it).
BULK_NICE = 5
# A bulk step waits at most this long at each checkpoint (before each layer) while the express worker has work,
# so queries come first yet a steady stream of them never stops bulk work for good.
EXPRESS_PRIORITY_S = 0.5

BOUNDS = {"max_batch": (1, 65536), "max_batch_tokens": (1, 10_000_000), "max_queue": (1, 10_000_000), "workers": (1, 256), "threads": (1, 1024),
          "max_wait_ms": (0, 60_000), "max_inputs": (1, 1_000_000), "max_tokens": (1, 1_000_000_000),
          "max_body_bytes": (1024, 2 ** 31), "chat_template_timeout_s": (0.01, 3600),
          "header_timeout_s": (0.01, 3600), "body_timeout_s": (0.01, 3600)}


def default_workers(cores: int | None = None) -> int:
    """The encoding workers the server runs when ``--workers`` is not given: 2 when there are 2 or more cores
    (``cores``; None: this machine's), else 1."""
    cores = cores if cores is not None else os.cpu_count() or 1
    return 2 if cores >= 2 else 1


def check_number(name: str, value, label: str | None = None) -> None:
    """Refuse a setting outside ``BOUNDS`` (and NaN, infinity or a non-number) naming it as ``label``."""
    least, most = BOUNDS[name]
    label = label or name
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise InvalidSpecError(f"{label} {value!r} is not a number: give one from {least} to {most}", field=name,
                               value=value)
    if value < least:
        raise InvalidSpecError(f"{label} {value} is too small: give at least {least}", field=name, value=value)
    if value > most:
        raise InvalidSpecError(f"{label} {value} is too large: give at most {most}", field=name, value=value)


def check_host(host, label: str = "host") -> str:
    """The address to bind: an IPv4 or IPv6 address, or ``localhost`` (taken as 127.0.0.1)."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        return str(ipaddress.ip_address(host))
    except (ValueError, TypeError):
        raise InvalidSpecError(f"{label} {host!r} is not an IP address: give 127.0.0.1 (this machine only, the "
                               f"default), 0.0.0.0 (every interface) or another address of this machine",
                               field="host", value=host) from None


def url_host(host: str) -> str:
    """``host`` as it goes in a URL (IPv6 addresses in brackets)."""
    return f"[{host}]" if ":" in host else host
