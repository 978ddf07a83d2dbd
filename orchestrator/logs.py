"""The run log: every task and command, with known secrets masked."""

import logging
import os
from pathlib import Path

MASK = "********"


class Redactor(logging.Filter):
    """Replaces every registered secret in log records before they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def add(self, secret: str) -> None:
        if secret:
            self.secrets.add(secret)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        for secret in self.secrets:
            message = message.replace(secret, MASK)
        record.msg, record.args = message, None
        return True


REDACTOR = Redactor()


def open_log(path: Path) -> logging.Handler:
    """Log to `path` (created 0600; its folder 0700); close_log(handler) when done."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
    handler = logging.FileHandler(path)
    handler.addFilter(REDACTOR)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("paramiko", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return handler


def close_log(handler: logging.Handler) -> None:
    logging.getLogger().removeHandler(handler)
    handler.close()
