"""Transient vSphere faults are retried, bounded; real faults are not."""

import pytest
from pyVmomi import vim
from tenacity import wait_none

from orchestrator.vsphere.session import transient_retry


def flaky(failures: list[BaseException]):
    calls = []

    @transient_retry
    def call() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "ok"

    # Same retry and stop policy, without the back-off pauses.
    return call.retry_with(wait=wait_none()), calls


def test_connection_reset_and_busy_task_are_retried():
    call, calls = flaky([ConnectionResetError(), vim.fault.TaskInProgress()])
    assert call() == "ok"
    assert len(calls) == 3


def test_retries_are_bounded():
    call, calls = flaky([ConnectionResetError()] * 10)
    with pytest.raises(ConnectionResetError):
        call()
    assert len(calls) == 4


def test_wrong_password_is_not_retried():
    call, calls = flaky([vim.fault.InvalidLogin()])
    with pytest.raises(vim.fault.InvalidLogin):
        call()
    assert len(calls) == 1
