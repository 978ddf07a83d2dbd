"""The simulator's lab hook: `python3 -m orchestrator.lab.hook --lab-dir DIR VERB`,
run by the simulated vCenter (sim/lab_hook.go) inside the lab namespace, with
one JSON document on stdin.

  power-on   boot the VM's qemu twin: OS disk = qcow2 overlay on the
             appliance image, data disks = the VM's own flat VMDK extents
             (raw, grown sparse to their capacity), one tap per NIC on the
             bridge of its portgroup, guestinfo.* as the NoCloud seed;
             stdout {"pid": N}, the qemu the simulator then watches (a VM
             whose qemu dies outside the simulator reads poweredOff, as on
             ESXi when the VMX process is gone)
  power-off  SIGKILL its qemu (a host losing power)
  remove     power-off, delete its taps and its lab folder (OS overlay, seed)
  probe      log in to an iSCSI portal; stdout {"luns": [...]}

Exit 0 on success; otherwise one line on stderr, which the simulator shows as
the task's fault. Never prints a secret. The lab config (lab.json in DIR,
written by `lab up`) names the namespace, the appliance image and which
bridge each portgroup lands on.
"""

import argparse
import base64
import gzip
import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

from orchestrator.appliance.build import Appliance
from orchestrator.identity import NodeIdentity
from orchestrator.lab import netns
from orchestrator.lab.qemu import Disk, LabVm, Nic, VmSpec
from orchestrator.lab.seed import nocloud_files, write_seed
from orchestrator.lab.simulator import LabError

CONFIG = "lab.json"
OS_BUS = 0  # the template's disk: replaced by an overlay on the appliance image


def load_config(lab_dir: Path) -> dict:
    try:
        return json.loads((lab_dir / CONFIG).read_text())
    except (OSError, ValueError) as err:
        raise LabError(
            f"lab config {lab_dir / CONFIG} unreadable ({err}); run `vsa-orchestrate lab up`"
        ) from None


def write_config(lab_dir: Path, appliance_disk: Path, portgroups: dict[str, str]) -> Path:
    """The lab config the hook reads; portgroups maps a portgroup name to a
    bridge role (netns.BRIDGES)."""
    path = lab_dir / CONFIG
    config = {"namespace": netns.NAMESPACE, "appliance": str(appliance_disk), "portgroups": portgroups}
    path.write_text(json.dumps(config, indent=1, sort_keys=True) + "\n")
    return path


def decode_guestinfo(guestinfo: dict[str, str], key: str) -> str:
    """guestinfo.<key> decoded per guestinfo.<key>.encoding (none, base64, gzip+base64)."""
    value = guestinfo.get(f"guestinfo.{key}", "")
    encoding = guestinfo.get(f"guestinfo.{key}.encoding", "").lower()
    if encoding in ("b64", "base64"):
        return base64.b64decode(value).decode()
    if encoding in ("gz+b64", "gzip+base64"):
        return gzip.decompress(base64.b64decode(value)).decode()
    if encoding:
        raise LabError(f"guestinfo.{key}: unknown encoding {encoding!r}")
    return value


def vm_folder(lab_dir: Path, doc: dict) -> Path:
    """The VM's lab folder (overlay, seed, pidfile, console log), by name."""
    name = doc["name"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", name):
        name = "vm-" + hashlib.sha256(doc["uuid"].encode()).hexdigest()[:12]
    return lab_dir / "vms" / name


def lab_vm(lab_dir: Path, config: dict, doc: dict, with_seed: bool = False) -> LabVm:
    folder = vm_folder(lab_dir, doc)
    disks = []
    for disk in doc["disks"]:
        if disk["bus"] == OS_BUS:
            continue
        stem = Path(disk["descriptor"]).stem
        name = stem.removeprefix(doc["name"]).lstrip("_-") or f"{disk['bus']}-{disk['unit']}"
        disks.append(Disk(name, disk["capacity_bytes"], Path(disk["file"])))
    tag = hashlib.sha256(doc["uuid"].encode()).hexdigest()[:8]
    nics = []
    for index, nic in enumerate(doc["nics"]):
        role = config["portgroups"].get(nic["portgroup"])
        if role is None:
            raise LabError(f"{doc['name']}: portgroup {nic['portgroup']!r} has no lab bridge")
        nics.append(Nic(role, nic["mac"], f"t{tag}-{index}"))
    seed = None
    if with_seed:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = doc["guestinfo"]
        identity = NodeIdentity(decode_guestinfo(info, "metadata"), decode_guestinfo(info, "userdata"))
        seed = write_seed(folder / "seed.iso", nocloud_files(identity))
    spec = VmSpec(
        name=doc["name"],
        appliance=Appliance.of(Path(config["appliance"])),
        disks=tuple(disks),
        nics=tuple(nics),
        seed=seed,
        memory_mb=doc.get("memory_mb") or 1024,
        cpus=doc.get("cpus") or 1,
    )
    return LabVm(spec, folder)


def handle(lab_dir: Path, verb: str, doc: dict) -> dict | None:
    config = load_config(lab_dir)
    netns.NAMESPACE = config["namespace"]
    if verb == "probe":
        from orchestrator.lab.iscsi_probe import probe

        luns = probe(doc["address"], int(doc["port"]), doc.get("chap"), doc.get("initiator"))
        return {"luns": [lun.to_json() for lun in luns]}
    if verb == "power-on":
        return {"pid": lab_vm(lab_dir, config, doc, with_seed=True).start()}
    if verb == "power-off":
        lab_vm(lab_dir, config, doc).power_off()
    elif verb == "remove":
        lab_vm(lab_dir, config, doc).remove()
        shutil.rmtree(vm_folder(lab_dir, doc), ignore_errors=True)
    else:
        raise LabError(f"unknown verb {verb!r}")
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m orchestrator.lab.hook")
    parser.add_argument("--lab-dir", type=Path, required=True)
    parser.add_argument("verb", choices=["power-on", "power-off", "remove", "probe"])
    args = parser.parse_args(argv)
    try:
        answer = handle(args.lab_dir, args.verb, json.load(sys.stdin))
    except (LabError, KeyError, ValueError, OSError) as err:
        print(f"lab {args.verb}: {err}", file=sys.stderr)
        return 1
    if answer is not None:
        json.dump(answer, sys.stdout)
        sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
