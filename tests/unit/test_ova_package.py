"""Reading an OVA: manifest parsing, OVF reading, digest verification (no server)."""

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from orchestrator.appliance import recipe
from orchestrator.vsphere import ova_package
from orchestrator.vsphere.ova_package import OvaError, open_ova, parse_manifest, read_ovf, verify

DESCRIPTOR = (recipe.TEMPLATES / "ova" / "appliance.ovf.j2").read_text()
SHA = hashlib.sha256(b"x").hexdigest()


def ovf(vmdk_name: str = "disk1.vmdk", vmdk_size: int = 3, capacity: int = 8 * 2**20) -> str:
    """The appliance's own descriptor template, filled in by hand."""
    return (
        DESCRIPTOR.replace("{{ vmdk_name }}", vmdk_name)
        .replace("{{ vmdk_size }}", str(vmdk_size))
        .replace("{{ capacity }}", str(capacity))
    )


def write_ova(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def manifest(members: dict[str, bytes]) -> bytes:
    return "".join(
        f"SHA256({name})= {hashlib.sha256(data).hexdigest()}\n" for name, data in members.items()
    ).encode()


def good_members() -> dict[str, bytes]:
    files = {"a.ovf": ovf().encode(), "disk1.vmdk": b"KDMV-not-really"}
    return {"a.ovf": files["a.ovf"], "a.mf": manifest(files), "disk1.vmdk": files["disk1.vmdk"]}


def test_manifest_lines_parse_with_their_algorithm():
    text = f"SHA256(a.ovf)= {SHA}\nSHA1(disk1.vmdk)= {hashlib.sha1(b'x').hexdigest().upper()}\n\n"
    entries = parse_manifest(text, "x.mf")
    assert entries["a.ovf"].algorithm == "sha256" and entries["a.ovf"].hexdigest == SHA
    assert entries["disk1.vmdk"].algorithm == "sha1"
    assert entries["disk1.vmdk"].hexdigest == hashlib.sha1(b"x").hexdigest()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("garbage", "x.mf: line 1 is not `SHA256(file)= digest`"),
        (f"MD5(a.ovf)= {SHA}", "x.mf: line 1 is not `SHA256(file)= digest`"),
        ("SHA256(a.ovf)= 1234", "x.mf: line 1: a.ovf: not a SHA256 hex digest"),
        (f"SHA256(a.ovf)= {SHA}\nSHA256(a.ovf)= {SHA}", "x.mf: line 2: a.ovf is listed twice"),
    ],
)
def test_a_bad_manifest_line_is_named(line: str, message: str):
    with pytest.raises(OvaError) as error:
        parse_manifest(line, "x.mf")
    assert str(error.value) == message


def test_ovf_gives_the_vm_its_disk_and_the_disk_its_file():
    facts = read_ovf(ovf(capacity=2 * 2**30), "a.ovf")
    assert (facts.name, facts.cpus, facts.memory_mb) == ("vsa-appliance", 1, 1024)
    [disk] = facts.disks
    assert (disk.file, disk.capacity_bytes, disk.controller_bus, disk.unit) == ("disk1.vmdk", 2 * 2**30, 0, 0)
    assert facts.pvscsi_buses == (0,) and facts.nics == ()
    assert facts.files == {"disk1.vmdk": 3}


def test_ovf_capacity_units_are_honoured():
    text = ovf(capacity=4).replace(
        'ovf:capacity="4"', 'ovf:capacity="4" ovf:capacityAllocationUnits="byte * 2^30"'
    )
    assert read_ovf(text, "a.ovf").disks[0].capacity_bytes == 4 * 2**30


def test_an_ovf_without_a_disk_or_with_bad_xml_is_refused():
    with pytest.raises(OvaError, match=r"^a.ovf: not valid XML"):
        read_ovf("<Envelope", "a.ovf")
    no_disk = (
        ovf().split("<Item>\n        <rasd:AddressOnParent>")[0]
        + "</VirtualHardwareSection></VirtualSystem></Envelope>"
    )
    with pytest.raises(OvaError, match=r"^a.ovf: the VM has no disk$"):
        read_ovf(no_disk, "a.ovf")


def test_a_sound_ova_verifies(tmp_path: Path):
    package = open_ova(write_ova(tmp_path / "x.ova", good_members()))
    verify(package)
    assert package.descriptor_name == "a.ovf" and package.manifest_name == "a.mf"
    assert b"".join(package.read("disk1.vmdk")) == b"KDMV-not-really"


def test_a_modified_disk_is_refused_naming_the_file_and_the_entry(tmp_path: Path):
    members = good_members()
    members["disk1.vmdk"] = b"KDMV-not-reallY"
    path = write_ova(tmp_path / "x.ova", members)
    with pytest.raises(OvaError) as error:
        verify(open_ova(path))
    assert str(error.value) == (
        f"{path}: disk1.vmdk: SHA256 digest does not match the manifest (the OVA is corrupt or was "
        "modified); rebuild or copy it again"
    )


def test_a_disk_the_manifest_does_not_cover_is_refused(tmp_path: Path):
    members = good_members()
    members["a.mf"] = manifest({"a.ovf": members["a.ovf"]})
    path = write_ova(tmp_path / "x.ova", members)
    with pytest.raises(OvaError, match=r": a.mf: disk1.vmdk is not listed, so it cannot be verified"):
        verify(open_ova(path))


def test_an_ova_without_manifest_or_missing_is_one_line(tmp_path: Path):
    members = good_members()
    del members["a.mf"]
    path = write_ova(tmp_path / "x.ova", members)
    with pytest.raises(OvaError, match=r"no manifest \(\.mf\); its files cannot be verified"):
        open_ova(path)
    with pytest.raises(OvaError, match=r"no such file; build it with `vsa-orchestrate appliance build`"):
        ova_package.open_verified(tmp_path / "missing.ova")
    (tmp_path / "not.ova").write_text("hello")
    with pytest.raises(OvaError, match=r"not a readable OVA \(tar\)"):
        open_ova(tmp_path / "not.ova")


def test_a_truncated_ova_is_refused(tmp_path: Path):
    path = write_ova(tmp_path / "x.ova", good_members())
    data = path.read_bytes()
    with tarfile.open(path) as tar:
        end = tar.getmember("disk1.vmdk").offset_data + 4
    path.write_bytes(data[:end])
    with pytest.raises(OvaError):
        verify(open_ova(path))
