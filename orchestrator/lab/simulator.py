"""The simulated vCenter: our Go program around govmomi's vcsim (sim/).

Built by scripts/build-sim into a cache outside the repo (keyed on the
source hash); started on loopback with TLS; it prints its connection facts
as one JSON line when ready.
"""

import json
import os
import secrets
import select
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-sim"
START_TIMEOUT_S = 120


class LabError(Exception):
    """A lab fault explained in one line, with what to do."""


@dataclass(frozen=True)
class SimInfo:
    url: str
    host: str
    port: int
    thumbprint: str
    username: str
    password: str
    control_url: str
    datacenter: str
    hosts: list[dict[str, str]]  # name, datastore, thumbprint (SHA-1), thumbprint_sha256
    portgroups: list[str]
    template: str
    shared_datastore: str
    # Reachable hosts not in the inventory, to add with their pinned thumbprint:
    # name, thumbprint, thumbprint_sha256, user, password.
    spare_hosts: list[dict[str, str]]

    @classmethod
    def from_json(cls, text: str) -> "SimInfo":
        data = json.loads(text)
        return cls(**{name: data[name] for name in cls.__dataclass_fields__})

    def calls(self) -> dict[str, Any]:
        """Server-side count of SOAP methods invoked so far."""
        return requests.get(f"{self.control_url}/calls", timeout=10).json()

    def reset_calls(self) -> None:
        requests.post(f"{self.control_url}/calls/reset", timeout=10).raise_for_status()


def build_simulator() -> Path:
    """Path of the simulator binary, building it when the cache lacks it."""
    result = subprocess.run([str(BUILD_SCRIPT)], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines() or ["no output"]
        raise LabError(f"building the simulated vCenter (scripts/build-sim) failed: {lines[-1].strip()}")
    return Path(result.stdout.strip().splitlines()[-1])


@dataclass
class RunningSim:
    process: subprocess.Popen
    info: SimInfo

    def stop(self) -> None:
        stop_pid(self.process.pid)
        self.process.wait(timeout=30)


def start_simulator(
    state_dir: Path,
    extra_vms: int = 0,
    log_path: Path | None = None,
    api_type: str = "VirtualCenter",
    lab_hook: list[str] | None = None,
    prefix: list[str] | None = None,
    env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> RunningSim:
    """Start a simulator; api_type "HostAgent" makes it answer as an ESXi host would.
    lab_hook (argv) puts it in lab mode (sim/lab_hook.go); prefix runs it
    through another command (`ip netns exec NS`: inside the lab namespace)."""
    binary = build_simulator()
    state_dir.mkdir(parents=True, exist_ok=True)
    log = open(log_path or state_dir / "sim.log", "ab")  # noqa: SIM115 - handed to the child
    command = [
        *(prefix or []),
        str(binary),
        "-listen",
        "127.0.0.1:0",
        "-state-dir",
        str(state_dir),
        "-username",
        "vsa-admin",
        "-password",
        secrets.token_urlsafe(18),
        "-extra-vms",
        str(extra_vms),
        "-api-type",
        api_type,
    ]
    if lab_hook:
        command += ["-lab-hook", json.dumps(lab_hook)]
    command += extra_args or []
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, start_new_session=True, env=env)
    log.close()
    line = _first_line(process, START_TIMEOUT_S)
    return RunningSim(process=process, info=SimInfo.from_json(line))


def _first_line(process: subprocess.Popen[bytes], timeout_s: float) -> str:
    stdout = process.stdout
    if stdout is None:
        raise LabError("the simulator was started without a pipe on its stdout")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([stdout], [], [], 0.5)
        if ready:
            line = stdout.readline().decode()
            if line.strip():
                return line
        if process.poll() is not None:
            raise LabError(f"the simulated vCenter exited with code {process.returncode}; see its log")
    process.kill()
    raise LabError(f"the simulated vCenter did not report ready within {timeout_s:.0f} s")


def stop_pid(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
