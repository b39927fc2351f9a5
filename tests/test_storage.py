"""CFS StorageClass and the ReadWriteMany PVC."""

from __future__ import annotations

import pytest

from tke_playbook.errors import InvalidSpecError, UnknownNameError
from tke_playbook.manifests.storage import build_pvc, build_storage_class
from tke_playbook.specs import labels as L
from tke_playbook.specs.storage import CFS_PROVISIONER, CfsStorageType, ReclaimPolicy, StorageSpec

WITH_IDS = StorageSpec(vpc_id="vpc-abcd1234", subnet_id="subnet-efgh5678", zone="ap-guangzhou-3",
                       pgroup_id="pgroup-basic1", storage_type="HP", mount_options=("hard",))


def test_defaults_follow_the_tutorial():
    spec = StorageSpec()
    assert (spec.pvc_name, spec.namespace, spec.storage_class) == ("ai-model", "default", "cfs")
    assert not spec.creates_storage_class and spec.reclaim_policy is ReclaimPolicy.RETAIN


@pytest.mark.parametrize("spec", [pytest.param(StorageSpec(), id="defaults"), pytest.param(WITH_IDS, id="cfs-ids")])
def test_pvc_validates_and_is_read_write_many(spec, k8s_valid):
    pvc = k8s_valid(build_pvc(spec))
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert pvc["spec"]["storageClassName"] == spec.storage_class
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert pvc["metadata"]["labels"] == L.common_labels(L.Component.STORAGE, "ai-model")


def test_storage_class_for_cfs(k8s_valid):
    sc = k8s_valid(build_storage_class(WITH_IDS))
    assert sc["provisioner"] == CFS_PROVISIONER == "com.tencent.cloud.csi.cfs"
    # parameter names of the CFS CSI driver; vers "3" as TKE's console (facts.md section 8)
    assert sc["parameters"] == {"vpcid": "vpc-abcd1234", "subnetid": "subnet-efgh5678", "storagetype": "HP",
                                "zone": "ap-guangzhou-3", "pgroupid": "pgroup-basic1", "vers": "3"}
    assert sc["reclaimPolicy"] == "Retain" and sc["mountOptions"] == ["hard"]
    assert sc["volumeBindingMode"] == "Immediate"
    assert "namespace" not in sc["metadata"]  # cluster-scoped
    assert WITH_IDS.storage_type is CfsStorageType.PERFORMANCE


def test_storage_class_needs_the_vpc_and_subnet():
    with pytest.raises(InvalidSpecError, match="needs vpc_id, subnet_id and zone"):
        build_storage_class(StorageSpec())


@pytest.mark.parametrize("changes, message", [
    pytest.param({"pvc_name": "AI_Model"}, "PVC name 'AI_Model' is not a valid Kubernetes name: use lowercase",
                 id="pvc-uppercase"),
    pytest.param({"pvc_name": "a" * 64}, "is 64 characters long", id="pvc-too-long"),
    pytest.param({"namespace": "Team"}, "Namespace 'Team' is not a valid Kubernetes name", id="namespace"),
    pytest.param({"storage_class": "CFS"}, "StorageClass name 'CFS' is not a valid Kubernetes name",
                 id="storage-class-uppercase"),
    pytest.param({"size": "100GB"}, "PVC size '100GB' is not a Kubernetes quantity", id="size-malformed"),
    pytest.param({"size": "0"}, "must be more than zero", id="size-zero"),
    pytest.param({"vpc_id": "vpc-abc"}, "give vpc_id, subnet_id and zone together", id="vpc-without-subnet"),
    pytest.param({"vpc_id": "vpc-abc", "subnet_id": "subnet-a1"}, "give vpc_id, subnet_id and zone together",
                 id="no-zone"),  # without it the driver uses its controller's zone (facts.md 8)
    pytest.param({"zone": "ap-guangzhou-3"}, "give vpc_id, subnet_id and zone together", id="zone-alone"),
    pytest.param({"vpc_id": "VPC_1", "subnet_id": "subnet-a1"}, "vpc_id 'VPC_1' does not look like", id="bad-vpc"),
    pytest.param({"vpc_id": "vpc-1", "subnet_id": "sub-1", "zone": "ap-guangzhou-3"}, "subnet_id 'sub-1'",
                 id="bad-subnet"),
    pytest.param({"zone": "guangzhou"}, "zone 'guangzhou' is not a Tencent Cloud zone", id="bad-zone"),
])
def test_bad_storage_input(changes, message):
    with pytest.raises(InvalidSpecError, match=message):
        StorageSpec(**changes)


def test_unknown_storage_type_suggests():
    with pytest.raises(UnknownNameError, match="Unknown storage type 'HPP'. Did you mean 'HP'"):
        StorageSpec(storage_type="HPP")
