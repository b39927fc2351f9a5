"""How the toolkit's errors look in a notebook: one short red block.

    pb = open_target()   # inside IPython this installs it, once per kernel

After :func:`install`, a :class:`~tke_playbook.errors.PlaybookError` raised by a cell shows as one red block -
what happened, what to do - with the traceback one click away (an HTML ``<details>`` element), instead of frames of
library source. The cell still counts as failed (Run All, nbclient and papermill stop there). Other exceptions
keep IPython's usual traceback. Outside IPython, :func:`install` makes uncaught toolkit errors print as one line.

Progress and events go through the playbook's reporter (:mod:`tke_playbook.reporting`).
"""

from __future__ import annotations

import html
import re
import sys
import traceback
from typing import Any

from ..errors import PlaybookError

MAX_SHOWN_LINES = 6  # message lines shown in the block; the rest is one click away with the traceback
_TODO = re.compile(r"^(run|use|set|pick|choose|create|connect|wait|install|leave|give|pass|type|free|delete|"
                   r"reinstall|start|deploy|add|check|try|write|rerun|remove|stop|open|make|point|fix|lower|raise|"
                   r"increase|reduce|shorten|split|select|edit|change|download|launch|call|see|ask|keep|send|"
                   r"enter|name|restart|retry|plan|clean|tick|untick|drop|look|read|put)\b", re.IGNORECASE)


# --- errors ------------------------------------------------------------------------------------------------


def split_message(message: str) -> tuple[str, str, list[str]]:
    """``(what happened, what to do, more lines)`` of an error message: the first line is split at its last
    ``": "``, ``" - "`` or ``"; "`` when what follows reads as an instruction ("run 03_deploy_vllm first");
    later lines are ``more``."""
    lines = [line for line in str(message).strip().splitlines()] or [""]
    head, more = lines[0].strip(), [line.rstrip() for line in lines[1:]]
    cuts = sorted({m.start() for m in re.finditer(r": | - |; ", head)}, reverse=True)
    for cut in cuts:
        tail = head[cut:].lstrip(":-; ").strip()
        if cut > 0 and _TODO.match(tail):
            return head[:cut].strip(), tail, more
    return head, "", more


# What to do when a message names no step itself, by error class (the nearest in the class's MRO wins): every
# block has the same three parts - what happened, what to do, the details one click away.
DEFAULT_TODO = {
    "InvalidSpecError": "change the value the message names, then run the cell again",
    "UnknownNameError": "use one of the names the message suggests",
    "EmbeddingAPIError": "look at the server's log (pb.serving.logs()), then run the cell again",
    "ServerError": "look at the server's log (pb.serving.logs()), or run 03_deploy_vllm again",
    "ClusterError": "run pb.serving.diagnose() for the reason in plain words",
    "DownloadError": "launch the download again (it resumes), or see the shard's log below",
    "PlaybookError": "read the details below, fix what they name, then run the cell again",
}


def what_to_do(exc: BaseException) -> str:
    """The instruction of ``exc``'s message, else the default for its class (:data:`DEFAULT_TODO`)."""
    _, todo, _ = split_message(str(exc))
    if todo:
        return todo
    return next((DEFAULT_TODO[k.__name__] for k in type(exc).__mro__ if k.__name__ in DEFAULT_TODO), "")


def _kind(exc: BaseException) -> str:
    return type(exc).__name__


def error_text(exc: BaseException) -> str:
    """The plain-text form: ``'<Kind>: <message>'`` (the whole message, no traceback)."""
    return f"{_kind(exc)}: {exc}"


def _traceback_text(exc: BaseException, tb: Any = None) -> str:
    return "".join(traceback.format_exception(type(exc), exc, tb if tb is not None else exc.__traceback__))


def error_html(exc: BaseException, tb: Any = None) -> str:
    """One short red block: the error's kind, what happened, what to do, and (folded) details and traceback."""
    what, todo, more = split_message(str(exc))
    todo = todo or what_to_do(exc)
    shown, folded = more[:MAX_SHOWN_LINES], more[MAX_SHOWN_LINES:]
    parts = ['<div class="tke-playbook-error" role="alert" style="border-left:4px solid #cf222e;'
             'background:#ffebe9;color:#1f2328;padding:6px 10px;margin:4px 0;max-width:900px">',
             f'<b style="color:#cf222e">{html.escape(_kind(exc))}</b>: {html.escape(what)}']
    if todo:
        parts.append(f'<div><b>What to do:</b> {html.escape(todo)}</div>')
    if shown:
        parts.append('<pre style="margin:4px 0;white-space:pre-wrap">' + html.escape("\n".join(shown)) + "</pre>")
    details = ("\n".join(folded) + "\n\n" if folded else "") + _traceback_text(exc, tb)
    parts.append('<details><summary style="cursor:pointer">Traceback</summary>'
                 f'<pre style="white-space:pre-wrap;font-size:85%">{html.escape(details)}</pre></details></div>')
    return "".join(parts)


def _ipython_handler(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: display the block, return no structured traceback."""
    from IPython.display import display

    if getattr(value, "one_line", False):  # an interrupted run: its one line (unless already shown), no traceback
        if not getattr(value, "shown", False):
            display({"text/plain": str(value), "text/html": f"<div>{html.escape(str(value))}</div>"}, raw=True)
        return None
    display({"text/plain": error_text(value), "text/html": error_html(value, tb)}, raw=True)
    return None


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def install(shell: Any = None) -> bool:
    """Show toolkit errors as one short block. Inside IPython (``shell`` or the running one) register the custom
    exception handler, make tables readable (:func:`~tke_playbook.playbook.report.readable_tables`) and return True; outside, make uncaught toolkit errors print one line, and return False."""
    shell = shell if shell is not None else _ipython()
    if shell is not None:
        from .report import readable_tables  # late: pandas only where tables are shown

        if tuple(getattr(shell, "custom_exceptions", ())) == (PlaybookError,):
            return True  # installed already in this kernel (by open_target in an earlier cell)
        shell.set_custom_exc((PlaybookError,), _ipython_handler)
        readable_tables()
        return True
    if not getattr(sys.excepthook, "_tke_playbook", False):
        previous = sys.excepthook

        def hook(etype, value, tb):
            if isinstance(value, PlaybookError):
                print(error_text(value), file=sys.stderr)
            else:
                previous(etype, value, tb)

        hook._tke_playbook = True
        sys.excepthook = hook
    return False


def install_in_ipython() -> bool:
    """:func:`install` only when running inside IPython (what ``open_target`` calls); False elsewhere."""
    shell = _ipython()
    return install(shell) if shell is not None else False
