"""A small appliance-like OVA for the vSphere tests (not the real appliance):
an 8 MiB raw disk with random and text blocks between holes, packed by the
appliance's own OVA writer (streamOptimized VMDK, OVF descriptor, manifest)."""

import hashlib
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

from orchestrator.appliance.ova import pack_ova

DISK_BYTES = 8 * 2**20
VMDK = "vsa-appliance-disk1.vmdk"


@dataclass(frozen=True)
class SmallOva:
    path: Path
    raw: Path  # the disk image the VMDK was made from
    raw_sha256: str


def build_small_ova(folder: Path) -> SmallOva:
    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "disk.raw"
    with open(raw, "wb") as handle:
        handle.truncate(DISK_BYTES)
        handle.write(os.urandom(300_000))  # the first grains, incompressible
        handle.seek(5 * 2**20 + 1234)  # a grain further in, after a hole
        handle.write(b"vsa-orchestrate small test disk\n" * 1000)
    work = folder / "work"
    work.mkdir(exist_ok=True)
    ova = folder / "small.ova"
    pack_ova(raw, ova, work)
    return SmallOva(path=ova, raw=raw, raw_sha256=sha256(raw))


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def corrupt_copy(ova: Path, out: Path, member: str = VMDK) -> Path:
    """A copy of `ova` with one byte of `member` flipped (the manifest unchanged)."""
    data = bytearray(ova.read_bytes())
    with tarfile.open(ova) as tar:
        info = tar.getmember(member)
    offset = info.offset_data + info.size // 2
    data[offset] ^= 0xFF
    out.write_bytes(bytes(data))
    return out
