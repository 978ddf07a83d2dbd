"""Benchmark: importing the real appliance OVA into the simulated vCenter.

Takes the appliance from the cache (`vsa-orchestrate appliance build` makes it;
this script builds it when missing) or --ova PATH, then against a fresh
simulator: the manifest check alone (every SHA256 digest of the OVA), and the
`vms` stage creating both storage VMs from the OVA (CreateImportSpec,
ImportVApp, the NFC upload of the streamOptimized VMDK, which the simulator
decodes into each VM's disk, Complete, the reconfigure, power-on). Prints the
seconds and MiB/s of each; a no-op rerun must run no task.

Run: cd /work/main && .venv/bin/python bench/bench_import.py [--ova PATH]
Exit 0 with the figures printed; 1 if a run fails.
"""

import argparse
import contextlib
import io
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from orchestrator.appliance.build import Appliance, build_appliance  # noqa: E402
from orchestrator.cli import main  # noqa: E402
from orchestrator.lab.commands import write_lab_plan  # noqa: E402
from orchestrator.lab.simulator import start_simulator  # noqa: E402
from orchestrator.vsphere import ova_package  # noqa: E402

MIB = 2**20
IMPORTED = re.compile(r"(vm \S+): imported \S+: (\d+) bytes in ([\d.]+) s")


def quiet_main(argv: list[str]) -> tuple[int, float, str]:
    out, err = io.StringIO(), io.StringIO()
    began = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, time.perf_counter() - began, out.getvalue() + err.getvalue()


def run(ova: Path) -> int:
    size = ova.stat().st_size
    print(f"OVA: {ova} ({size / MIB:.1f} MiB)")
    began = time.perf_counter()
    package = ova_package.open_ova(ova)
    ova_package.verify(package)
    seconds = time.perf_counter() - began
    print(f"manifest check (SHA256 of every entry): {seconds:.2f} s, {size / MIB / seconds:.0f} MiB/s")

    with tempfile.TemporaryDirectory(prefix="vsa-bench-import-") as tmp:
        work = Path(tmp)
        sim = start_simulator(work / "sim")
        try:
            plan = work / "lab" / "lab.toml"
            plan.parent.mkdir()
            write_lab_plan(sim.info, plan, ova, "heartbeat")
            sim.info.reset_calls()
            code, seconds, output = quiet_main([str(plan), "--yes", "--only", "vms"])
            if code != 0:
                print("\n".join(output.strip().splitlines()[-10:]))
                return 1
            calls = sim.info.calls()["methods"]
            print(
                f"vms stage, 2 nodes from empty: {seconds:.2f} s (plan check, import, reconfigure, power on)"
            )
            log = (plan.with_name("lab.toml.state") / "run.log").read_text()
            for resource, sent, upload_s in IMPORTED.findall(log):
                mib, upload = int(sent) / MIB, float(upload_s)
                print(f"  {resource}: upload {mib:.1f} MiB in {upload:.2f} s, {mib / upload:.0f} MiB/s")
            print(
                "  calls: "
                + ", ".join(
                    f"{name} {calls.get(name, 0)}"
                    for name in ("CreateImportSpec", "ImportVApp", "NfcUpload", "HttpNfcLeaseProgress")
                )
            )
            for node, datastore in (("vsa-node1", "esx1-local"), ("vsa-node2", "esx2-local")):
                flat = work / "sim" / "datastores" / datastore / node / f"{node}-flat.vmdk"
                stat = flat.stat()
                print(
                    f"  {node}: OS disk landed as {flat.name}: {stat.st_size / MIB:.0f} MiB capacity, "
                    f"{stat.st_blocks * 512 / MIB:.0f} MiB written"
                )
            sim.info.reset_calls()
            code, seconds, _ = quiet_main([str(plan), "--yes", "--only", "vms"])
            tasks = {k: v for k, v in sim.info.calls()["methods"].items() if k.endswith("_Task")}
            print(f"no-op rerun: {seconds:.2f} s, tasks {tasks or 'none'}")
            return 0 if code == 0 and not tasks else 1
        finally:
            sim.stop()


def main_() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ova", type=Path, help="an OVA to import (default: the cached appliance's)")
    args = parser.parse_args()
    ova = args.ova or Appliance.of(build_appliance(progress=print)).ova
    return run(ova.resolve())


if __name__ == "__main__":
    sys.exit(main_())
