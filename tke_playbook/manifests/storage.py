"""The storage objects of a :class:`~tke_playbook.specs.storage.StorageSpec`: the CFS StorageClass and the PVC."""

from __future__ import annotations

from ..errors import InvalidSpecError
from ..specs import labels as L
from ..specs.storage import CFS_NFS_VERSION, CFS_PROVISIONER, StorageSpec


def build_storage_class(spec: StorageSpec) -> dict:
    """The CFS StorageClass (cluster-scoped)."""
    if not spec.creates_storage_class:
        raise InvalidSpecError(f"A CFS StorageClass needs vpc_id, subnet_id and zone (the GPU node's zone and a "
                               f"subnet in it): set them, or create StorageClass '{spec.storage_class}' in the TKE "
                               f"console as the tutorial does", field="vpc_id", value=None)
    params = {"vpcid": spec.vpc_id, "subnetid": spec.subnet_id, "zone": spec.zone, "vers": CFS_NFS_VERSION,
              "storagetype": spec.storage_type.value}
    if spec.pgroup_id:
        params["pgroupid"] = spec.pgroup_id
    sc = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
          "metadata": {"name": spec.storage_class,
                       "labels": L.common_labels(L.Component.STORAGE, spec.storage_class)},
          "provisioner": CFS_PROVISIONER, "parameters": params, "reclaimPolicy": spec.reclaim_policy.value,
          "volumeBindingMode": "Immediate"}
    if spec.mount_options:
        sc["mountOptions"] = list(spec.mount_options)
    return sc


def build_pvc(spec: StorageSpec) -> dict:
    """The ReadWriteMany PVC every download pod writes to and every vLLM pod reads from."""
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": spec.pvc_name, "namespace": spec.namespace,
                         "labels": L.common_labels(L.Component.STORAGE, spec.pvc_name)},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": spec.storage_class,
                     "resources": {"requests": {"storage": spec.size}}}}
