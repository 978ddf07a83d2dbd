"""Benchmark: SOAP requests and wall time of apply-from-empty and a no-op dry run,
all vSphere stages (vms, iscsi, datastore, cluster; the simulator serves the LUN).

Two inventories against the simulated vCenter (sim/): 3 hosts, and 3 hosts plus
2,000 unrelated VMs. Each gets a fresh simulator; the lab plan is applied once
(timed, requests counted server-side), then N no-op dry runs are timed.

Run: cd /work/main && python bench/bench_vsphere.py
Exit 0 with the figures printed (targets are reported, not enforced); 1 if a run fails.
"""

import contextlib
import io
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from orchestrator.cli import main  # noqa: E402
from orchestrator.lab.commands import write_lab_plan  # noqa: E402
from orchestrator.lab.simulator import RunningSim, start_simulator  # noqa: E402
from orchestrator.stages.contract import VSPHERE_STAGES  # noqa: E402
from tests.vsphere.portal import serve_portal  # noqa: E402

N = 5
INVENTORIES = (("3 hosts", 0), ("3 hosts + 2,000 VMs", 2000))
TIME_RATIO_TARGET = 1.5


class BenchError(Exception):
    """A run that did not return the expected exit code."""


@dataclass
class Result:
    label: str
    apply_s: float = 0.0
    apply_requests: int = 0
    apply_methods: dict[str, int] = field(default_factory=dict)
    noop_times: list[float] = field(default_factory=list)
    noop_requests: float = 0.0
    noop_methods: dict[str, float] = field(default_factory=dict)

    @property
    def noop_median(self) -> float:
        return statistics.median(self.noop_times)

    @property
    def noop_min(self) -> float:
        return min(self.noop_times)


def quiet_main(argv: list[str], expected: int) -> float:
    """Run the CLI in-process with its output swallowed; return wall seconds."""
    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    seconds = time.perf_counter() - began
    if code != expected:
        tail = (out.getvalue() + err.getvalue()).strip().splitlines()[-10:]
        raise BenchError(f"{' '.join(argv)} returned {code}, expected {expected}:\n" + "\n".join(tail))
    return seconds


def bench_inventory(label: str, extra_vms: int, workdir: Path) -> Result:
    result = Result(label=label)
    sim: RunningSim | None = None
    try:
        sim = start_simulator(workdir / "sim", extra_vms=extra_vms)
        plan = workdir / "lab" / "lab.toml"
        plan.parent.mkdir(parents=True)
        write_lab_plan(sim.info, plan, None, "heartbeat")
        serve_portal(sim.info, plan)

        sim.info.reset_calls()
        result.apply_s = quiet_main([str(plan), "--yes", "--only", VSPHERE_STAGES], expected=0)
        calls = sim.info.calls()
        result.apply_requests = calls["total"]
        result.apply_methods = dict(calls["methods"])

        sim.info.reset_calls()
        for _ in range(N):
            result.noop_times.append(
                quiet_main([str(plan), "--dry-run", "--only", VSPHERE_STAGES], expected=0)
            )
        calls = sim.info.calls()
        result.noop_requests = calls["total"] / N
        result.noop_methods = {name: count / N for name, count in calls["methods"].items()}
    finally:
        if sim is not None:
            sim.stop()
    return result


def fmt_count(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def method_table(title: str, per_inventory: list[tuple[str, dict[str, float]]]) -> Table:
    """One row per SOAP method, one column per inventory; busiest methods first."""
    table = Table(title=title)
    table.add_column("method")
    for label, _ in per_inventory:
        table.add_column(label, justify="right")
    names = {name for _, methods in per_inventory for name in methods}
    order = sorted(names, key=lambda name: (-max(m.get(name, 0) for _, m in per_inventory), name))
    for name in order:
        table.add_row(name, *(fmt_count(methods.get(name, 0)) for _, methods in per_inventory))
    return table


def report(results: list[Result], console: Console) -> None:
    table = Table(title=f"vSphere benchmark (simulated vCenter; no-op dry run x N={N})")
    table.add_column("inventory")
    table.add_column("apply-from-empty s", justify="right")
    table.add_column("apply requests", justify="right")
    table.add_column("no-op median s", justify="right")
    table.add_column("no-op min s", justify="right")
    table.add_column("no-op requests/run", justify="right")
    for r in results:
        table.add_row(
            r.label,
            f"{r.apply_s:.3f}",
            str(r.apply_requests),
            f"{r.noop_median:.3f}",
            f"{r.noop_min:.3f}",
            fmt_count(r.noop_requests),
        )
    console.print(table)
    console.print(
        method_table(
            "no-op dry run: requests per run by method", [(r.label, r.noop_methods) for r in results]
        )
    )
    console.print(
        method_table("apply from empty: requests by method", [(r.label, r.apply_methods) for r in results])
    )

    small, large = results
    same = small.noop_requests == large.noop_requests and small.noop_methods == large.noop_methods
    ratio = large.noop_median / small.noop_median
    console.print(
        f"{'PASS' if same else 'FAIL'}: same number of requests with and without 2,000 VMs "
        f"({fmt_count(small.noop_requests)} vs {fmt_count(large.noop_requests)} per no-op run)"
    )
    console.print(
        f"{'PASS' if ratio <= TIME_RATIO_TARGET else 'FAIL'}: no-op time with 2,000 VMs <= "
        f"{TIME_RATIO_TARGET}x without "
        f"({large.noop_median:.3f} s vs {small.noop_median:.3f} s median = {ratio:.2f}x)"
    )
    console.print(
        f"{'PASS' if small.noop_median < 2 and small.noop_requests < 15 else 'FAIL'}: no-op run of every "
        f"stage, 3 hosts: under 2 s and under 15 requests ({small.noop_median:.3f} s, "
        f"{fmt_count(small.noop_requests)} requests)"
    )


def run() -> int:
    console = Console(highlight=False, width=120)
    results = []
    began = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory(prefix="vsa-bench-") as tmp:
            for index, (label, extra_vms) in enumerate(INVENTORIES):
                workdir = Path(tmp) / f"inv{index}"
                workdir.mkdir()
                results.append(bench_inventory(label, extra_vms, workdir))
    except Exception as err:
        console.print(f"benchmark run failed: {type(err).__name__}: {err}", markup=False)
        return 1
    report(results, console)
    console.print(f"total benchmark time {time.perf_counter() - began:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run())
