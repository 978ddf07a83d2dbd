"""SSH to a storage node: key login, the node's host key pinned (the one the
orchestrator generated and gave it through cloud-init), every command logged."""

import base64
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import paramiko

from orchestrator.state import HostKey

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 15
COMMAND_TIMEOUT_S = 600


class GuestError(Exception):
    """A storage-node fault explained in one line: which node, and what to do."""


class NotReady(Exception):
    """The node does not answer on SSH (yet): worth retrying while it boots."""


class Unreachable(GuestError):
    """The node did not answer on SSH within the wait (off, booting, or cut off)."""


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str


class NodeShell:
    def __init__(
        self, node: str, address: str, user: str, key_file: Path, host_key: HostKey, wait_s: float = 0
    ):
        """Connect; while the node is still booting (refused, unreachable), retry up to wait_s."""
        self.node = node
        self.address = address
        self._client = paramiko.SSHClient()
        key_type, key_data = host_key.public_openssh.split()[:2]
        pinned = paramiko.PKey.from_type_string(key_type, base64.b64decode(key_data))
        self._client.get_host_keys().add(address, key_type, pinned)
        self._client.set_missing_host_key_policy(paramiko.RejectPolicy())
        deadline = time.monotonic() + wait_s
        while True:
            try:
                self._connect(address, user, key_file)
                return
            except NotReady as err:
                if time.monotonic() > deadline:
                    raise Unreachable(str(err)) from None
                time.sleep(2)

    def _connect(self, address: str, user: str, key_file: Path) -> None:
        node = self.node
        try:
            self._client.connect(
                address,
                username=user,
                key_filename=str(key_file),
                timeout=CONNECT_TIMEOUT_S,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException:
            raise GuestError(
                f"{node} ({address}) presented an SSH host key other than the one pinned in the state "
                "folder; refusing to connect. If the node was rebuilt on purpose, remove its key from "
                "<plan>.state/hostkeys and rerun"
            ) from None
        except paramiko.AuthenticationException:
            raise GuestError(f"{node} ({address}): SSH login as {user} with {key_file} was refused") from None
        except (OSError, paramiko.SSHException) as err:
            raise NotReady(
                f"{node} ({address}): cannot open SSH ({err}); check that the storage VM is powered on "
                "and reachable on the iSCSI network"
            ) from None

    def run(self, command: str, stdin: str | None = None, check: bool = True) -> Result:
        log.info("%s: %s", self.node, command)
        try:
            channel_in, channel_out, channel_err = self._client.exec_command(
                command, timeout=COMMAND_TIMEOUT_S
            )
            if stdin is not None:
                channel_in.write(stdin)
                channel_in.channel.shutdown_write()
            out = channel_out.read().decode()
            err = channel_err.read().decode()
            code = channel_out.channel.recv_exit_status()
        except (TimeoutError, OSError, paramiko.SSHException) as fault:
            raise GuestError(f"{self.node}: lost the SSH session during `{command}`: {fault}") from None
        if check and code != 0:
            raise GuestError(f"{self.node}: `{command}` failed ({code}): {err.strip() or out.strip()}")
        return Result(code, out, err)

    def write_file(self, path: str, content: str, mode: int) -> None:
        """Atomically replace `path` (content goes over stdin, never on a command line)."""
        octal = format(mode, "o")
        self.run(
            f"mkdir -p $(dirname {path}) && umask 077 && cat > {path}.vsa-new "
            f"&& chmod {octal} {path}.vsa-new && mv {path}.vsa-new {path}",
            stdin=content,
        )

    def close(self) -> None:
        self._client.close()
