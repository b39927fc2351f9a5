"""A preflight report: rows of pass/fail/skip checks, each failure with what to do. Pure (no I/O), shared by the
cluster's preflight (:mod:`tke_playbook.kube.preflight`) and the local target's, so the local path never
loads the Kubernetes client."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CheckRow:
    """One check: ``ok`` is True (pass), False (fail) or None (skipped because an earlier check failed)."""

    check: str
    ok: bool | None
    detail: str
    action: str = ""

    @property
    def mark(self) -> str:
        return {True: "PASS", False: "FAIL", None: "skip"}[self.ok]


@dataclass(frozen=True)
class PreflightReport:
    rows: tuple[CheckRow, ...]

    @property
    def ok(self) -> bool:
        return all(row.ok is not False for row in self.rows)

    @property
    def failures(self) -> list[CheckRow]:
        return [row for row in self.rows if row.ok is False]

    def to_frame(self):
        import pandas as pd  # late: specs stay light (the command line imports them)

        return pd.DataFrame([{"check": r.check, "result": r.mark, "detail": r.detail, "what to do": r.action}
                             for r in self.rows])

    def __str__(self) -> str:
        width = max((len(r.check) for r in self.rows), default=0)
        lines = [f"{r.mark:4}  {r.check:{width}}  {r.detail}" + (f"\n      {'':{width}}  -> {r.action}"
                                                                  if r.action else "") for r in self.rows]
        verdict = "Ready." if self.ok else f"{len(self.failures)} check(s) failed: fix them and run preflight again."
        return "\n".join(lines + [verdict])

    def _repr_html_(self) -> str:
        return self.to_frame()._repr_html_()
