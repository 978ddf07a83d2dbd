"""A writer through the VIP that records every acknowledged block, for failover tests and benchmarks.

Each write is one qemu-io run (its own iSCSI login) from the lab side; only a write
that qemu-io reports done counts as acknowledged. After the failover, every block
is read back with the pattern of its last acknowledged write: one that does not match
is lost.

    with AckedWriter(plan, round_no) as writer:
        writer.wait_more(3, 60)
        ...  # the active node loses power; wait until the LUN is served again
        writer.wait_more(2, 60)  # the writer gets through again
    lost = writer.lost()
"""

import threading

from orchestrator.plan import Plan
from tests.lab.nodes import qemu_io, wait_for

MIB = 2**20
BLOCK = 64 * 1024
START = 1024 * MIB  # clear of the LUN's first blocks (partition table, VMFS header)
REGION = 64 * MIB  # each round writes its own region, wrapping around
REGIONS = 8


class AckedWriter:
    def __init__(self, plan: Plan, round_no: int):
        self.plan = plan
        self.round_no = round_no
        self.base = START + (round_no % REGIONS) * REGION
        self.count = 0  # writes acknowledged
        self.latest: dict[int, int] = {}  # offset -> pattern of its last acknowledged write
        self._unacknowledged: tuple[int, int] | None = None  # a last write that may or may not have landed
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, name=f"acked-writer-{round_no}", daemon=True)

    def __enter__(self) -> "AckedWriter":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _write(self) -> None:
        """Through the region block by block, wrapping around; a failed write is retried as it was."""
        index = 0
        while not self._stop.is_set():
            pattern = 1 + (index + self.round_no) % 250
            offset = self.base + (index * BLOCK) % REGION
            self._unacknowledged = (offset, pattern)
            if "wrote 65536" in qemu_io(self.plan, f"write -P {pattern} {offset} {BLOCK}").stdout:
                self._unacknowledged = None
                self.latest[offset] = pattern
                self.count += 1
                index += 1

    def wait_more(self, count: int, timeout: float) -> None:
        """Until count more writes than now are acknowledged."""
        target = self.count + count
        wait_for(lambda: self.count >= target, timeout)

    def lost(self) -> int:
        """Blocks whose last acknowledged write does not read back (call after stopping)."""
        return sum(not self._reads_back(offset, pattern) for offset, pattern in self.latest.items())

    def _reads_back(self, offset: int, pattern: int) -> bool:
        patterns = [pattern]
        if self._unacknowledged and self._unacknowledged[0] == offset:
            patterns.append(self._unacknowledged[1])  # the unacknowledged write may have landed
        return any(
            "read 65536/65536"
            in qemu_io(self.plan, f"read -P {candidate} {offset} {BLOCK}", read_only=True).stdout
            for candidate in patterns
        )


def lun_readable(plan: Plan) -> bool:
    return "read 4096" in qemu_io(plan, "read 0 4k", read_only=True).stdout
