"""The state folder beside the plan (`<plan>.state/`, 0700, files 0600).

It holds what the orchestrator generates and must not rotate: the storage
VMs' SSH host keys (and, from the guest stage on, the DRBD, heartbeat and CHAP
secrets). Planning generates in memory and writes nothing: a run writes what
it generated only once the user confirmed (persist_from_now), and a dry run
never does.
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

# 12 bytes -> 16 characters: within the CHAP secret length ESXi accepts (12-16 recommended).
SECRET_BYTES = 12


@dataclass(frozen=True)
class HostKey:
    private_openssh: str
    public_openssh: str


class StateDir:
    def __init__(self, path: Path, persist: bool):
        self.path = path
        self.persist = persist
        self._generated: dict[str, HostKey] = {}
        self._secrets: dict[str, str] = {}

    def host_key(self, node: str, deployed: HostKey | None = None) -> HostKey:
        """The node's ed25519 SSH host key: the stored one, else the one already
        deployed on the node, else a new one (written only when persisting)."""
        private_path = self.path / "hostkeys" / f"{node}_ssh_host_ed25519_key"
        public_path = private_path.with_name(private_path.name + ".pub")
        if private_path.exists() and public_path.exists():
            return HostKey(private_path.read_text(), public_path.read_text().strip())
        if node not in self._generated:
            self._generated[node] = deployed or new_ed25519_key(f"root@{node}")
        key = self._generated[node]
        if self.persist:
            self._write(private_path, key.private_openssh)
            self._write(public_path, key.public_openssh + "\n")
        return key

    def persist_from_now(self) -> None:
        """Write what planning generated in memory, and from now on every new value
        as it is generated (the run was confirmed)."""
        self.persist = True
        for node in self._generated:
            self.host_key(node)
        for name in self._secrets:
            self.secret(name)

    def has_secret(self, name: str) -> bool:
        return (self.path / "secrets" / name).exists()

    def secret(self, name: str, deployed: str | None = None) -> str:
        """A generated secret (e.g. "chap"): the stored one, else the one already
        deployed on the nodes, else a new one (written only when persisting).
        Never rotated by a rerun, nor by a lost state folder."""
        path = self.path / "secrets" / name
        if path.exists():
            return path.read_text().strip()
        if name not in self._secrets:
            self._secrets[name] = deployed or secrets.token_urlsafe(SECRET_BYTES)
        if self.persist:
            self._write(path, self._secrets[name] + "\n")
        return self._secrets[name]

    def _write(self, path: Path, text: str) -> None:
        for folder in (self.path, path.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chmod(folder, 0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)


def new_ed25519_key(comment: str) -> HostKey:
    """A fresh ed25519 key pair in OpenSSH formats."""
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return HostKey(private, f"{public.decode()} {comment}")
