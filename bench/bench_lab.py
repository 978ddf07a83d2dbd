"""Benchmark: the whole stack end to end in the embedded lab, printed as one table.

The simulated vCenter in lab mode drives real storage VMs under qemu/TCG; targets
are reported, not enforced:
- `lab up` and the apply of the lab plan from an empty lab, per stage (vms, guest,
  iscsi, datastore, cluster), with the appliance image cached and (with --cold) with
  VSA_CACHE_DIR pointing at an empty folder (the image build reported on its own);
- a no-op rerun of all five stages (target < 10 s under TCG) and of the vSphere
  stages only (`--only` every stage but guest);
- N failovers (`lab failover`: the serving node's VM powered off through the
  simulator) under a writer through the VIP that records every acknowledged block:
  seconds until the LUN is served again, acknowledged blocks lost (target 0), and
  seconds until `status` is healthy again (the plan rerun powers the node back on,
  it resyncs and returns as secondary) before the next round.

The lab gets its own namespace (VSA_LAB_NS, default vsa-bench) and a lab folder
under /tmp, so it never meets another lab on the machine; it is always taken down.

Run as root: python3 bench/bench_lab.py [--failovers 3] [--cold]
Exit 0 with the figures printed; 1 if a run fails.
"""

import os

# Before anything reads it (orchestrator.lab.netns does at import).
os.environ.setdefault("VSA_LAB_NS", "vsa-bench")

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from orchestrator.appliance.build import Appliance, build_appliance  # noqa: E402
from orchestrator.lab import netns  # noqa: E402
from orchestrator.lab.commands import lab_down, lab_up  # noqa: E402
from orchestrator.plan import load_plan  # noqa: E402
from orchestrator.stages.contract import STAGE_ORDER, VSPHERE_STAGES  # noqa: E402
from tests.lab.acked_writes import AckedWriter  # noqa: E402

NOOP_TARGET_S = 10.0
RUN_TIMEOUT_S = 1800
HEALTHY_TIMEOUT_S = 1200
STATUS_EVERY_S = 5.0
STAGE_LINE = re.compile(r"^stage (\w+): (\d+) change\(s\) in ([\d.]+) s$", re.M)
FAILOVER_LINE = re.compile(r"failover: \S+ served by (\S+) ([\d.]+) s after (\S+)'s host lost power")

console = Console(highlight=False)


class BenchError(Exception):
    """A step that did not do what it must."""


@dataclass
class Apply:
    lab_up_s: float
    total_s: float
    stages: dict[str, tuple[int, float]]  # stage -> (changes, seconds)
    image_build_s: float | None = None


@dataclass
class Round:
    served_s: float
    victim: str
    server: str
    acknowledged: int  # writes
    checked: int  # blocks read back after the failover
    lost: int
    heal_apply_s: float
    healthy_s: float  # from the power-off until `status` exits 0


@dataclass
class Results:
    applies: dict[str, Apply] = field(default_factory=dict)  # "cached" / "cold"
    noop_all_s: float = 0.0
    noop_vsphere_s: float = 0.0
    rounds: list[Round] = field(default_factory=list)


def _env() -> dict[str, str]:
    """The subprocesses' environment: this lab's namespace, the repo importable, output unbuffered."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> list[str]:
    """The CLI inside the lab namespace (where the simulator and the storage network are)."""
    return [*netns.exec_prefix(), sys.executable, "-m", "orchestrator", *args]


def run_cli(*args: str, expected: tuple[int, ...] = (0,)) -> tuple[float, subprocess.CompletedProcess]:
    began = time.monotonic()
    result = subprocess.run(
        _cli(*args), capture_output=True, text=True, cwd=REPO, env=_env(), timeout=RUN_TIMEOUT_S, check=False
    )
    seconds = time.monotonic() - began
    if result.returncode not in expected:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise BenchError(f"vsa-orchestrate {' '.join(args)} exited {result.returncode}:\n{tail}")
    return seconds, result


def apply_from_empty(lab_dir: Path, label: str) -> Apply:
    console.log(f"[{label}] lab up in {lab_dir} (namespace {netns.NAMESPACE})")
    began = time.monotonic()
    plan = lab_up(lab_dir, say=lambda line: console.log(f"[{label}] {line}"))
    lab_up_s = time.monotonic() - began
    console.log(f"[{label}] lab up in {lab_up_s:.1f} s; applying the lab plan from empty")
    total_s, result = run_cli(str(plan), "--yes")
    stages = {name: (int(count), float(s)) for name, count, s in STAGE_LINE.findall(result.stdout)}
    missing = [stage for stage in STAGE_ORDER if stage not in stages]
    if missing:
        raise BenchError(f"no timing printed for stage(s) {', '.join(missing)}:\n{result.stdout[-2000:]}")
    console.log(f"[{label}] applied in {total_s:.1f} s")
    return Apply(lab_up_s, total_s, stages)


def noop(plan: Path, *only: str) -> float:
    seconds, result = run_cli(str(plan), "--yes", *only)
    if "No changes" not in result.stdout:
        raise BenchError(f"the rerun {' '.join(only)} was not a no-op:\n{result.stdout[-2000:]}")
    return seconds


def failover_round(plan_path: Path, lab_dir: Path, round_no: int) -> Round:
    plan = load_plan(plan_path)
    with AckedWriter(plan, round_no) as writer:
        writer.wait_more(3, 60)
        console.log(f"[failover {round_no + 1}] {writer.count} writes acknowledged; powering off")
        lines, powered_off = _lab_failover(lab_dir)
        writer.wait_more(2, 60)  # the writer gets through again
    match = FAILOVER_LINE.search("\n".join(lines))
    if match is None:
        raise BenchError("lab failover printed no result:\n" + "\n".join(lines[-15:]))
    server, served_s, victim = match.group(1), float(match.group(2)), match.group(3)
    lost = writer.lost()
    console.log(f"[failover {round_no + 1}] served by {server} after {served_s:.1f} s; {lost} lost")
    heal_apply_s, _ = run_cli(str(plan_path), "--yes")
    healthy_s = wait_healthy(plan_path) - powered_off
    console.log(f"[failover {round_no + 1}] healthy {healthy_s:.1f} s after the power-off")
    return Round(served_s, victim, server, writer.count, len(writer.latest), lost, heal_apply_s, healthy_s)


def _lab_failover(lab_dir: Path) -> tuple[list[str], float]:
    """Run `lab failover`; its output lines and when it powered the VM off (monotonic)."""
    command = _cli("lab", "failover", "--dir", str(lab_dir))
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_env()
    ) as process:
        lines, powered_off = [], None
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if powered_off is None and "host lost power; waiting" in line:
                powered_off = time.monotonic()
        code = process.wait()
    if code != 0 or powered_off is None:
        raise BenchError(f"lab failover exited {code}:\n" + "\n".join(lines[-15:]))
    return lines, powered_off


def wait_healthy(plan_path: Path) -> float:
    """Poll `status` until it exits 0; when it did (monotonic)."""
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        result = subprocess.run(
            _cli("status", str(plan_path)), capture_output=True, text=True, cwd=REPO, env=_env(), check=False
        )
        if result.returncode == 0:
            return time.monotonic()
        if time.monotonic() > deadline:
            tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-20:])
            raise BenchError(
                f"status not healthy within {HEALTHY_TIMEOUT_S} s (exit {result.returncode}):\n{tail}"
            )
        time.sleep(STATUS_EVERY_S)


@contextmanager
def lab(label: str) -> Iterator[Path]:
    """A fresh lab folder under /tmp; the lab is taken down and the folder removed at the end."""
    lab_dir = Path(tempfile.mkdtemp(prefix=f"vsa-bench-lab-{label}-"))
    try:
        yield lab_dir
    finally:
        lab_down(lab_dir)
        shutil.rmtree(lab_dir)
        console.log(f"[{label}] lab down")


@contextmanager
def cache_dir(path: Path) -> Iterator[None]:
    """VSA_CACHE_DIR set to path for lab_up (and the simulator's hook it starts)."""
    before = os.environ.get("VSA_CACHE_DIR")
    os.environ["VSA_CACHE_DIR"] = str(path)
    try:
        yield
    finally:
        if before is None:
            del os.environ["VSA_CACHE_DIR"]
        else:
            os.environ["VSA_CACHE_DIR"] = before


def cold_apply() -> Apply:
    """Lab up and apply with VSA_CACHE_DIR on an empty folder: the image is built first."""
    with (
        tempfile.TemporaryDirectory(prefix="vsa-bench-cold-cache-") as folder,
        cache_dir(Path(folder)),
        lab("cold") as lab_dir,
    ):
        apply = apply_from_empty(lab_dir, "cold")
        apply.image_build_s = Appliance.of(build_appliance()).manifest["build_seconds"]
    return apply


def run(failovers: int, cold: bool) -> Results:
    results = Results()
    if cold:
        results.applies["cold"] = cold_apply()
    with lab("cached") as lab_dir:
        results.applies["cached"] = apply_from_empty(lab_dir, "cached")
        plan = lab_dir / "lab.toml"
        console.log("no-op reruns")
        results.noop_all_s = noop(plan)
        results.noop_vsphere_s = noop(plan, "--only", VSPHERE_STAGES)
        for round_no in range(failovers):
            results.rounds.append(failover_round(plan, lab_dir, round_no))
    return results


def table(results: Results, failovers: int) -> Table:
    out = Table(title=f"vsa-orchestrate end to end (lab mode, qemu/TCG, namespace {netns.NAMESPACE})")
    for column in ("measure", "figure", "target"):
        out.add_column(column)
    for label in ("cold", "cached"):
        apply = results.applies.get(label)
        if apply is None:
            continue
        if apply.image_build_s is not None:
            out.add_row(f"{label}: appliance image build", f"{apply.image_build_s:.1f} s", "")
        out.add_row(f"{label}: lab up", f"{apply.lab_up_s:.1f} s", "")
        for stage in STAGE_ORDER:
            count, seconds = apply.stages[stage]
            out.add_row(f"{label}: apply, stage {stage}", f"{seconds:.1f} s", f"{count} change(s)")
        rest = apply.total_s - sum(seconds for _, seconds in apply.stages.values())
        out.add_row(f"{label}: apply, observe + diff + verify", f"{rest:.1f} s", "")
        out.add_row(f"{label}: apply from empty, total", f"{apply.total_s:.1f} s", "", style="bold")
    out.add_row(
        "no-op rerun, all five stages",
        f"{results.noop_all_s:.1f} s",
        f"< {NOOP_TARGET_S:.0f} s ({'met' if results.noop_all_s < NOOP_TARGET_S else 'MISSED'})",
    )
    out.add_row(f"no-op rerun, --only {VSPHERE_STAGES}", f"{results.noop_vsphere_s:.1f} s", "")
    for number, r in enumerate(results.rounds, 1):
        out.add_row(
            f"failover {number}: {r.victim} -> {r.server}",
            f"{r.served_s:.1f} s",
            f"{r.lost} of {r.checked} blocks lost ({r.acknowledged} writes acknowledged); target 0",
        )
        out.add_row(
            f"failover {number}: healthy again after the power-off",
            f"{r.healthy_s:.1f} s",
            f"rerun {r.heal_apply_s:.1f} s, then resync",
        )
    if len(results.rounds) > 1:
        served = [r.served_s for r in results.rounds]
        out.add_row(
            f"failover x{len(served)} (min / median / max)",
            f"{min(served):.1f} / {statistics.median(served):.1f} / {max(served):.1f} s",
            "",
        )
    lost = sum(r.lost for r in results.rounds)
    checked = sum(r.checked for r in results.rounds)
    out.add_row(
        f"acknowledged blocks lost, {failovers} failover(s)",
        f"{lost} of {checked}",
        f"0 ({'met' if lost == 0 else 'MISSED'})",
        style="bold",
    )
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--failovers", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also run from an empty image cache first")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (network namespace, taps)")
    began = time.monotonic()
    try:
        results = run(args.failovers, args.cold)
    except Exception as err:
        console.print(f"benchmark run failed: {type(err).__name__}: {err}", markup=False)
        return 1
    console.print(table(results, args.failovers))
    console.print(f"total benchmark time {time.monotonic() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
