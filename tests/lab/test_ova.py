"""The appliance for vSphere: an OVA whose streamOptimized disk boots by BIOS."""

import hashlib
import json
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path

from orchestrator.appliance.build import Appliance
from orchestrator.lab.qemu import wait_until

OVF_NS = "{http://schemas.dmtf.org/ovf/envelope/1}"
BOOT_TIMEOUT_S = 240


def test_ova_holds_a_valid_descriptor_manifest_and_stream_optimized_disk(appliance: Appliance) -> None:
    with tarfile.open(appliance.ova) as ova:
        names = ova.getnames()
        assert names == ["vsa-appliance.ovf", "vsa-appliance.mf", "vsa-appliance-disk1.vmdk"]
        blobs = {name: ova.extractfile(name).read() for name in names}

    manifest = dict(line.split("= ") for line in blobs["vsa-appliance.mf"].decode().splitlines())
    for name in ("vsa-appliance.ovf", "vsa-appliance-disk1.vmdk"):
        assert manifest[f"SHA256({name})"] == hashlib.sha256(blobs[name]).hexdigest()
    reference = ET.fromstring(blobs["vsa-appliance.ovf"]).find(f"{OVF_NS}References/{OVF_NS}File")
    assert reference.get(f"{OVF_NS}href") == "vsa-appliance-disk1.vmdk"
    assert int(reference.get(f"{OVF_NS}size")) == len(blobs["vsa-appliance-disk1.vmdk"])


def test_ova_disk_boots_by_bios(appliance: Appliance, tmp_path: Path) -> None:
    with tarfile.open(appliance.ova) as ova:
        ova.extract("vsa-appliance-disk1.vmdk", tmp_path, filter="data")
    vmdk = tmp_path / "vsa-appliance-disk1.vmdk"
    info = json.loads(subprocess.check_output(["qemu-img", "info", "--output=json", vmdk]))
    assert info["format-specific"]["data"]["create-type"] == "streamOptimized"

    console = tmp_path / "console.log"
    command = [
        "qemu-system-x86_64", "-nodefaults", "-no-user-config", "-machine", "pc", "-accel", "tcg",
        "-m", "1024", "-display", "none", "-serial", f"file:{console}",
        "-drive", f"file={vmdk},format=vmdk,if=none,id=disk0,snapshot=on",
        "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,bus=scsi0.0,drive=disk0",
    ]  # fmt: skip
    qemu = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        booted = wait_until(
            lambda: qemu.poll() is not None or (console.exists() and b"login:" in console.read_bytes()),
            BOOT_TIMEOUT_S,
            interval=1,
        )
        assert qemu.poll() is None, qemu.stderr.read().decode()
        assert booted, f"no login prompt within {BOOT_TIMEOUT_S} s; console: {console}"
    finally:
        qemu.kill()
        qemu.wait()
