"""How a deployment looks to Kubernetes: pure ``build_*`` functions from specs to manifests (plain dicts), the
whole plan in apply order, its YAML, and the tutorial chart's values. No I/O: nothing here talks to a cluster.

``storage`` (CFS StorageClass, PVC), ``download`` (the Indexed Job, its worker ConfigMap, the hub-token Secret),
``serving`` (API-key Secret, auth-proxy ConfigMap, Deployment or LeaderWorkerSet, Service), ``scaleout`` (PDB,
topology spread, HPA or KEDA), ``plan`` (all of them in order, cross-checked, and the Helm values), ``yamldoc``
(multi-document YAML, Secrets redacted) and ``profiles`` (named starting points rendered in one call).
"""

from .download import build_download_job, build_download_objects, build_token_secret, build_worker_configmap
from .plan import build_helm_values, build_plan, plan_notes
from .profiles import Profile, get_profile, render_profile, with_overrides
from .scaleout import (Autoscaler, ScaleOutSpec, add_scale_out, build_hpa, build_pdb, build_scale_out,
                       build_scaled_object, render_scale_out)
from .serving import (build_deployment, build_leader_worker_set, build_proxy_configmap, build_secret, build_service,
                      build_serving_objects, build_workload)
from .storage import build_pvc, build_storage_class
from .yamldoc import plan_to_yaml, redact_secrets

__all__ = ["Autoscaler", "Profile", "ScaleOutSpec", "add_scale_out", "build_deployment", "build_download_job",
           "build_download_objects", "build_helm_values", "build_hpa", "build_leader_worker_set", "build_pdb",
           "build_plan", "build_proxy_configmap", "build_pvc", "build_scale_out", "build_scaled_object",
           "build_secret", "build_service", "build_serving_objects", "build_storage_class", "build_token_secret",
           "build_worker_configmap", "build_workload", "get_profile", "plan_notes", "plan_to_yaml", "redact_secrets",
           "render_profile", "render_scale_out", "with_overrides"]
