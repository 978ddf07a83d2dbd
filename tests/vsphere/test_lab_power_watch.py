"""Lab mode models ESXi when a VM's process dies outside vSphere: the hook's
power-on answers the twin's pid (sim/lab_watch.go watches it), and once that
process is gone the simulator reports the VM poweredOff, so the next run's
vms stage powers it on. Here the twin is a plain process the stub hook starts;
the test kills it as a crash would (tests/lab/test_end_to_end.py does it to a
real qemu)."""

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from orchestrator.lab.qemu import wait_until
from tests.vsphere.conftest import running_site, vsa, wait_task

STUB = r"""
import json, os, signal, subprocess, sys
from pathlib import Path
folder, verb = Path(sys.argv[1]), sys.argv[2]
doc = json.load(sys.stdin)
pidfile = folder / f"{doc['name']}.pid"
with (folder / "calls.jsonl").open("a") as out:
    out.write(json.dumps({"verb": verb, "name": doc["name"]}) + "\n")
if verb == "power-on":
    twin = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)"],
                            start_new_session=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pidfile.write_text(str(twin.pid))
    print(json.dumps({"pid": twin.pid}))
elif verb in ("power-off", "remove") and pidfile.exists():
    try:
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    except ProcessLookupError:
        pass
    pidfile.unlink()
"""


@pytest.fixture
def watched_site(tmp_path: Path, _simulator_available: None):
    stub = tmp_path / "stub_hook.py"
    stub.write_text(STUB)
    twins = tmp_path / "twins"
    twins.mkdir()
    try:
        yield from running_site(tmp_path, "VirtualCenter", [sys.executable, str(stub), str(twins)])
    finally:
        for pidfile in twins.glob("*.pid"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)


def twin_pid(site, name: str) -> int:
    return int((site.plan.parent.parent / "twins" / f"{name}.pid").read_text())


def power_ons(site, name: str) -> int:
    record = site.plan.parent.parent / "twins" / "calls.jsonl"
    calls = [json.loads(line) for line in record.read_text().splitlines()]
    return sum(1 for call in calls if call["verb"] == "power-on" and call["name"] == name)


def kill(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_a_twin_killed_outside_the_simulator_reads_powered_off_and_the_rerun_powers_it_on(watched_site):
    site = watched_site
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    vm, peer = site.vm("vsa-node1"), site.vm("vsa-node2")
    assert vm.runtime.powerState == "poweredOn" and power_ons(site, "vsa-node1") == 1

    kill(twin_pid(site, "vsa-node1"))
    assert wait_until(lambda: vm.runtime.powerState == "poweredOff", timeout=10)
    assert vm.summary.runtime.powerState == "poweredOff"
    assert peer.runtime.powerState == "poweredOn"  # only the dead twin's VM

    site.info.reset_calls()
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    assert site.tasks_since_reset() == {"PowerOnVM_Task": 1}
    assert vm.runtime.powerState == "poweredOn" and power_ons(site, "vsa-node1") == 2


def test_power_operations_through_the_simulator_end_the_old_watch(watched_site):
    site = watched_site
    assert vsa(site.plan, "--yes", "--only", "vms") == 0
    vm = site.vm("vsa-node2")
    first = twin_pid(site, "vsa-node2")
    wait_task(vm.ResetVM_Task())  # off (kills the watched twin), on (a new twin, watched)
    second = twin_pid(site, "vsa-node2")
    wait_task(vm.PowerOffVM_Task())
    wait_task(vm.PowerOnVM_Task())
    third = twin_pid(site, "vsa-node2")
    assert len({first, second, third}) == 3 and vm.runtime.powerState == "poweredOn"
    kill(third)
    assert wait_until(lambda: vm.runtime.powerState == "poweredOff", timeout=10)
    log = (site.plan.parent.parent / "sim" / "sim.log").read_text()
    assert f"vsa-node2: its qemu (pid {third}) is gone" in log
    # The twins the simulator itself powered off were never reported as crashed.
    assert f"(pid {first})" not in log and f"(pid {second})" not in log
