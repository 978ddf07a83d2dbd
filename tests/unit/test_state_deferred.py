"""Planning writes nothing to the state folder: generated values are kept in
memory until the run is confirmed (issue 10, item 3)."""

from pathlib import Path

from orchestrator.state import StateDir


def files(folder: Path) -> dict[str, str]:
    return {str(path.relative_to(folder)): path.read_text() for path in folder.rglob("*") if path.is_file()}


def test_generated_values_are_written_only_once_the_run_is_confirmed(tmp_path: Path):
    folder = tmp_path / "plan.toml.state"
    state = StateDir(folder, persist=False)
    key, chap = state.host_key("node1"), state.secret("chap")
    assert not folder.exists()  # planning: in memory only
    assert state.host_key("node1") == key and state.secret("chap") == chap  # stable while planning
    state.persist_from_now()
    written = files(folder)
    assert written["secrets/chap"] == chap + "\n"
    assert written["hostkeys/node1_ssh_host_ed25519_key"] == key.private_openssh
    assert (folder / "secrets" / "chap").stat().st_mode & 0o777 == 0o600
    drbd = state.secret("drbd")  # generated after the confirmation: written at once
    assert files(folder)["secrets/drbd"] == drbd + "\n"
    assert StateDir(folder, persist=False).secret("chap") == chap  # the next run reads it back
