"""What the `iscsi` stage does on a host: HostStorageSystem calls, as data.

Every operation names the host and its HostStorageSystem (by managed object
id). `adapter` is the software adapter's device (vmhba name); None means the
one EnableSoftwareIscsi creates in the same change, found by its kind once it
exists, never guessed by name.
"""

from dataclasses import dataclass

from orchestrator.operations import Operation, SecretRef


@dataclass(frozen=True)
class Portal:
    address: str
    port: int

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class HostIscsiOperation(Operation):
    side = "vsphere"
    host: str
    storage: str  # HostStorageSystem moId
    adapter: str | None

    def _on(self, method: str, detail: str = "") -> str:
        return f"host {self.host}: HostStorageSystem.{method}({self.adapter or '<software adapter>'}{detail})"


@dataclass(frozen=True)
class EnableSoftwareIscsi(HostIscsiOperation):
    def describe(self) -> str:
        return f"host {self.host}: HostStorageSystem.UpdateSoftwareInternetScsiEnabled(true)"


@dataclass(frozen=True)
class RemoveSendTargets(HostIscsiOperation):
    portals: tuple[Portal, ...]

    def describe(self) -> str:
        return self._on("RemoveInternetScsiSendTargets", ", " + ", ".join(map(str, self.portals)))


@dataclass(frozen=True)
class AddSendTarget(HostIscsiOperation):
    portal: Portal

    def describe(self) -> str:
        return self._on("AddInternetScsiSendTargets", f", {self.portal}")


@dataclass(frozen=True)
class SetChap(HostIscsiOperation):
    """CHAP on our send target: required as `name` with the secret, or prohibited (name None)."""

    portal: Portal
    name: str | None
    secret: SecretRef | None

    def describe(self) -> str:
        chap = "chapProhibited"
        if self.name is not None and self.secret is not None:
            chap = f"chapRequired as {self.name}, secret {self.secret.name}"
        return self._on("UpdateInternetScsiAuthenticationProperties", f", {self.portal}, {chap}")


@dataclass(frozen=True)
class SetTargetOptions(HostIscsiOperation):
    portal: Portal
    options: tuple[tuple[str, int], ...]  # (key, value) of the send target's advanced options

    def describe(self) -> str:
        values = ", ".join(f"{key}={value}" for key, value in self.options)
        return self._on("UpdateInternetScsiAdvancedOptions", f", {self.portal}, {values}")


@dataclass(frozen=True)
class RescanForLun(HostIscsiOperation):
    """Rescan until the host has logged in and sees a LUN of `iqn` (login is asynchronous)."""

    portal: Portal
    iqn: str

    def describe(self) -> str:
        return f"host {self.host}: RescanHba + RescanVmfs until a LUN of {self.iqn} via {self.portal} shows"


@dataclass(frozen=True)
class BindVnic(HostIscsiOperation):
    """Port binding: the host's iSCSI vmknic bound to the software adapter. `vnic`
    None is the one the network stage creates on `portgroup` in this run."""

    iscsi_manager: str  # IscsiManager moId
    network_system: str  # HostNetworkSystem moId, to find a vmknic made in this run
    portgroup: str
    vnic: str | None

    def describe(self) -> str:
        vnic = self.vnic or f"<vmknic on {self.portgroup}>"
        return f"host {self.host}: IscsiManager.BindVnic({self.adapter or '<software adapter>'}, {vnic})"
