"""The tests' lab is never the user's (README: both commands in either order)."""

from pathlib import Path

from orchestrator.lab import commands, netns

USER_LAB_FOLDER = Path.home() / ".cache" / "vsa-orchestrate" / "lab"


def test_tests_use_their_own_namespace_and_lab_folder() -> None:
    assert netns.NAMESPACE != "vsa-lab"
    assert commands.DEFAULT_DIR != USER_LAB_FOLDER
