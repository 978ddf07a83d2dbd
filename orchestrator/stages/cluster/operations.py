"""What the `cluster` stage does in vCenter: Folder and ClusterComputeResource
calls, as data.

Every operation names its cluster by a ClusterRef: its name, the host folder
it lives in, and its managed object id, None when it is the cluster
CreateCluster makes earlier in the same change (found then by its name in that
folder). A storage VM's HA and DRS overrides are small frozen records with the
values they set, so a saved plan shows them.
"""

from dataclasses import dataclass
from typing import Literal

from orchestrator.operations import Operation


@dataclass(frozen=True)
class ClusterRef:
    name: str
    folder: str  # the datacenter's host folder (Folder moId)
    id: str | None  # ClusterComputeResource moId; None: created earlier in this change


@dataclass(frozen=True)
class ClusterHost:
    """A host to move into the cluster."""

    name: str
    host_id: str


@dataclass(frozen=True)
class DasSettings:
    """A VM's HA override: restart priority, isolation response, VM monitoring."""

    restart_priority: str | None
    isolation_response: str | None
    vm_monitoring: str | None

    def __str__(self) -> str:
        return f"{self.restart_priority}, {self.isolation_response}, {self.vm_monitoring}"


@dataclass(frozen=True)
class DrsSettings:
    """A VM's DRS override: enabled, automation behavior."""

    enabled: bool | None
    behavior: str | None

    def __str__(self) -> str:
        return f"{self.enabled}, {self.behavior}"


# The storage VMs' overrides (see diff.py for why).
DAS_OVERRIDE = DasSettings("highest", "none", "vmMonitoringDisabled")
DRS_OVERRIDE = DrsSettings(False, "manual")

SpecOperation = Literal["add", "edit"]  # add: the cluster has no override for the VM yet


@dataclass(frozen=True)
class DasOverride:
    vm: str  # VirtualMachine moId
    vm_name: str
    operation: SpecOperation
    settings: DasSettings


@dataclass(frozen=True)
class DrsOverride:
    vm: str  # VirtualMachine moId
    vm_name: str
    operation: SpecOperation
    settings: DrsSettings


@dataclass(frozen=True)
class ClusterOperation(Operation):
    side = "vsphere"
    cluster: ClusterRef


def _ha_text(ha: bool) -> str:
    return "HA on, host monitoring, das.ignoreInsufficientHbDatastore=true" if ha else "HA off"


@dataclass(frozen=True)
class CreateCluster(ClusterOperation):
    """CreateClusterEx with the planned HA configuration."""

    ha: bool

    def describe(self) -> str:
        return f"Folder.CreateClusterEx({self.cluster.name}, {_ha_text(self.ha)})"


@dataclass(frozen=True)
class MoveHostsIntoCluster(ClusterOperation):
    """Standalone hosts into the cluster (a host in another cluster is refused by the diff)."""

    hosts: tuple[ClusterHost, ...]

    def describe(self) -> str:
        names = ", ".join(host.name for host in self.hosts)
        return f"cluster {self.cluster.name}: ClusterComputeResource.MoveInto_Task({names})"


@dataclass(frozen=True)
class ConfigureHa(ClusterOperation):
    """The cluster's HA configuration, merged (modify=True keeps everything else)."""

    ha: bool

    def describe(self) -> str:
        return f"cluster {self.cluster.name}: ReconfigureComputeResource_Task({_ha_text(self.ha)}, modify)"


@dataclass(frozen=True)
class SetVmOverrides(ClusterOperation):
    """The storage VMs' HA and DRS overrides, merged (modify=True keeps the rest)."""

    das: tuple[DasOverride, ...]
    drs: tuple[DrsOverride, ...]

    def describe(self) -> str:
        parts = [f"HA {o.operation} {o.vm_name} ({o.settings})" for o in self.das]
        parts += [f"DRS {o.operation} {o.vm_name} ({o.settings})" for o in self.drs]
        return f"cluster {self.cluster.name}: ReconfigureComputeResource_Task({'; '.join(parts)}, modify)"
