"""Benchmark: the storage nodes on real VMs (qemu/TCG in the lab namespace).

One run, printed as a table (targets reported, not enforced):
- appliance image build, cached and (with --cold) cold into an empty cache;
- guest-stage first apply with a 256 MiB and a 2 GiB data disk (target: within 10 %);
- sequential 1 MiB direct writes: raw data disk inside a node vs iSCSI over DRBD
  through the VIP from the lab side (target: >= 70 %);
- N hard failovers (kill -9 of the active node's qemu while a writer records every
  acknowledged block): seconds until the LUN is readable on the VIP again, and
  acknowledged blocks lost (targets: <= deadtime + 6 s, 0 lost). After each kill the
  node is started again, the orchestrator reruns, and DRBD resyncs before the next.

Run as root: python3 bench/bench_guest.py [--failovers 5] [--cold]
"""

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from orchestrator.appliance.build import Appliance, build_appliance  # noqa: E402
from orchestrator.lab import netns  # noqa: E402
from orchestrator.lab.qemu import Disk, LabVm  # noqa: E402
from orchestrator.plan import Plan  # noqa: E402
from tests.lab.acked_writes import AckedWriter, lun_readable  # noqa: E402
from tests.lab.conftest import storage_vm, write_lab_plan  # noqa: E402
from tests.lab.nodes import active_node, fully_synced, on, qemu_io, vsa, wait_for, wait_ssh  # noqa: E402

MIB = 2**20
THROUGHPUT_MIB = 128
SERVE_TIMEOUT_S = 180
SYNC_TIMEOUT_S = 900

console = Console()


class Pair:
    """Two booted storage VMs for a lab plan whose data disks are data_mib large."""

    def __init__(self, root: Path, name: str, data_mib: int, appliance: Appliance):
        self.plan: Plan = write_lab_plan(root / name, data_disk_gb=max(1, data_mib // 1024))
        self.vms: dict[str, LabVm] = {}
        for node in self.plan.storage_nodes:
            vm = storage_vm(self.plan, node, appliance, root / f"{name}-{node.node}")
            disks = (*vm.spec.disks[:2], Disk("data", data_mib * MIB))
            self.vms[node.node] = LabVm(type(vm.spec)(**{**vm.spec.__dict__, "disks": disks}), vm.directory)

    def __enter__(self) -> "Pair":
        for vm in self.vms.values():
            vm.start()
        wait_ssh(self.plan)
        return self

    def __exit__(self, *exc: object) -> None:
        for vm in self.vms.values():
            vm.power_off()

    def apply(self) -> float:
        began = time.monotonic()
        result = vsa(self.plan, "--yes")
        if result.returncode != 0:
            raise SystemExit(f"guest apply failed:\n{result.stdout}{result.stderr}")
        return time.monotonic() - began


def image_times(cold: bool) -> dict[str, float]:
    times = {}
    began = time.monotonic()
    build_appliance()
    times["cached"] = time.monotonic() - began
    if cold:
        with tempfile.TemporaryDirectory(prefix="vsa-cold-cache-") as empty:
            began = time.monotonic()
            build_appliance(cache_dir=Path(empty))
            times["cold"] = time.monotonic() - began
    return times


def raw_write_mib_s(pair: Pair) -> float:
    """Direct 1 MiB writes to node1's data disk, before DRBD owns it (zeros leave no signature)."""
    command = f"dd if=/dev/zero of=/dev/sdd bs=1M count={THROUGHPUT_MIB} oflag=direct 2>&1"
    out = on(pair.plan, "node1", command)
    seconds = float(re.search(r"copied, ([\d.]+) s", out).group(1))
    return THROUGHPUT_MIB / seconds


def iscsi_write_mib_s(pair: Pair) -> float:
    commands = [f"write -P 0x77 {index}M 1M" for index in range(THROUGHPUT_MIB)]
    out = qemu_io(pair.plan, *commands).stdout
    seconds = sum(_seconds(m.group(1)) for m in re.finditer(r"ops; ([\d:.]+) sec", out))
    if out.count("wrote 1048576") != THROUGHPUT_MIB:
        raise SystemExit(f"iSCSI writes failed:\n{out[-2000:]}")
    return THROUGHPUT_MIB / seconds


def _seconds(text: str) -> float:
    """qemu-io's elapsed time: [[HH:]MM:]SS.ss"""
    total = 0.0
    for part in text.split(":"):
        total = total * 60 + float(part)
    return total


def failover(pair: Pair, round_no: int) -> tuple[float, int, int]:
    """Kill the active node under a writer; (seconds to serve again, blocks acknowledged, lost)."""
    plan = pair.plan
    with AckedWriter(plan, round_no) as writer:
        writer.wait_more(3, 60)
        active = active_node(plan)
        pair.vms[active].power_off()
        killed = time.monotonic()
        wait_for(lambda: lun_readable(plan), SERVE_TIMEOUT_S)
        seconds = time.monotonic() - killed
        writer.wait_more(2, 60)  # the writer gets through again
    lost = writer.lost()
    pair.vms[active].start()
    wait_ssh(plan)
    pair.apply()
    wait_for(lambda: fully_synced(plan), SYNC_TIMEOUT_S)
    return seconds, len(writer.latest), lost


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also build the image into an empty cache")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespace, taps)")
    images = image_times(args.cold)
    appliance = Appliance.of(build_appliance())
    netns.up()
    rows: list[tuple[str, str, str]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="vsa-bench-guest-") as folder:
            root = Path(folder)
            with Pair(root, "small", 256, appliance) as small:
                small_apply = small.apply()
            with Pair(root, "large", 2048, appliance) as large:
                raw = raw_write_mib_s(large)
                large_apply = large.apply()
                over_iscsi = iscsi_write_mib_s(large)
                deadtime = large.plan.ha.deadtime
                rounds = [failover(large, n) for n in range(args.failovers)]
    finally:
        netns.down()
    for kind, seconds in images.items():
        rows.append((f"appliance image, {kind}", f"{seconds:.1f} s", ""))
    spread = abs(large_apply - small_apply) / small_apply * 100
    rows.append(("guest apply, 256 MiB data disk", f"{small_apply:.1f} s", ""))
    rows.append(("guest apply, 2 GiB data disk", f"{large_apply:.1f} s", f"{spread:.0f} % apart (<= 10 %)"))
    rows.append(("raw data disk, 1 MiB direct writes", f"{raw:.1f} MiB/s", ""))
    rows.append(
        (
            "iSCSI over DRBD via the VIP",
            f"{over_iscsi:.1f} MiB/s",
            f"{over_iscsi / raw * 100:.0f} % of raw (>= 70 %)",
        )
    )
    times = [seconds for seconds, _, _ in rounds]
    rows.append(
        (
            f"failover x{len(times)} (min / median / max)",
            f"{min(times):.1f} / {statistics.median(times):.1f} / {max(times):.1f} s",
            f"<= {deadtime + 6} s (deadtime {deadtime} + 6)",
        )
    )
    rows.append(
        (
            "acknowledged blocks lost",
            f"{sum(lost for *_, lost in rounds)} of {sum(acked for _, acked, _ in rounds)}",
            "0",
        )
    )
    table = Table(title="vsa-orchestrate storage nodes (qemu/TCG)")
    for column in ("measure", "figure", "target"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
