"""A missing tool or file, or a failing tool, in the appliance build reads as one
line naming the step and what to install or check; the CLI prints it as one
`error:` line on stderr and exits 1, never a traceback."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.appliance import build, rootfs
from orchestrator.appliance.shell import ApplianceError, run
from orchestrator.host_files import ARCHIVE_KEYRING, MBR_BIN

REPO = Path(__file__).resolve().parents[2]


def fake_tools(folder: Path, commands=build.BUILD_COMMANDS) -> Path:
    """A PATH folder where every build tool exists (and does nothing)."""
    folder.mkdir(parents=True, exist_ok=True)
    for command in commands:
        tool = folder / command
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return folder


def fake_host(root: Path, *files: str) -> Path:
    for path in files:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    return root


def test_a_missing_tool_names_it_and_its_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = [command for command in build.BUILD_COMMANDS if command != "syslinux"]
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "bin", tools)))
    with pytest.raises(ApplianceError) as caught:
        build.check_host(fake_host(tmp_path / "root", ARCHIVE_KEYRING, MBR_BIN))
    assert str(caught.value) == (
        "appliance build: host tools: syslinux not found; apt-get install syslinux (scripts/install-lab-deps)"
    )


def test_a_missing_mbr_bin_names_the_bootloader_step_and_syslinux_common(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(fake_tools(tmp_path / "bin")))
    with pytest.raises(ApplianceError) as caught:
        build.check_host(fake_host(tmp_path / "root", ARCHIVE_KEYRING))
    assert str(caught.value) == (
        "appliance build: bootloader: /usr/lib/syslinux/mbr/mbr.bin is missing; "
        "apt-get install syslinux-common (scripts/install-lab-deps)"
    )


def test_a_failing_tool_is_one_line_with_its_error_line() -> None:
    with pytest.raises(ApplianceError) as caught:
        run(
            [
                "sh",
                "-c",
                "echo I: fine; echo 'E: Couldnt find these debs: nope' >&2; echo W: see log >&2; exit 3",
            ]
        )
    assert str(caught.value) == "sh failed (exit 3): E: Couldnt find these debs: nope"


def test_a_tool_not_on_path_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ApplianceError) as caught:
        run(["mcopy", "-i", "boot.img", "x", "::x"])
    assert str(caught.value) == "mcopy not found; apt-get install mtools (scripts/install-lab-deps)"


def test_a_failing_step_names_the_step_the_check_and_the_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_debootstrap(tree: Path, cache: Path, mirror: str) -> None:
        run(["sh", "-c", "echo 'E: Failed getting release file' >&2; exit 1"])

    monkeypatch.setattr(build, "check_host", lambda: None)
    monkeypatch.setattr(rootfs, "debootstrap", broken_debootstrap)
    with pytest.raises(ApplianceError) as caught:
        build.build_appliance(tmp_path, mirror="http://mirror.invalid/debian")
    log = tmp_path / "appliance" / build.LOG
    assert str(caught.value) == (
        "appliance build: debootstrap: sh failed (exit 1): E: Failed getting release file; "
        "check the mirror http://mirror.invalid/debian (--mirror URL or $VSA_APT_MIRROR) and the network; "
        f"full output in {log}"
    )
    assert "E: Failed getting release file" in log.read_text()
    assert [path.name for path in (tmp_path / "appliance").iterdir() if path.name.startswith(".build-")] == []


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args], capture_output=True, text=True, env=env, cwd=REPO
    )


def test_the_cli_prints_one_error_line_and_exits_1(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(tmp_path / "empty"), "PYTHONPATH": str(REPO)}
    result = cli("appliance", "build", "--cache-dir", str(tmp_path / "cache"), env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: appliance build: host tools: debootstrap, wget, gpgv, ")
    assert lines[0].endswith("(scripts/install-lab-deps)")


def test_the_cli_refuses_a_mirror_that_is_no_url(tmp_path: Path) -> None:
    env = {**os.environ, "PATH": str(fake_tools(tmp_path / "bin")), "PYTHONPATH": str(REPO)}
    if os.geteuid() != 0 or not all(Path(path).is_file() for path in build.BUILD_FILES):
        pytest.skip("reaches the mirror check only as root on a host with the build's files")
    result = cli(
        "appliance", "build", "--cache-dir", str(tmp_path / "cache"), "--mirror", "deb.example", env=env
    )
    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == (
        "error: appliance build: mirror: 'deb.example' is not an http(s):// or file:/ URL; "
        "check --mirror or $VSA_APT_MIRROR\n"
    )


def test_lab_up_prints_an_appliance_fault_as_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from orchestrator.lab import commands

    fault = "appliance build: bootloader: /usr/lib/syslinux/mbr/mbr.bin is missing; apt-get install x"

    def failing_lab_up(lab_dir: Path, say=print, manager: str = "pacemaker") -> Path:
        raise ApplianceError(fault)

    monkeypatch.setattr(commands, "lab_up", failing_lab_up)
    assert commands.lab_main(["up", "--dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", f"error: {fault}\n")


def test_a_local_os_error_in_the_lab_is_not_called_a_lost_vsphere_connection() -> None:
    from orchestrator.lab.commands import _lab_fault

    line = _lab_fault("up", PermissionError(13, "Permission denied", "/run/netns"))
    assert line.startswith("lab up: [Errno 13] Permission denied: '/run/netns'")
    assert "vSphere" not in line
    assert "vSphere" in _lab_fault("failover", ConnectionRefusedError(111, "Connection refused"))
