"""What a download pod runs - and the local target's worker processes: standard library only, so pods install
nothing. The download Job ships these files, flat, in its worker ConfigMap (see
:mod:`tke_playbook.manifests.download`); each module therefore imports its siblings relatively when it is part of
the package and by plain name when it runs flat in a pod. Keep it that way: no third-party import, no import from
the rest of tke_playbook except :mod:`tke_playbook.errors` (with the same fallback).

``worker`` (one shard: fetch or keep, verify, stage, swap in), ``hubapi`` (list a Hugging Face or ModelScope
repository at a commit), ``transfer`` (ranged HTTP with retries), ``rules`` (one validation of a listing),
``planner`` (the byte-balanced :class:`~tke_playbook.podworker.planner.DownloadPlan`), ``progress`` (state files
on the volume) and ``modelfolder`` (when a model folder is complete: the contract between downloading and serving).
"""
