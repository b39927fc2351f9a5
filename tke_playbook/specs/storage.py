"""Where model weights live: the spec of a Tencent CFS StorageClass and a ReadWriteMany PVC (``ai-model`` by default).

The objects themselves are built by :mod:`tke_playbook.manifests.storage`.

The CFS CSI provisioner (``com.tencent.cloud.csi.cfs``, installed by TKE's CFS add-on) needs the VPC and subnet
to create the file system in (``vpcid``, ``subnetid``); ``zone`` pins it to a zone (without it the driver uses its
controller's zone, and a subnet of another zone fails), ``vers: "3"`` is the NFS v3 the TKE console uses,
``storagetype`` is SD (standard) or HP (performance), ``pgroupid`` a permission group. The toolkit renders a
StorageClass only with VPC, subnet AND zone - the GPU node's zone, as the tutorial says; without them it expects
one named ``storage_class`` to exist (created in the console, as in the tutorial).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from ..errors import InvalidSpecError
from .names import quantity_to_float, unknown, validate_name, validate_quantity, validate_subdomain
from .plain import PlainSpec

CFS_PROVISIONER = "com.tencent.cloud.csi.cfs"
CFS_NFS_VERSION = "3"  # the console's choice
DEFAULT_PVC = "ai-model"


class CfsStorageType(str, enum.Enum):
    STANDARD = "SD"     # low cost, large capacity
    PERFORMANCE = "HP"  # higher throughput: faster model loads


class ReclaimPolicy(str, enum.Enum):
    RETAIN = "Retain"   # keep the weights when the PVC goes (the Tencent docs recommend it)
    DELETE = "Delete"


def _check_id(value: str | None, prefix: str, what: str) -> str | None:
    if value is not None and not re.fullmatch(rf"{prefix}-[a-z0-9]+", str(value)):
        raise InvalidSpecError(f"{what} '{value}' does not look like a Tencent Cloud id: expected '{prefix}-' and "
                               f"lowercase letters or digits, e.g. '{prefix}-abcd1234'", field=what, value=value)
    return value


@dataclass(frozen=True)
class StorageSpec(PlainSpec):
    """A PVC on CFS; the StorageClass too when ``vpc_id`` and ``subnet_id`` are given."""

    pvc_name: str = DEFAULT_PVC
    namespace: str = "default"
    size: str = "100Gi"
    storage_class: str = "cfs"
    vpc_id: str | None = None
    subnet_id: str | None = None
    zone: str | None = None
    pgroup_id: str | None = None
    storage_type: CfsStorageType = CfsStorageType.STANDARD
    reclaim_policy: ReclaimPolicy = ReclaimPolicy.RETAIN
    mount_options: tuple[str, ...] = ()

    def __post_init__(self):
        validate_name(self.pvc_name, "PVC name")
        validate_name(self.namespace, "Namespace")
        validate_subdomain(self.storage_class, "StorageClass name")
        validate_quantity(self.size, "PVC size")
        if quantity_to_float(self.size) <= 0:
            raise InvalidSpecError(f"PVC size '{self.size}' must be more than zero, such as '100Gi'",
                                   field="size", value=self.size)
        _check_id(self.vpc_id, "vpc", "vpc_id")
        _check_id(self.subnet_id, "subnet", "subnet_id")
        if self.zone is not None and not re.fullmatch(r"[a-z]+(-[a-z]+)+-\d+", str(self.zone)):
            raise InvalidSpecError(f"zone '{self.zone}' is not a Tencent Cloud zone such as 'ap-guangzhou-3'",
                                   field="zone", value=self.zone)
        given = [self.vpc_id is not None, self.subnet_id is not None, self.zone is not None]
        if any(given) and not all(given):
            raise InvalidSpecError("To render the CFS StorageClass give vpc_id, subnet_id and zone together (the GPU "
                                   "node's zone and a subnet in it), or none of them to use an existing "
                                   "StorageClass", field="zone", value=(self.vpc_id, self.subnet_id, self.zone))
        _check_id(self.pgroup_id, "pgroup", "pgroup_id")
        for what, kind in (("storage_type", CfsStorageType), ("reclaim_policy", ReclaimPolicy)):
            value = getattr(self, what)
            if not isinstance(value, kind):
                try:
                    object.__setattr__(self, what, kind(value))
                except ValueError:
                    raise unknown(what.replace("_", " "), str(value), [m.value for m in kind]) from None
        object.__setattr__(self, "mount_options", tuple(self.mount_options))

    @property
    def creates_storage_class(self) -> bool:
        """Whether the plan renders the StorageClass (needs the VPC, subnet and zone)."""
        return self.vpc_id is not None
