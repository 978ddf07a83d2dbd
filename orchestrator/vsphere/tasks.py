"""Run vSphere tasks: start (with bounded retry of transient faults), wait with
progress, log each one, and turn a failed task into one clear line."""

import logging
import time
from collections.abc import Callable
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.progress import Reporter
from orchestrator.vsphere.session import VSphereError, fault_msg, transient_retry

log = logging.getLogger(__name__)

TASK_TIMEOUT_S = 3600
POLL_START_S = 0.05
POLL_MAX_S = 1.0


class TaskFailed(VSphereError):
    """A task that ended in error; `fault` is the vSphere fault it carried."""

    def __init__(self, message: str, fault: Any) -> None:
        super().__init__(message)
        self.fault = fault


def run_task(reporter: Reporter, description: str, start: Callable[[], Any]) -> Any:
    """Start a task and wait for it; returns task.info.result."""
    began = time.monotonic()
    task = transient_retry(start)()
    log.info("task %s started: %s", task._moId, description)
    with reporter.task(description) as advance:
        delay = POLL_START_S
        while True:
            info = task.info
            if info.state == vim.TaskInfo.State.success:
                break
            if info.state == vim.TaskInfo.State.error:
                message = _fault_text(info.error)
                log.error("task %s failed: %s: %s", task._moId, description, message)
                raise TaskFailed(f"{description} failed: {message}", info.error)
            advance(info.progress)
            if time.monotonic() - began > TASK_TIMEOUT_S:
                raise VSphereError(
                    f"{description}: still running after {TASK_TIMEOUT_S} s; check the task in vSphere"
                )
            time.sleep(delay)
            delay = min(delay * 2, POLL_MAX_S)
    log.info("task %s done in %.2f s: %s", task._moId, time.monotonic() - began, description)
    return info.result


def _fault_text(fault: Any) -> str:
    if isinstance(fault, vmodl.MethodFault):
        return fault_msg(fault) or type(fault).__name__.rsplit(".", 1)[-1]
    return str(fault)
