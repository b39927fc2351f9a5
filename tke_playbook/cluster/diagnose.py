"""The diagnosis rules, where the cluster package always had them: they live in :mod:`tke_playbook.diagnosis`
(pure, shared with the local target)."""

from ..diagnosis import Diagnosis, Severity, diagnose_log, diagnose_pod, diagnose_pvc, format_diagnoses

__all__ = ["Diagnosis", "Severity", "diagnose_log", "diagnose_pod", "diagnose_pvc", "format_diagnoses"]
