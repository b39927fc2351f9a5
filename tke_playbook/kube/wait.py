"""Waiting for Jobs, Deployments and LeaderWorkerSets, with progress, a live log tail and plain-words failures.

A wait ends in one of three ways: success (returns the last state), a failure that will not fix itself
(:class:`JobFailedError` / :class:`DeploymentFailedError` carrying the failing pod's last log lines and a
diagnosis), or :class:`WaitTimeoutError` saying what was last seen. Pods stuck on an error (no free GPU, image
pull, OOM, CUDA out of memory, model missing) fail the wait at once instead of at the timeout, unless
``fail_fast=False`` or the cluster autoscaler is adding a node.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from kubernetes import watch

from ..errors import ClusterError, DeploymentFailedError, JobFailedError, WaitTimeoutError
from ..specs.diagnosis import Diagnosis, Severity, diagnose_pod, format_diagnoses
from ..specs.labels import selector_matching
from ..specs.objects import Job, KubeEvent, Pod, Workload, events_of
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


def job_progress(job: dict | Job, pods: Iterable[dict | Pod] = ()) -> JobProgress:
    """Progress from a Job and its pods, as the API returns them (pure)."""
    job = Job.of(job)
    completed = parse_indexes(job.completed_indexes)
    if not completed and job.succeeded and not job.indexed:
        completed = frozenset(range(min(job.succeeded, job.completions)))
    failed = job.true_condition("Failed", "FailureTarget")
    if failed is not None:
        state, message = "failed", failed.summary()
    else:
        state, message = "complete" if job.true_condition("Complete", "SuccessCriteriaMet") else "running", ""
    phases = {int(index): pod.phase for pod in map(Pod.of, pods)
              if (index := pod.meta.labels.get(INDEX_LABEL, "")).isdigit()}
    return JobProgress(job.meta.name, job.completions, completed, parse_indexes(job.failed_indexes), job.active,
                       phases, state, message)


def new_lines(previous: list[str], current: list[str]) -> list[str]:
    """The lines of ``current`` (a later log tail) that follow what ``previous`` already showed (pure)."""
    for start in range(len(previous)):
        overlap = previous[start:]
        if current[:len(overlap)] == overlap:
            return current[len(overlap):]
    return list(current)


def _blocking(diagnoses: list[Diagnosis], events: list[KubeEvent], ignore: frozenset[str] = frozenset()) -> list[Diagnosis]:
    """The ERROR diagnoses that will not resolve by themselves (scheduling waits if the autoscaler scales up)."""
    scaling = any(e.reason == "TriggeredScaleUp" for e in events)
    return [d for d in diagnoses if d.severity is Severity.ERROR and d.code not in ignore
            and not (scaling and d.code in _SCHEDULING_CODES)]


@dataclass(frozen=True)
class _Examined:
    """One pod's findings, the events they came from and its log tail."""

    pod: Pod
    diagnoses: list[Diagnosis]
    events: list[KubeEvent]
    logs: str

    def blocking(self, ignore: frozenset[str] = frozenset()) -> list[Diagnosis]:
        return _blocking(self.diagnoses, self.events, ignore)


def _examine(kube: Kube, pod: Pod, tail_lines: int) -> _Examined:
    events = events_of(pod_events(kube, pod))
    logs = pod_logs(kube, pod, tail_lines)
    return _Examined(pod, diagnose_pod(pod, events, logs), events, logs)


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
        job = Job.of(_existing(kube, ref))
        pods = [Pod.of(p) for p in list_pods(kube, namespace, f"job-name={name}")]
        progress = job_progress(job, pods)
        if progress != last and on_progress:
            on_progress(progress)
        last = progress
        if progress.state == "complete":
            return progress
        _check_job(kube, progress, pods, tail_lines, fail_fast)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise _job_timeout(kube, ref, progress, pods, timeout, tail_lines)
        _wait_for_job_change(kube, ref, job.meta.resource_version or None, min(remaining, poll))


def _existing(kube: Kube, ref: ObjectRef) -> dict:
    obj = get(kube, ref)
    if obj is None:
        raise ClusterError(f"{ref} does not exist: apply it first (or it was deleted).", obj=ref)
    return obj


def _check_job(kube: Kube, progress: JobProgress, pods: list[Pod], tail_lines: int, fail_fast: bool) -> None:
    """Raise JobFailedError when the Job failed, or (``fail_fast``) when a pod of it will not get anywhere."""
    if progress.state == "failed":
        failed = sorted((p for p in pods if p.phase == "Failed"), key=lambda p: p.meta.creation_timestamp)
        raise _job_failure(kube, progress, failed[-1:] or pods[-1:], tail_lines)
    if not fail_fast:
        return
    for pod in pods:
        if pod.phase in ("Pending", "Running"):
            examined = _examine(kube, pod, tail_lines)
            if examined.blocking(frozenset({"crash-loop"})):  # the backoff limit decides
                raise _job_failure(kube, progress, [pod], tail_lines, examined)


def _job_timeout(kube: Kube, ref: ObjectRef, progress: JobProgress, pods: list[Pod], timeout: float,
                 tail_lines: int) -> WaitTimeoutError:
    stuck = [d for p in pods if p.phase == "Pending" for d in _examine(kube, p, tail_lines).diagnoses]
    hint = f"\n{format_diagnoses(stuck)}" if stuck else ""
    return WaitTimeoutError(f"Timed out after {timeout:g} s waiting for {ref}. Last seen: {progress.summary()}."
                            f"{hint}", obj=progress)


def _job_failure(kube: Kube, progress: JobProgress, pods: list[Pod], tail_lines: int,
                 examined: _Examined | None = None) -> JobFailedError:
    if examined is None and pods:
        examined = _examine(kube, pods[0], tail_lines)
    diagnoses, logs = (examined.diagnoses, examined.logs) if examined else ([], "")
    why = f" ({progress.message})" if progress.message else ""
    text = f"{progress.summary()}{why}."
    if diagnoses:
        text += f"\nDiagnosis:\n{format_diagnoses(diagnoses)}"
    if logs.strip():
        text += f"\nLast log lines of pod {examined.pod.name if examined else '?'}:\n{logs.rstrip()}"
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


def rollout_state(obj: dict | Workload) -> RolloutState:
    """Ready or not, from a Deployment or LeaderWorkerSet as the API returns it (pure)."""
    workload = Workload.of(obj)
    progressing = workload.condition("Progressing")
    message = ""
    if progressing is not None and progressing.false and progressing.reason == "ProgressDeadlineExceeded":
        message = "ProgressDeadlineExceeded: " + progressing.message
    # a Deployment is done once its controller saw the latest spec and every replica runs it
    deployment = workload.kind == "Deployment"
    current = workload.observed_generation >= workload.meta.generation
    updated = workload.updated_replicas >= workload.replicas
    done = workload.ready_replicas >= workload.replicas and (not deployment or (updated and current))
    return RolloutState(workload.kind, workload.meta.name, workload.replicas, workload.ready_replicas, done, message)


def _sorted_pods(kube: Kube, ref: ObjectRef, workload: Workload, selector: str) -> list[Pod]:
    """The workload's current pods, the leader (worker-index 0) or first pod first: its log is the one followed."""
    pods = current_pods(kube, workload, [Pod.of(p) for p in list_pods(kube, ref.namespace, selector)])
    return sorted(pods, key=lambda p: (p.meta.labels.get(LWS_WORKER_INDEX, "0") != "0", p.name))


class _Watch:
    """What a rollout wait has shown so far: the followed pod's log lines and the diagnoses reported."""

    def __init__(self, on_log: Callable[[str], None] | None, on_diagnosis: Callable[[Diagnosis], None] | None):
        self.on_log, self.on_diagnosis = on_log, on_diagnosis
        self.shown: list[str] = []
        self.reported: set[tuple[str, str]] = set()

    def follow(self, logs: str) -> None:
        lines = logs.splitlines()
        for line in new_lines(self.shown, lines) if self.on_log else ():
            self.on_log(line)
        self.shown = lines

    def report(self, diagnoses: list[Diagnosis]) -> None:
        for d in diagnoses if self.on_diagnosis else ():
            if (d.subject, d.code) not in self.reported:
                self.reported.add((d.subject, d.code))
                self.on_diagnosis(d)


def _examine_rollout(kube: Kube, state: RolloutState, pods: list[Pod], watch: _Watch, tail_lines: int,
                     fail_fast: bool) -> list[Diagnosis]:
    """Every pod's findings (the first pod's log followed); raise when the rollout will not finish by itself."""
    findings: list[Diagnosis] = []
    for i, pod in enumerate(pods):
        examined = _examine(kube, pod, tail_lines if i == 0 else 20)
        if i == 0:
            watch.follow(examined.logs)
        findings += examined.diagnoses
        watch.report(examined.diagnoses)
        if state.message or (fail_fast and examined.blocking()):
            raise _rollout_failure(state, pod, examined.diagnoses, examined.logs)
    if state.message:
        raise _rollout_failure(state, None, findings, "")
    return findings


def _wait_rollout(kube: Kube, ref: ObjectRef, selector: Callable[[Workload], str], timeout: float, on_log,
                  on_diagnosis, poll: float, tail_lines: int, fail_fast: bool) -> RolloutState:
    deadline, watch = time.monotonic() + timeout, _Watch(on_log, on_diagnosis)
    while True:
        obj = _existing(kube, ref)
        obj.setdefault("kind", ref.kind)
        workload = Workload.of(obj)
        state = rollout_state(workload)
        pods = _sorted_pods(kube, ref, workload, selector(workload))
        if state.done:
            if on_log and pods:  # the last lines (e.g. "Application startup complete") before returning
                watch.follow(pod_logs(kube, pods[0], tail_lines))
            return state
        findings = _examine_rollout(kube, state, pods, watch, tail_lines, fail_fast)
        if time.monotonic() >= deadline:
            hint = f"\n{format_diagnoses(findings)}" if findings else ""
            raise WaitTimeoutError(f"Timed out after {timeout:g} s waiting for {ref} to become ready. Last seen: "
                                   f"{state.summary()}, {len(pods)} pod(s).{hint}", obj=state)
        time.sleep(max(0.01, min(poll, deadline - time.monotonic())))


def _rollout_failure(state: RolloutState, pod: Pod | None, diagnoses: list[Diagnosis],
                     logs: str) -> DeploymentFailedError:
    text = f"{state.summary()} and will not become ready on its own."
    if diagnoses:
        text += f"\nDiagnosis:\n{format_diagnoses(diagnoses)}"
    if pod is not None and logs.strip():
        text += f"\nLast log lines of pod {pod.name}:\n{logs.rstrip()}"
    return DeploymentFailedError(text, obj=state, logs=logs, diagnosis=diagnoses)


def _match_labels(workload: Workload) -> str:
    return selector_matching(workload.match_labels)
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
