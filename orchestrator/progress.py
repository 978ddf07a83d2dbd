"""Progress for long operations: a rich bar per task on stderr (stdout stays
clean for --json), or nothing when quiet."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)


class Reporter:
    def __init__(self, console: Console | None):
        self.console = console

    @contextmanager
    def task(self, description: str) -> Iterator[Callable[[int | None], None]]:
        if self.console is None:
            yield lambda percent: None
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task(description, total=100)

            def advance(percent: int | None) -> None:
                if percent is not None:
                    progress.update(bar, completed=percent)

            yield advance
            progress.update(bar, completed=100)

    @contextmanager
    def transfer(self, description: str, total_bytes: int) -> Iterator[Callable[[int], None]]:
        """A bar in bytes with the rate; the callable adds bytes sent."""
        if self.console is None:
            yield lambda sent: None
            return
        columns = (
            SpinnerColumn(),
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            DownloadColumn(binary_units=True),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self.console, transient=False) as progress:
            bar = progress.add_task(description, total=total_bytes)
            yield lambda sent: progress.advance(bar, sent)
