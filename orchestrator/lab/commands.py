"""`vsa-orchestrate lab up|down|status`: the embedded lab.

`lab up` makes the lab namespace and its bridges, gets the appliance image
(cached, or built), starts the simulated vCenter in lab mode INSIDE the
namespace (listening on the namespace's loopback; its hook boots real qemu
VMs and probes real iSCSI portals, see hook.py), and writes the lab plan and
the lab config (lab.json). Running it again while the lab is up is harmless.
The orchestrator then runs inside the namespace too:
`ip netns exec <namespace> vsa-orchestrate <lab plan> --yes`.
`lab down` stops the lab's VMs, the simulator, and deletes the namespace.
The appliance is built from the build host's Debian mirror, or from
$VSA_APT_MIRROR when set (orchestrator/appliance/mirror.py); a failed build is
one `error:` line naming the step and what to install or check.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from orchestrator.appliance.build import Appliance, build_appliance
from orchestrator.appliance.shell import ApplianceError
from orchestrator.engine import RUN_ERRORS, one_line
from orchestrator.identity import NIC_ROLES
from orchestrator.lab import hook, netns
from orchestrator.lab.failover import failover
from orchestrator.lab.plan_file import lab_plan_text
from orchestrator.lab.qemu import qemu_pid, wait_until
from orchestrator.lab.simulator import REPO, LabError, SimInfo, start_simulator, stop_pid
from orchestrator.output import error_line, make_console
from orchestrator.state import new_ed25519_key

MANAGERS = ("pacemaker", "heartbeat")  # ha.manager values; the lab plan's default first
DEFAULT_DIR = Path(os.environ.get("VSA_LAB_DIR", Path.home() / ".cache" / "vsa-orchestrate" / "lab"))


def lab_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="vsa-orchestrate lab", description="the embedded lab")
    parser.add_argument("action", choices=["up", "down", "status", "failover"])
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help=f"lab folder (default {DEFAULT_DIR})")
    parser.add_argument(
        "--manager",
        choices=MANAGERS,
        default=MANAGERS[0],
        help="the lab plan's cluster manager (default pacemaker, with the witness VM on the third host)",
    )
    args = parser.parse_args(argv)
    console, errors = make_console(), make_console(stderr=True)
    try:
        if args.action == "up":
            plan = lab_up(args.dir, say=console.print, manager=args.manager)
            console.print(f"lab is up; plan: {plan}")
            console.print(f"next: {' '.join(netns.exec_prefix())} vsa-orchestrate {plan} --yes")
        elif args.action == "down":
            lab_down(args.dir)
            console.print("lab is down")
        elif args.action == "failover":
            return _failover(args.dir, console)
        else:
            pid = _running_pid(args.dir)
            console.print(f"lab is {'up (simulator pid ' + str(pid) + ')' if pid else 'down'}")
            return 0 if pid else 2
    except ApplianceError as err:  # one line naming the build step and what to install or check
        errors.print(error_line(err))
        return 1
    except (LabError, *RUN_ERRORS) as err:
        errors.print(error_line(_lab_fault(args.action, err)))
        return 1
    return 0


def _lab_fault(action: str, err: BaseException) -> str:
    """One line; a local OSError (a file, a process) is not a lost vSphere connection."""
    if isinstance(err, OSError) and not isinstance(err, ConnectionError | TimeoutError):
        return f"lab {action}: {err}; check the lab folder and the host tools (scripts/install-lab-deps)"
    return one_line(err)


def _failover(lab_dir: Path, console) -> int:
    """Runs inside the namespace (the simulator and the VIP live there): re-executed there when needed."""
    if not (lab_dir / "lab.toml").exists() or not netns.exists():
        raise LabError("the lab is down; run `vsa-orchestrate lab up` and apply the lab plan first")
    if not netns.inside():
        command = [*netns.exec_prefix(), sys.executable, "-m", "orchestrator", "lab", "failover"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        return subprocess.run([*command, "--dir", str(lab_dir.resolve())], env=env, check=False).returncode
    failover(lab_dir / "lab.toml", console)
    return 0


def lab_up(lab_dir: Path, say=print, manager: str = MANAGERS[0]) -> Path:
    """Start the lab unless it is already running; return the lab plan's path."""
    lab_dir = lab_dir.resolve()
    lab_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    plan_path = lab_dir / "lab.toml"
    if _running_pid(lab_dir) and plan_path.exists() and netns.exists():
        return plan_path
    _ensure_ssh_key(lab_dir / "id_ed25519")
    netns.up()  # also blackholes the lab subnets in the root namespace
    appliance = build_appliance(progress=lambda step: say(f"appliance: {step}"))
    # A fresh simulator has a fresh inventory: no VM of an earlier one may
    # keep running (on deleted disks) or boot again from its old OS overlay.
    _stop_vms(lab_dir)
    shutil.rmtree(lab_dir / "vms", ignore_errors=True)
    stale = _running_pid(lab_dir)
    if stale:
        _stop_simulator(lab_dir, stale)
    command = [sys.executable, "-m", "orchestrator.lab.hook", "--lab-dir", str(lab_dir)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    sim = start_simulator(
        lab_dir / "sim", log_path=lab_dir / "sim.log", lab_hook=command, prefix=netns.exec_prefix(), env=env
    )
    (lab_dir / "sim.pid").write_text(f"{sim.process.pid}\n")
    # Which lab bridge each portgroup lands on: the lab plan's iSCSI and
    # replication portgroups, in the order the simulator lists them.
    hook.write_config(lab_dir, appliance, dict(zip(sim.info.portgroups, NIC_ROLES, strict=True)))
    write_lab_plan(sim.info, plan_path, Appliance.of(appliance).ova, manager)
    return plan_path


def write_lab_plan(info: SimInfo, plan_path: Path, ova: Path | None, manager: str) -> None:
    """The lab plan and its password file (0600), beside each other; the storage
    VMs are imported from `ova` (without one: cloned from the simulator's template)."""
    password_file = plan_path.with_name("vsphere-password")
    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(info.password + "\n")
    key = plan_path.with_name("id_ed25519")
    _ensure_ssh_key(key)
    plan_path.write_text(lab_plan_text(info, password_file.name, key.name, ova, manager))
    # The password stays in its 0600 file only.
    public = {key: value for key, value in info.__dict__.items() if key != "password"}
    (plan_path.with_name("sim.json")).write_text(json.dumps(public))


def lab_down(lab_dir: Path) -> None:
    """Stop the lab's VMs (by their pidfiles: only our own qemu), the
    simulator, and delete the namespace."""
    lab_dir = lab_dir.resolve()
    _stop_vms(lab_dir)
    pid = _running_pid(lab_dir)
    if pid:
        _stop_simulator(lab_dir, pid)
    netns.down()


def _stop_vms(lab_dir: Path) -> None:
    """SIGKILL the lab's qemu VMs, found by their pidfiles (only our own)."""
    for folder in sorted((lab_dir / "vms").glob("*")):
        pid = qemu_pid(folder)
        if pid:
            os.kill(pid, signal.SIGKILL)

            def stopped(folder: Path = folder) -> bool:
                return qemu_pid(folder) is None

            if not wait_until(stopped, 30):
                raise LabError(f"qemu pid {pid} did not stop; kill it by hand")


def _stop_simulator(lab_dir: Path, pid: int) -> None:
    stop_pid(pid)
    if not wait_until(lambda: not _alive(pid), 30):
        raise LabError(f"simulator pid {pid} did not stop; kill it by hand")
    (lab_dir / "sim.pid").unlink(missing_ok=True)


def _running_pid(lab_dir: Path) -> int | None:
    try:
        pid = int((lab_dir / "sim.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _alive(pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split()[2] != "Z"
    except OSError:
        return False


def _ensure_ssh_key(path: Path) -> None:
    """The lab admin's SSH key pair (what ~/.ssh/id_ed25519 is on a real site)."""
    if path.exists() and path.with_name(path.name + ".pub").exists():
        return
    key = new_ed25519_key("vsa-lab-admin")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key.private_openssh)
    path.with_name(path.name + ".pub").write_text(key.public_openssh + "\n")
