"""Benchmark: hard failover of the serving storage node, N kills, printed as one table.

Per round, on the embedded lab (qemu/TCG): a writer through the VIP records every
acknowledged block (tests/lab/acked_writes.py); the serving node's qemu gets
SIGKILL (the host lost power); from that instant, probe writes through the VIP
start every PROBE_EVERY_S, each its own iSCSI login (as an initiator
reconnecting), and the first one acknowledged ends the outage. Then every block
the writer and the probes had acknowledged is read back (lost = target 0), the
plan rerun powers the victim on, and the round ends once `status` is healthy.

Printed: per round the seconds from SIGKILL to the first acknowledged write and
the survivor's own timeline (from its journal: Corosync's new membership,
vsa-serve's start, the VIP up), then min / median / max and the blocks lost.
Target (issue 13): <= 10 s with ha.manager = "pacemaker".

Run as root: python3 bench/bench_failover.py [--kills 10] [--manager pacemaker|heartbeat]
[--journals DIR]
Exit 0 with the figures printed; 1 if a run fails.
"""

import os

os.environ.setdefault("VSA_LAB_NS", "vsa-bench")

import argparse
import contextlib
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench_lab import BenchError, console, lab, run_cli, wait_healthy  # noqa: E402
from rich.table import Table  # noqa: E402

from orchestrator.lab import netns  # noqa: E402
from orchestrator.lab.commands import MANAGERS, lab_up  # noqa: E402
from orchestrator.lab.qemu import qemu_pid  # noqa: E402
from orchestrator.plan import Plan, load_plan  # noqa: E402
from tests.lab.acked_writes import BLOCK, MIB, AckedWriter  # noqa: E402
from tests.lab.nodes import active_node, on, qemu_io  # noqa: E402

TARGET_S = 10.0
PROBE_EVERY_S = 0.25
PROBE_BASE = 2048 * MIB  # clear of the writer's regions
OUTAGE_LIMIT_S = 120.0
# Survivor journal lines (short-precise timestamps) that mark the takeover's steps.
SERVE = r"vsa-serve(\[\d+\])?: start: "  # syslog tags carry the pid: vsa-serve[982]
STEPS = {
    "membership": re.compile(r"A new membership .* was formed\. Members left"),
    "DC elected": re.compile(r"State transition S_ELECTION -> S_INTEGRATION"),
    "serve start": re.compile(r"Initiating start operation vsa-serve_start_0|info: Running .*drbddisk"),
    "LUN peer lost": re.compile(r"drbd iscsi\.target\.0: (PingAck did not arrive|conn\( \S+ -> )"),
    "peer outdated": re.compile(r"vsa-fence-peer(\[\d+\])?: .*outdated|drbd-peer-outdater"),
    "DRBD primary": re.compile(SERVE + r"DRBD primary|block drbd1: role\( Secondary -> Primary \)"),
    "mounted": re.compile(SERVE + "config volume mounted"),
    "target": re.compile(SERVE + "target started"),
    "VIP up": re.compile(SERVE + r"VIP up|IPaddr2.*Success"),
}


@dataclass
class Kill:
    victim: str
    first_ack_s: float
    acknowledged: int
    checked: int
    lost: int
    steps: dict[str, float] = field(default_factory=dict)  # step -> seconds after the kill
    healthy_s: float = 0.0


class FirstAck:
    """Probe writes through the VIP, one started every PROBE_EVERY_S, until one is acknowledged."""

    def __init__(self, plan: Plan, round_no: int):
        self.plan = plan
        self.base = PROBE_BASE + round_no * 64 * MIB
        self.acked: list[tuple[float, int, int]] = []  # (monotonic time, offset, pattern)
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def run(self, since: float) -> float:
        index = 0
        while not self.acked:
            if time.monotonic() - since > OUTAGE_LIMIT_S:
                raise BenchError(f"no write acknowledged within {OUTAGE_LIMIT_S:.0f} s of the kill")
            offset, pattern = self.base + index * BLOCK, 1 + index % 250
            thread = threading.Thread(target=self._probe, args=(offset, pattern), daemon=True)
            thread.start()
            self._threads.append(thread)
            index += 1
            time.sleep(PROBE_EVERY_S)
        for thread in self._threads:
            thread.join()
        return min(at for at, _, _ in self.acked) - since

    def _probe(self, offset: int, pattern: int) -> None:
        if "wrote 65536" in qemu_io(self.plan, f"write -P {pattern} {offset} {BLOCK}").stdout:
            with self._lock:
                self.acked.append((time.monotonic(), offset, pattern))

    def lost(self) -> int:
        return sum(
            "read 65536/65536" not in qemu_io(self.plan, f"read -P {p} {o} {BLOCK}", read_only=True).stdout
            for _, o, p in self.acked
        )


def survivor_steps(
    plan: Plan, survivor: str, killed_wall: float, keep: Path | None = None
) -> dict[str, float]:
    """Seconds after the kill at which the survivor logged each takeover step (first match),
    on the host's clock (the guest's offset measured around one SSH round trip); the journal
    since the kill is written to keep when given."""
    asked = time.time()
    guest_now = float(on(plan, survivor, "date +%s.%N"))
    offset = guest_now - (asked + time.time()) / 2
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(killed_wall + offset - 1))
    journal = on(plan, survivor, f"TZ=UTC journalctl -o short-unix --no-pager --since '{since} UTC'")
    if keep is not None:
        keep.write_text(journal)
    found: dict[str, float] = {}
    for line in journal.splitlines():
        stamp, _, text = line.partition(" ")
        for step, pattern in STEPS.items():
            if step not in found and pattern.search(text):
                with contextlib.suppress(ValueError):  # a line without a timestamp
                    found[step] = float(stamp) - offset - killed_wall
    return found


def kill_round(plan_path: Path, lab_dir: Path, round_no: int, journals: Path | None) -> Kill:
    plan = load_plan(plan_path)
    victim = active_node(plan)
    survivor = next(node.node for node in plan.storage_nodes if node.node != victim)
    pid = qemu_pid(lab_dir / "vms" / plan.vm_name(victim))
    if pid is None:
        raise BenchError(f"no qemu runs for {victim}")
    probes = FirstAck(plan, round_no)
    with AckedWriter(plan, round_no) as writer:
        writer.wait_more(3, 60)
        killed_wall, killed = time.time(), time.monotonic()
        os.kill(pid, signal.SIGKILL)
        first_ack_s = probes.run(killed)
        writer.wait_more(2, 60)
    lost = writer.lost() + probes.lost()
    checked = len(writer.latest) + len(probes.acked)
    keep = journals / f"kill-{round_no + 1}-{survivor}.log" if journals else None
    steps = survivor_steps(plan, survivor, killed_wall, keep)
    console.log(f"[kill {round_no + 1}] {victim}: first write acknowledged {first_ack_s:.1f} s after SIGKILL")
    run_cli(str(plan_path), "--yes")  # powers the victim on; it resyncs and returns as standby
    healthy_s = wait_healthy(plan_path) - killed
    return Kill(victim, first_ack_s, writer.count, checked, lost, steps, healthy_s)


def table(kills: list[Kill], manager: str) -> Table:
    out = Table(title=f"hard failover, manager {manager} (lab mode, qemu/TCG, namespace {netns.NAMESPACE})")
    for column in ("measure", "figure", "detail"):
        out.add_column(column)
    for number, kill in enumerate(kills, 1):
        steps = ", ".join(f"{step} +{seconds:.1f}" for step, seconds in kill.steps.items())
        out.add_row(f"kill {number}: {kill.victim}", f"{kill.first_ack_s:.1f} s", steps)
    figures = [kill.first_ack_s for kill in kills]
    worst = max(figures)
    out.add_row(
        f"SIGKILL -> first acknowledged write, x{len(figures)} (min / median / max)",
        f"{min(figures):.1f} / {statistics.median(figures):.1f} / {worst:.1f} s",
        f"target <= {TARGET_S:.0f} s ({'met' if worst <= TARGET_S else 'MISSED'})",
        style="bold",
    )
    lost, checked = sum(k.lost for k in kills), sum(k.checked for k in kills)
    out.add_row("acknowledged blocks lost", f"{lost} of {checked}", f"0 ({'met' if lost == 0 else 'MISSED'})")
    healthy = [kill.healthy_s for kill in kills]
    out.add_row(
        "healthy again after the kill (rerun + resync)", f"median {statistics.median(healthy):.0f} s", ""
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--manager", choices=MANAGERS, default=MANAGERS[0])
    parser.add_argument("--journals", type=Path, help="folder for each survivor's journal since its kill")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespace, taps)")
    began = time.monotonic()
    try:
        with lab("failover") as lab_dir:
            plan_path = lab_up(lab_dir, say=lambda line: console.log(f"[lab] {line}"), manager=args.manager)
            seconds, _ = run_cli(str(plan_path), "--yes")
            console.log(f"applied in {seconds:.1f} s")
            if args.journals:
                args.journals.mkdir(parents=True, exist_ok=True)
            kills = [kill_round(plan_path, lab_dir, n, args.journals) for n in range(args.kills)]
    except (BenchError, AssertionError, subprocess.SubprocessError, OSError) as err:
        console.print(f"benchmark run failed: {type(err).__name__}: {err}", markup=False)
        return 1
    console.print(table(kills, args.manager))
    console.print(f"total benchmark time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
