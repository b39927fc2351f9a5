"""The one exception hierarchy of tke-playbook.

Every error the toolkit raises on purpose is a :class:`PlaybookError`. Each carries the object it is about
(``obj``) and, where there is one, the underlying ``cause``; its message says what happened and what to do.
Errors about bad input also subclass :class:`ValueError`, lookups :class:`LookupError` and timeouts
:class:`TimeoutError`, so generic handlers keep working.
"""

from __future__ import annotations

from typing import Any


class PlaybookError(Exception):
    """Base class: ``obj`` is what the error is about, ``cause`` the underlying exception, if any."""

    def __init__(self, message: str, *, obj: Any = None, cause: BaseException | None = None):
        super().__init__(message)
        self.message = message
        self.obj = obj
        self.cause = cause
        if cause is not None:
            self.__cause__ = cause

    def __str__(self) -> str:
        return self.message


# --- input and lookups -------------------------------------------------------------------------------------


class InvalidSpecError(PlaybookError, ValueError):
    """A spec or argument is invalid; ``field`` names it and ``value`` holds what was given."""

    def __init__(self, message: str, *, field: str | None = None, value: Any = None, obj: Any = None,
                 cause: BaseException | None = None):
        super().__init__(message, obj=obj if obj is not None else value, cause=cause)
        self.field = field
        self.value = value


class UnknownNameError(PlaybookError, LookupError):
    """A lookup failed; ``suggestions`` lists close matches (best first)."""

    def __init__(self, message: str, *, kind: str, name: str, suggestions: tuple[str, ...] = ()):
        super().__init__(message, obj=name)
        self.kind = kind
        self.name = name
        self.suggestions = tuple(suggestions)


class FitError(PlaybookError):
    """A model does not fit the chosen GPU; ``obj`` is the fit verdict."""


# --- download and model folders ----------------------------------------------------------------------------


class DownloadError(PlaybookError):
    """Downloading a model failed; ``obj`` names the file or shard."""


class HubError(DownloadError):
    """A model hub (or its mirror) answered with an error or could not be reached."""


class VerificationError(DownloadError):
    """A downloaded file has the wrong size or sha256; ``obj`` is its path."""


class IncompleteModelError(PlaybookError):
    """A model folder lacks the completion marker: the download has not finished or was not verified."""


# --- cluster -----------------------------------------------------------------------------------------------


class ClusterError(PlaybookError):
    """Talking to the Kubernetes API failed; ``obj`` is the object involved."""


class ApplyError(ClusterError):
    """Creating or updating an object was refused by the API server."""


class WaitTimeoutError(ClusterError, TimeoutError):
    """A wait ran out of time; the message says what was last seen."""


class WorkloadFailedError(ClusterError):
    """A workload failed; ``logs`` holds the failing pod's last log lines, ``diagnosis`` a plain-words reason.
    Catch this to handle both kinds below."""

    def __init__(self, message: str, *, obj: Any = None, logs: str = "", diagnosis: Any = None,
                 cause: BaseException | None = None):
        super().__init__(message, obj=obj, cause=cause)
        self.logs = logs
        self.diagnosis = diagnosis


class JobFailedError(WorkloadFailedError):
    """A Job failed (a download or reference run)."""


class DeploymentFailedError(WorkloadFailedError):
    """A Deployment or LeaderWorkerSet did not become ready."""


# --- serving and the embeddings API ------------------------------------------------------------------------


class ServerError(PlaybookError):
    """The local embedding server could not start or stopped unexpectedly."""


class EmbeddingAPIError(PlaybookError):
    """An embeddings endpoint answered with an error; ``status`` and ``body`` hold its answer."""

    def __init__(self, message: str, *, status: int | None = None, body: Any = None, obj: Any = None,
                 cause: BaseException | None = None):
        super().__init__(message, obj=obj, cause=cause)
        self.status = status
        self.body = body


class AuthenticationError(EmbeddingAPIError):
    """HTTP 401: the API key is missing or wrong."""


class BadRequestError(EmbeddingAPIError):
    """HTTP 400: the request was refused (too long an input, a bad field)."""


class RetriesExhaustedError(EmbeddingAPIError):
    """Retries on 429, 5xx or timeouts ran out; ``cause`` is the last failure."""


# --- notebook workflow (what runs, across kernels) ----------------------------------------------------------


class NotDeployedError(PlaybookError, LookupError):
    """Nothing is deployed (never, or cleaned up since): the message names the notebook to run."""


class NoDownloadError(DownloadError, LookupError):
    """No download was planned or started (never, or cleaned up since): the message names the cell to run."""


class PlanMismatchError(DownloadError, ValueError):
    """A download plan was made for another model, revision or repository than the spec being launched."""


class EndpointGoneError(EmbeddingAPIError):
    """Nothing answers at an endpoint any more (the server was stopped or redeployed): the message says what to run."""


class RunInterrupted(PlaybookError):
    """A long run was interrupted (Ctrl-C, the notebook's stop button) and stopped cleanly: its requests and threads
    ended, and ``obj`` holds what it measured so far. The message is one line - what stopped, after how much, where
    the results so far are kept - and is shown without a traceback: an interrupt is not a failure of the toolkit."""

    one_line = True  # shown as its message alone (display.install)

    def __init__(self, message: str, *, obj=None, shown: bool = False):
        super().__init__(message, obj=obj)
        self.shown = shown  # True: the line is already in the cell's output (the run's bar turned into it)
