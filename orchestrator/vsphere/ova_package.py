"""An OVA on disk: its members, its OVF descriptor and its manifest, verified.

An OVA is a tar of an OVF descriptor, a manifest (`.mf`: one
`SHA256(name)= hex` line per file) and the files the descriptor references
(streamOptimized VMDKs). `open_ova` reads the tar's index, the descriptor
and the manifest; `verify` checks every manifest digest against the bytes
in the tar and refuses a package whose descriptor or disks the manifest does
not cover. Parsing (`parse_manifest`, `read_ovf`) is pure. Nothing here
talks to vSphere.
"""

import hashlib
import os
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1024 * 1024
ALGORITHMS = {"SHA1": "sha1", "SHA256": "sha256", "SHA512": "sha512"}
NS = {
    "ovf": "http://schemas.dmtf.org/ovf/envelope/1",
    "rasd": "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData",
    "vmw": "http://www.vmware.com/schema/ovf",
}
OVF_ATTR = "{" + NS["ovf"] + "}"
# rasd:ResourceType values (DMTF CIM)
CPU, MEMORY, SCSI, NIC, DISK = 3, 4, 6, 10, 17
NIC_KINDS = {"vmxnet3": "VirtualVmxnet3", "e1000": "VirtualE1000", "e1000e": "VirtualE1000e"}


class OvaError(Exception):
    """An OVA that cannot be used, in one line naming the file (and the entry)."""


@dataclass(frozen=True)
class Member:
    name: str
    offset: int  # of the data in the tar
    size: int


@dataclass(frozen=True)
class Digest:
    algorithm: str  # hashlib name: "sha256"
    hexdigest: str


@dataclass(frozen=True)
class OvfDisk:
    file: str  # the member (ovf:href) holding the disk
    capacity_bytes: int
    controller_bus: int | None  # rasd:Address of its SCSI controller
    unit: int | None


@dataclass(frozen=True)
class OvfNic:
    kind: str  # pyVmomi type name, e.g. "VirtualVmxnet3"
    network: str | None


@dataclass(frozen=True)
class OvfFacts:
    """What the descriptor says the imported VM will be."""

    name: str
    cpus: int
    memory_mb: int
    disks: tuple[OvfDisk, ...]
    nics: tuple[OvfNic, ...] = ()
    pvscsi_buses: tuple[int, ...] = ()
    files: dict[str, int | None] = field(default_factory=dict)  # href -> ovf:size


@dataclass(frozen=True)
class OvaPackage:
    path: Path
    members: dict[str, Member]
    descriptor_name: str
    descriptor: str
    manifest_name: str
    manifest: dict[str, Digest]
    ovf: OvfFacts

    def member(self, name: str) -> Member:
        found = self.members.get(name)
        if found is None:
            raise OvaError(f"{self.path}: the descriptor references {name!r}, which the OVA does not hold")
        return found

    def read(self, name: str) -> Iterator[bytes]:
        """The bytes of one member, in chunks."""
        member = self.member(name)
        with open(self.path, "rb") as handle:
            handle.seek(member.offset)
            left = member.size
            while left:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    raise OvaError(f"{self.path}: {name}: the OVA ends inside this entry (truncated)")
                left -= len(chunk)
                yield chunk


def open_ova(path: Path) -> OvaPackage:
    """Read an OVA's index, descriptor and manifest (the disks are not read)."""
    try:
        with tarfile.open(path, "r:") as tar:
            infos = [info for info in tar.getmembers() if info.isfile()]
            members = {info.name: Member(info.name, info.offset_data, info.size) for info in infos}
            descriptors = [info for info in infos if info.name.endswith(".ovf")]
            manifests = [info for info in infos if info.name.endswith(".mf")]
            if len(descriptors) != 1:
                count = len(descriptors)
                raise OvaError(f"{path}: an OVA holds exactly one .ovf descriptor, this one {count}")
            if len(manifests) != 1:
                raise OvaError(
                    f"{path}: no manifest (.mf); its files cannot be verified, so it is not imported"
                    if not manifests
                    else f"{path}: more than one manifest (.mf)"
                )
            descriptor = _text(tar, descriptors[0], path)
            manifest_text = _text(tar, manifests[0], path)
    except FileNotFoundError:
        raise OvaError(f"{path}: no such file; build it with `vsa-orchestrate appliance build`") from None
    except (tarfile.TarError, OSError) as err:
        raise OvaError(f"{path}: not a readable OVA (tar): {err}") from None
    manifest = parse_manifest(manifest_text, f"{path}: {manifests[0].name}")
    ovf = read_ovf(descriptor, f"{path}: {descriptors[0].name}")
    return OvaPackage(
        path=path,
        members=members,
        descriptor_name=descriptors[0].name,
        descriptor=descriptor,
        manifest_name=manifests[0].name,
        manifest=manifest,
        ovf=ovf,
    )


def _text(tar: tarfile.TarFile, info: tarfile.TarInfo, path: Path) -> str:
    handle = tar.extractfile(info)
    if handle is None:
        raise OvaError(f"{path}: {info.name}: cannot be read")
    try:
        return handle.read().decode("utf-8")
    except UnicodeDecodeError:
        raise OvaError(f"{path}: {info.name}: not UTF-8 text") from None


def parse_manifest(text: str, where: str) -> dict[str, Digest]:
    """`ALG(name)= hexdigest` lines -> {name: Digest}; `where` names the file in errors."""
    entries: dict[str, Digest] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        head, sep, value = line.partition("=")
        algorithm, _, rest = head.partition("(")
        name = rest.rstrip().removesuffix(")")
        digest = value.strip().lower()
        hash_name = ALGORITHMS.get(algorithm.strip().upper())
        size = hashlib.new(hash_name).digest_size * 2 if hash_name else 0
        if not sep or not rest.rstrip().endswith(")") or not name or hash_name is None:
            raise OvaError(f"{where}: line {number} is not `SHA256(file)= digest`")
        if len(digest) != size or any(c not in "0123456789abcdef" for c in digest):
            raise OvaError(f"{where}: line {number}: {name}: not a {algorithm.strip().upper()} hex digest")
        if name in entries:
            raise OvaError(f"{where}: line {number}: {name} is listed twice")
        entries[name] = Digest(hash_name, digest)
    return entries


def read_ovf(text: str, where: str) -> OvfFacts:
    """The VM the descriptor describes: CPUs, memory, disks (with their files), NICs."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise OvaError(f"{where}: not valid XML ({err})") from None
    files = {
        ref.get(OVF_ATTR + "id"): (ref.get(OVF_ATTR + "href"), ref.get(OVF_ATTR + "size"))
        for ref in root.findall("ovf:References/ovf:File", NS)
    }
    disks_by_id = {
        disk.get(OVF_ATTR + "diskId"): disk for disk in root.findall("ovf:DiskSection/ovf:Disk", NS)
    }
    system = root.find("ovf:VirtualSystem", NS)
    if system is None:
        raise OvaError(f"{where}: no VirtualSystem (an OVA of one VM is expected)")
    items = system.findall("ovf:VirtualHardwareSection/ovf:Item", NS)
    cpus, memory_mb = 1, 0
    controllers: dict[str, tuple[str, int]] = {}  # InstanceID -> (subtype, bus)
    disks, nics = [], []
    for item in items:
        kind = _int(_rasd(item, "ResourceType"), where, "ResourceType")
        if kind == CPU:
            cpus = _int(_rasd(item, "VirtualQuantity"), where, "VirtualQuantity")
        elif kind == MEMORY:
            memory_mb = _memory_mb(item, where)
        elif kind == SCSI:
            bus = _int(_rasd(item, "Address") or "0", where, "Address")
            subtype = (_rasd(item, "ResourceSubType") or "").lower()
            controllers[_rasd(item, "InstanceID") or ""] = (subtype, bus)
        elif kind == NIC:
            subtype = (_rasd(item, "ResourceSubType") or "").lower()
            nics.append(OvfNic(NIC_KINDS.get(subtype, subtype or "unknown"), _rasd(item, "Connection")))
    for item in items:
        if _int(_rasd(item, "ResourceType"), where, "ResourceType") != DISK:
            continue
        host_resource = _rasd(item, "HostResource") or ""
        disk = disks_by_id.get(host_resource.rsplit("/", 1)[-1])
        if disk is None:
            raise OvaError(f"{where}: disk item {host_resource!r} names no Disk of the DiskSection")
        ref = files.get(disk.get(OVF_ATTR + "fileRef"))
        if ref is None or not ref[0]:
            raise OvaError(f"{where}: disk {disk.get(OVF_ATTR + 'diskId')!r} references no File")
        controller = controllers.get(_rasd(item, "Parent") or "")
        unit = _rasd(item, "AddressOnParent")
        disks.append(
            OvfDisk(
                file=ref[0],
                capacity_bytes=_capacity(disk, where),
                controller_bus=controller[1] if controller else None,
                unit=int(unit) if unit and unit.isdigit() else None,
            )
        )
    if not disks:
        raise OvaError(f"{where}: the VM has no disk")
    return OvfFacts(
        name=(system.findtext("ovf:Name", None, NS) or system.get(OVF_ATTR + "id") or "").strip(),
        cpus=cpus,
        memory_mb=memory_mb,
        disks=tuple(disks),
        nics=tuple(nics),
        pvscsi_buses=tuple(bus for subtype, bus in controllers.values() if subtype == "virtualscsi"),
        files={href: int(size) if size and size.isdigit() else None for href, size in files.values() if href},
    )


def _rasd(item: ET.Element, name: str) -> str | None:
    value = item.findtext(f"rasd:{name}", None, NS)
    return value.strip() if value is not None else None


def _int(value: str | None, where: str, name: str) -> int:
    if value is None or not value.isdigit():
        raise OvaError(f"{where}: rasd:{name} {value!r} is not a number")
    return int(value)


def _units(text: str | None, where: str) -> int:
    """`byte * 2^20` -> 1048576; absent -> 1 (bytes)."""
    if not text:
        return 1
    parts = text.replace(" ", "").split("*")
    if parts[0] != "byte" or len(parts) > 2:
        raise OvaError(f"{where}: allocation units {text!r} not understood")
    if len(parts) == 1:
        return 1
    base, _, power = parts[1].partition("^")
    if not base.isdigit() or (power and not power.isdigit()):
        raise OvaError(f"{where}: allocation units {text!r} not understood")
    return int(base) ** int(power or 1)


def _capacity(disk: ET.Element, where: str) -> int:
    capacity = disk.get(OVF_ATTR + "capacity") or ""
    if not capacity.isdigit():
        raise OvaError(f"{where}: disk capacity {capacity!r} is not a number")
    return int(capacity) * _units(disk.get(OVF_ATTR + "capacityAllocationUnits"), where)


def _memory_mb(item: ET.Element, where: str) -> int:
    quantity = _int(_rasd(item, "VirtualQuantity"), where, "VirtualQuantity")
    return quantity * _units(_rasd(item, "AllocationUnits") or "byte * 2^20", where) // 2**20


def verify(package: OvaPackage) -> None:
    """Check every manifest digest against the OVA's bytes; the descriptor and
    every disk must be listed. Raises OvaError naming the file and the entry."""
    where = f"{package.path}: {package.manifest_name}"
    needed = [package.descriptor_name, *(disk.file for disk in package.ovf.disks)]
    for name in needed:
        if name not in package.manifest:
            raise OvaError(f"{where}: {name} is not listed, so it cannot be verified; rebuild the OVA")
    for name, digest in package.manifest.items():
        if name not in package.members:
            raise OvaError(f"{where}: lists {name}, which the OVA does not hold; rebuild the OVA")
        hasher = hashlib.new(digest.algorithm)
        for chunk in package.read(name):
            hasher.update(chunk)
        if hasher.hexdigest() != digest.hexdigest:
            raise OvaError(
                f"{package.path}: {name}: {digest.algorithm.upper()} digest does not match the manifest "
                "(the OVA is corrupt or was modified); rebuild or copy it again"
            )


_verified: dict[tuple[str, int, int], OvaPackage] = {}


def open_verified(path: Path) -> OvaPackage:
    """open_ova + verify, once per file version (path, size, mtime) in this process."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise OvaError(f"{path}: no such file; build it with `vsa-orchestrate appliance build`") from None
    except OSError as err:
        raise OvaError(f"{path}: cannot be read: {err.strerror}") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _verified:
        package = open_ova(path)
        verify(package)
        _verified[key] = package
    return _verified[key]
