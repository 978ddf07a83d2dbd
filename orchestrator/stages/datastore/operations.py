"""What the `datastore` stage does: HostDatastoreSystem, HostStorageSystem and
Datastore calls, as data.

Hosts are named by their HostStorageSystem / HostDatastoreSystem (managed
object ids), datastores by theirs. WaitMounted's `datastore` is None when the
datastore is the one CreateVmfs makes earlier in the same change: it is found
then by its name, and must sit on the LUN `naa`.
"""

from dataclasses import dataclass

from orchestrator.operations import Operation


@dataclass(frozen=True)
class MountOn:
    """A host the datastore must end up mounted and accessible on."""

    host: str
    host_id: str


@dataclass(frozen=True)
class DatastoreOperation(Operation):
    side = "vsphere"


@dataclass(frozen=True)
class CreateVmfs(DatastoreOperation):
    """Format our LUN `naa` as VMFS 6 named `name`, on one host.

    Its handler first re-reads, on that host, that `naa` is still the LUN of
    `iqn`, that no VMFS volume on it is an unresolved copy, and that ESXi still
    lists it free for VMFS (no partition, no filesystem); otherwise it refuses
    and formats nothing."""

    destructive = True
    host: str
    storage: str  # HostStorageSystem moId
    datastore_system: str  # HostDatastoreSystem moId
    naa: str
    name: str
    iqn: str

    def describe(self) -> str:
        return (
            f"host {self.host}: HostDatastoreSystem.CreateVmfsDatastore({self.name}, VMFS 6 on {self.naa}), "
            f"after re-checking that {self.naa} is still the LUN of {self.iqn} and free for VMFS"
        )


@dataclass(frozen=True)
class RequireLun(DatastoreOperation):
    """No host sees our LUN yet: the datastore cannot be planned further.

    Shown before the iscsi stage has run; the datastore stage plans again after
    it (CreateVmfs then names the device). Applied as it stands, it refuses."""

    iqn: str

    def describe(self) -> str:
        return f"none yet: the iscsi stage makes the LUN of {self.iqn} visible, then this stage plans again"


@dataclass(frozen=True)
class RenameDatastore(DatastoreOperation):
    datastore: str  # Datastore moId
    name: str

    def describe(self) -> str:
        return f"Datastore.Rename_Task({self.datastore} -> {self.name})"


@dataclass(frozen=True)
class RescanVmfs(DatastoreOperation):
    """A host that never mounted the datastore finds it by rescanning."""

    host: str
    storage: str  # HostStorageSystem moId

    def describe(self) -> str:
        return f"host {self.host}: HostStorageSystem.RescanVmfs()"


@dataclass(frozen=True)
class MountVmfs(DatastoreOperation):
    """A host that knows the volume but has it unmounted mounts it again."""

    host: str
    storage: str  # HostStorageSystem moId
    uuid: str  # the VMFS volume's uuid

    def describe(self) -> str:
        return f"host {self.host}: HostStorageSystem.MountVmfsVolume({self.uuid})"


@dataclass(frozen=True)
class WaitMounted(DatastoreOperation):
    """Poll the datastore's mounts until every host in `hosts` has it mounted and accessible."""

    name: str
    naa: str
    hosts: tuple[MountOn, ...]
    datastore: str | None  # Datastore moId; None: the one CreateVmfs made in this change

    def describe(self) -> str:
        hosts = ", ".join(host.host for host in self.hosts)
        return f"wait until datastore {self.name} is mounted and accessible on {hosts}"
