"""Waiting for Jobs, Deployments and LeaderWorkerSets, with progress, a live log tail and plain-words failures.

A wait ends in one of three ways: success (returns the last state), a failure that will not fix itself
(:class:`JobFailedError` / :class:`DeploymentFailedError` carrying the failing pod's last log lines and a
diagnosis), or :class:`WaitTimeoutError` saying what was last seen. Pods stuck on an error (no free GPU, image
pull, OOM, CUDA out of memory, model missing) fail the wait at once instead of at the timeout, unless
``fail_fast=False`` or the cluster autoscaler is adding a node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kubernetes import watch

from ..errors import ClusterError, DeploymentFailedError, JobFailedError, WaitTimeoutError
from ..specs.diagnosis import Diagnosis, Severity, diagnose_pod, format_diagnoses
from ..specs.labels import selector_matching
from .apply import get
from .client import Kube, ObjectRef
from .inventory import current_pods, list_pods, pod_events, pod_logs

INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
LWS_NAME_LABEL = "leaderworkerset.sigs.k8s.io/name"
LWS_WORKER_INDEX = "leaderworkerset.sigs.k8s.io/worker-index"
_SCHEDULING_CODES = {"no-free-gpu", "no-matching-node", "not-enough-resources", "untolerated-taint"}


def parse_indexes(text: str | None) -> frozenset[int]:
    """'0-2,4' -> {0, 1, 2, 4} (the format of a Job's completedIndexes and failedIndexes)."""
    out: set[int] = set()
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        lo, _, hi = part.partition("-")
        out.update(range(int(lo), int(hi or lo) + 1))
    return frozenset(out)


@dataclass(frozen=True)
class JobProgress:
    """Where an Indexed Job stands: per-index completion, failures and pod phases."""

    name: str
    completions: int
    completed: frozenset[int] = frozenset()
    failed: frozenset[int] = frozenset()
    active: int = 0
    pods: dict = field(default_factory=dict)  # index -> pod phase
    state: str = "running"  # running | complete | failed
    message: str = ""

    def per_index(self) -> dict[int, str]:
        """index -> 'done', 'failed', or the phase of its pod in lower case ('running', 'pending'), else 'waiting'."""
        return {i: "done" if i in self.completed else "failed" if i in self.failed else
                str(self.pods.get(i, "waiting")).lower() for i in range(self.completions)}

    @property
    def fraction(self) -> float:
        return len(self.completed) / self.completions if self.completions else 0.0

    def summary(self) -> str:
        text = f"Job {self.name}: {len(self.completed)}/{self.completions} indexes done"
        text += f", {len(self.failed)} failed ({sorted(self.failed)})" if self.failed else ""
        text += f", {self.active} running" if self.active else ""
        return text + ("" if self.state == "running" else f" - {self.state}")


def job_progress(job: dict, pods: list[dict] = ()) -> JobProgress:
    """Progress from a Job and its pods, as the API returns them (pure)."""
    spec, status = job.get("spec") or {}, job.get("status") or {}
    completions = int(spec.get("completions") or 1)
    completed = parse_indexes(status.get("completedIndexes"))
    if not completed and status.get("succeeded") and spec.get("completionMode") != "Indexed":
        completed = frozenset(range(min(int(status["succeeded"]), completions)))
    conditions = {c.get("type"): c for c in status.get("conditions") or [] if c.get("status") == "True"}
    state, message = "running", ""
    if "Failed" in conditions or "FailureTarget" in conditions:
        cond = conditions.get("Failed") or conditions["FailureTarget"]
        state, message = "failed", f"{cond.get('reason') or ''}: {cond.get('message') or ''}".strip(": ")
    elif "Complete" in conditions or "SuccessCriteriaMet" in conditions:
        state = "complete"
    phases = {}
    for pod in pods:
        index = ((pod.get("metadata") or {}).get("labels") or {}).get(INDEX_LABEL)
        if index is not None and index.isdigit():
            phases[int(index)] = (pod.get("status") or {}).get("phase") or "Pending"
    return JobProgress(job["metadata"]["name"], completions, completed, parse_indexes(status.get("failedIndexes")),
                       int(status.get("active") or 0), phases, state, message)


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of ``current`` (a later log tail) that follow what ``previous`` already showed (pure)."""
    for start in range(len(previous)):
        overlap = previous[start:]
        if current[:len(overlap)] == overlap:
            return current[len(overlap):]
    return list(current)


def _blocking(diagnoses: list[Diagnosis], events: list[dict], ignore: frozenset[str] = frozenset()) -> list[Diagnosis]:
    """The ERROR diagnoses that will not resolve by themselves (scheduling waits if the autoscaler scales up)."""
    scaling = any(e.get("reason") == "TriggeredScaleUp" for e in events)
    return [d for d in diagnoses if d.severity is Severity.ERROR and d.code not in ignore
            and not (scaling and d.code in _SCHEDULING_CODES)]


def _examine(kube: Kube, pod: dict, tail_lines: int) -> tuple[list[Diagnosis], list[dict], str]:
    events = pod_events(kube, pod)
    logs = pod_logs(kube, pod, tail_lines)
    return diagnose_pod(pod, events, logs), events, logs


def _wait_for_job_change(kube: Kube, ref: ObjectRef, resource_version: str | None, seconds: float) -> None:
    """Block until the Job changes or ``seconds`` pass (a watch stream on the one Job)."""
    watcher = watch.Watch()
    stream = watcher.stream(kube.batch.list_namespaced_job, ref.namespace, field_selector=f"metadata.name={ref.name}",
                            resource_version=resource_version, timeout_seconds=max(1, int(seconds)),
                            _request_timeout=seconds + 10, deserialize=False)
    try:
        for _ in stream:
            break
    except Exception as exc:  # a broken watch only means we look again sooner
        if isinstance(exc, ClusterError):
            raise
        time.sleep(min(seconds, 1.0))
    finally:
        watcher.stop()
        stream.close()


def wait_for_job(kube: Kube, name: str, namespace: str, timeout: float = 3600.0,
                 on_progress: Callable[[JobProgress], None] | None = None, *, poll: float = 5.0,
                 tail_lines: int = 30, fail_fast: bool = True) -> JobProgress:
    """Wait for Job ``name`` to complete; ``on_progress`` gets a JobProgress whenever it changes."""
    ref = ObjectRef("batch/v1", "Job", name, namespace)
    deadline, last = time.monotonic() + timeout, None
    while True:
        job = get(kube, ref)
        if job is None:
            raise ClusterError(f"{ref} does not exist: apply it first (or it was deleted).", obj=ref)
        pods = list_pods(kube, namespace, f"job-name={name}")
        progress = job_progress(job, pods)
        if progress != last and on_progress:
            on_progress(progress)
        last = progress
        if progress.state == "complete":
            return progress
        failed_pods = sorted((p for p in pods if (p.get("status") or {}).get("phase") == "Failed"),
                             key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))
        if progress.state == "failed":
            raise _job_failure(kube, progress, failed_pods[-1:] or pods[-1:], tail_lines)
        if fail_fast:
            for pod in pods:
                if (pod.get("status") or {}).get("phase") in ("Pending", "Running"):
                    diagnoses, events, logs = _examine(kube, pod, tail_lines)
                    if _blocking(diagnoses, events, frozenset({"crash-loop"})):  # the backoff limit decides
                        raise _job_failure(kube, progress, [pod], tail_lines, (diagnoses, logs))
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            stuck = [d for p in pods if (p.get("status") or {}).get("phase") == "Pending"
                     for d in _examine(kube, p, tail_lines)[0]]
            hint = f"\n{format_diagnoses(stuck)}" if stuck else ""
            raise WaitTimeoutError(f"Timed out after {timeout:g} s waiting for {ref}. Last seen: "
                                   f"{progress.summary()}.{hint}", obj=progress)
        _wait_for_job_change(kube, ref, job["metadata"].get("resourceVersion"), min(remaining, poll))


def _job_failure(kube: Kube, progress: JobProgress, pods: list[dict], tail_lines: int,
                 examined: tuple[list[Diagnosis], str] | None = None) -> JobFailedError:
    pod = pods[0] if pods else None
    diagnoses, logs = examined or ((_examine(kube, pod, tail_lines)[::2]) if pod else ([], ""))
    name = (pod or {}).get("metadata", {}).get("name", "?")
    why = f" ({progress.message})" if progress.message else ""
    text = f"{progress.summary()}{why}."
    if diagnoses:
        text += f"\nDiagnosis:\n{format_diagnoses(diagnoses)}"
    if logs.strip():
        text += f"\nLast log lines of pod {name}:\n{logs.rstrip()}"
    return JobFailedError(text, obj=progress, logs=logs, diagnosis=diagnoses)


@dataclass(frozen=True)
class RolloutState:
    """Where a Deployment or LeaderWorkerSet stands: ``ready`` of ``replicas`` groups are serving."""

    kind: str
    name: str
    replicas: int
    ready: int
    done: bool
    message: str = ""

    def summary(self) -> str:
        return f"{self.kind} {self.name}: {self.ready}/{self.replicas} ready" + (f" ({self.message})"
                                                                               if self.message else "")


def rollout_state(obj: dict) -> RolloutState:
    """Ready or not, from a Deployment or LeaderWorkerSet as the API returns it (pure)."""
    spec, status, meta = obj.get("spec") or {}, obj.get("status") or {}, obj.get("metadata") or {}
    replicas = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
    ready = int(status.get("readyReplicas") or 0)
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    message = ""
    stalled = conditions.get("Progressing", {})
    if stalled.get("status") == "False" and stalled.get("reason") == "ProgressDeadlineExceeded":
        message = "ProgressDeadlineExceeded: " + (stalled.get("message") or "")
    current = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated = obj.get("kind") != "Deployment" or int(status.get("updatedReplicas") or 0) >= replicas
    done = ready >= replicas and updated and (current or obj.get("kind") != "Deployment")
    return RolloutState(obj.get("kind", ""), meta.get("name", ""), replicas, ready, done, message)


def _sorted_pods(kube: Kube, ref: ObjectRef, obj: dict, selector: str) -> list[dict]:
    """The workload's current pods, the leader (worker-index 0) or first pod first: its log is the one followed."""
    return sorted(current_pods(kube, obj, list_pods(kube, ref.namespace, selector)),
                  key=lambda p: ((p["metadata"].get("labels") or {}).get(LWS_WORKER_INDEX, "0") != "0",
                                 p["metadata"]["name"]))


def _wait_rollout(kube: Kube, ref: ObjectRef, selector: Callable[[dict], str], timeout: float, on_log, on_diagnosis,
                  poll: float, tail_lines: int, fail_fast: bool) -> RolloutState:
    deadline, shown, reported = time.monotonic() + timeout, [], set()

    def follow(logs: str) -> None:
        nonlocal shown
        lines = logs.splitlines()
        for line in new_lines(shown, lines):
            on_log(line)
        shown = lines

    while True:
        obj = get(kube, ref)
        if obj is None:
            raise ClusterError(f"{ref} does not exist: apply it first (or it was deleted).", obj=ref)
        obj.setdefault("kind", ref.kind)
        state = rollout_state(obj)
        pods = _sorted_pods(kube, ref, obj, selector(obj))
        if state.done:
            if on_log and pods:  # the last lines (e.g. "Application startup complete") before returning
                follow(pod_logs(kube, pods[0], tail_lines))
            return state
        findings = []
        for i, pod in enumerate(pods):
            diagnoses, events, logs = _examine(kube, pod, tail_lines if i == 0 else 20)
            if i == 0 and on_log:
                follow(logs)
            findings += diagnoses
            for d in diagnoses:
                if on_diagnosis and (d.subject, d.code) not in reported:
                    reported.add((d.subject, d.code))
                    on_diagnosis(d)
            if state.message or (fail_fast and _blocking(diagnoses, events)):
                raise _rollout_failure(state, pod, diagnoses, logs)
        if state.message:
            raise _rollout_failure(state, None, findings, "")
        if time.monotonic() >= deadline:
            hint = f"\n{format_diagnoses(findings)}" if findings else ""
            raise WaitTimeoutError(f"Timed out after {timeout:g} s waiting for {ref} to become ready. Last seen: "
                                   f"{state.summary()}, {len(pods)} pod(s).{hint}", obj=state)
        time.sleep(max(0.01, min(poll, deadline - time.monotonic())))


def _rollout_failure(state: RolloutState, pod: dict | None, diagnoses: list[Diagnosis],
                     logs: str) -> DeploymentFailedError:
    text = f"{state.summary()} and will not become ready on its own."
    if diagnoses:
        text += f"\nDiagnosis:\n{format_diagnoses(diagnoses)}"
    if pod is not None and logs.strip():
        text += f"\nLast log lines of pod {pod['metadata']['name']}:\n{logs.rstrip()}"
    return DeploymentFailedError(text, obj=state, logs=logs, diagnosis=diagnoses)


def _match_labels(obj: dict) -> str:
    return selector_matching(((obj.get("spec") or {}).get("selector") or {}).get("matchLabels"))


def wait_for_deployment(kube: Kube, name: str, namespace: str, timeout: float = 3600.0,
                        on_log: Callable[[str], None] | None = None, *,
                        on_diagnosis: Callable[[Diagnosis], None] | None = None, poll: float = 3.0,
                        tail_lines: int = 100, fail_fast: bool = True) -> RolloutState:
    """Wait until Deployment ``name`` is ready; ``on_log`` gets each new log line of its first pod."""
    return _wait_rollout(kube, ObjectRef("apps/v1", "Deployment", name, namespace), _match_labels, timeout, on_log,
                         on_diagnosis, poll, tail_lines, fail_fast)


def wait_for_leader_worker_set(kube: Kube, name: str, namespace: str, timeout: float = 3600.0,
                               on_log: Callable[[str], None] | None = None, *,
                               on_diagnosis: Callable[[Diagnosis], None] | None = None, poll: float = 3.0,
                               tail_lines: int = 100, fail_fast: bool = True) -> RolloutState:
    """Wait until LeaderWorkerSet ``name`` is ready; ``on_log`` follows the leader pod's log."""
    ref = ObjectRef("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet", name, namespace)
    return _wait_rollout(kube, ref, lambda obj: f"{LWS_NAME_LABEL}={name}", timeout, on_log, on_diagnosis, poll,
                         tail_lines, fail_fast)
