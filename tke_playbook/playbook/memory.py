"""The only things a playbook keeps in a kernel's memory (everything else is in files, see
:mod:`~tke_playbook.playbook.records`): the plan the plan cell of 02 made (with the local hub mirror that serves it,
when the plan was made offline), and whether the last reading of each form failed.

Both exist so that a cell after a failed one never uses an older value left in the kernel: a launch cell never
runs a stale plan, a deploy cell never deploys the spec of a form whose last reading was refused.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from ..errors import InvalidSpecError, NoDownloadError, PlanMismatchError, PlaybookError
from ..podworker.planner import DownloadPlan, require_plan_for
from ..specs.download import DownloadSpec


class Stoppable(Protocol):
    def stop(self) -> Any: ...


def require_matching_plan(spec: DownloadSpec, plan: DownloadPlan) -> None:
    """Raise PlanMismatchError unless ``plan`` was made for ``spec`` (model, hub repository, revision, PVC, shards):
    a plan left from an earlier run of the plan cell must never download another model."""
    try:
        require_plan_for(spec, plan)
    except InvalidSpecError as exc:
        raise PlanMismatchError(f"{exc.message.rstrip('.')}: run the plan cell again with this form, then launch",
                                obj=plan.model_path, cause=exc)


class PlanMemory:
    """The plan the plan cell of 02 made in this kernel, for the launch cell; forgotten when the plan cell fails,
    so a launch can never run a stale plan. A plan made offline comes with the local hub mirror that serves its
    files (``mirror``), handed to the launch (:meth:`take_mirror`) or stopped when the plan is forgotten."""

    def __init__(self) -> None:
        self._last: tuple[DownloadSpec, DownloadPlan] | None = None  # of the last plan cell, when it succeeded
        self._failed = False  # the last plan cell of this kernel failed: no plan may be launched
        self._mirror: Stoppable | None = None

    def make(self, spec: DownloadSpec, make: Callable[[], tuple[DownloadPlan, Stoppable | None]]) -> DownloadPlan:
        """Run the plan cell's ``make()`` (the plan, and the mirror serving it or None); remember them for
        ``spec``, or - when it fails - that it failed."""
        self.forget()
        self._failed = True
        plan, self._mirror = make()
        self._last, self._failed = (spec, plan), False
        return plan

    def planned(self, spec: DownloadSpec, plan: DownloadPlan | None = None) -> DownloadPlan:
        """``plan`` (checked against ``spec``), else the plan the plan cell made for this very spec."""
        if plan is None:
            if self._last is None or self._last[0] != spec:
                raise NoDownloadError(f"There is no plan for {spec.model} from this kernel: run the plan cell "
                                      "(pb.download.plan) with this spec, then launch", obj=spec.model)
            plan = self._last[1]
        require_matching_plan(spec, plan)
        if self._failed:
            raise NoDownloadError("The plan cell failed the last time it ran, so its plan is gone: run the plan "
                                  "cell again, then launch", obj=spec.model)
        return plan

    def take_mirror(self) -> Stoppable | None:
        """The running mirror of the plan (the launch stops it when its download ends), or None."""
        mirror, self._mirror = self._mirror, None
        return mirror

    def forget(self) -> None:
        """Forget the plan and stop a mirror no launch took."""
        mirror = self.take_mirror()
        if mirror is not None:
            mirror.stop()
        self._last = None


class FormMemory:
    """Whether this kernel's last reading of each kind of form failed (:meth:`read`), so the cells after a failed
    spec cell refuse the spec an earlier run left in the kernel (:meth:`check`) - as :class:`PlanMemory` does for
    the plan cell."""

    def __init__(self) -> None:
        self._failed: dict[type, str] = {}  # spec type -> the error of its form's last reading

    def read(self, form: Any) -> Any:
        """``form.spec()``; remember whether it failed for the form's kind of spec (``form.spec_type``)."""
        kind = getattr(form, "spec_type", None)
        try:
            spec = form.spec()
        except PlaybookError as exc:
            if kind is not None:
                self._failed[kind] = str(exc)
            raise
        self._failed.pop(kind or type(spec), None)
        return spec

    def check(self, spec: Any) -> None:
        """Raise InvalidSpecError when the last reading of ``spec``'s form in this kernel failed."""
        problem = self._failed.get(type(spec))
        if problem is not None:
            raise InvalidSpecError(f"The form's last reading was refused (the red message under its spec cell), so "
                                   f"this cell would use an older {type(spec).__name__}: fix the form, run its spec "
                                   f"cell again, then this cell", field="form", value=problem)
