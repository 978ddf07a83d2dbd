"""An HttpNfcLease of an import: wait until ready, upload each disk over HTTPS
(streamed, with the session's TLS trust and cookie), keep the lease alive,
complete it, or abort it on any failure.

Device URLs carry `*` for "the server you are talking to"; it is replaced by
the server the session connected to, which is then verified exactly as the
SOAP session is (pinned thumbprint, CA file or system CAs) and receives the
session's cookie. A URL naming another host (vCenter handing out an ESXi
host's address) is verified with the SHA-1 thumbprint the lease gives for it
and gets no cookie (the lease's URL is its ticket).
"""

import hashlib
import logging
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3
from pyVmomi import vim, vmodl

from orchestrator.vsphere.server_http import PinnedAdapter, server_http
from orchestrator.vsphere.session import CONNECT_TIMEOUT_S, Session, VSphereError

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 300
KEEPALIVE_S = 5.0
READ_TIMEOUT_S = 600
STREAM_VMDK = "application/x-vnd.vmware-streamVmdk"
State = vim.HttpNfcLease.State


@dataclass(frozen=True)
class Upload:
    """One disk: where it goes and what to send."""

    url: str  # the lease's device URL, `*` replaced
    name: str  # the OVA member
    size: int
    chunks: Callable[[], Iterator[bytes]]
    algorithm: str  # the manifest's digest of the member, checked as it is sent
    hexdigest: str
    thumbprint: str | None = None  # the lease's SHA-1 thumbprint for a URL naming another host


def wait_ready(lease: Any, resource: str, timeout_s: float = READY_TIMEOUT_S) -> Any:
    """Wait until the lease is ready; returns lease.info."""
    deadline = time.monotonic() + timeout_s
    delay = 0.05
    while True:
        state = lease.state
        if state == State.ready:
            return lease.info
        if state == State.error:
            raise VSphereError(f"{resource}: vSphere refused the import: {_fault_text(lease.error)}")
        if state == State.done:
            raise VSphereError(f"{resource}: the import lease ended before any disk was sent; rerun")
        if time.monotonic() > deadline:
            raise VSphereError(
                f"{resource}: the import lease was not ready within {timeout_s:.0f} s; check the host"
            )
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def device_url(url: str, server: str) -> str:
    """The lease's URL with the `*` host placeholder replaced by `server` (host:port)."""
    parts = urlsplit(url)
    if parts.hostname != "*":
        return url
    return urlunsplit((parts.scheme, server, parts.path, parts.query, parts.fragment))


class KeepAlive:
    """HttpNfcLeaseProgress at least every KEEPALIVE_S while bytes flow."""

    def __init__(self, lease: Any, total: int, interval_s: float = KEEPALIVE_S):
        self.lease, self.total, self.interval_s = lease, max(total, 1), interval_s
        self.sent = 0
        self.last = time.monotonic()

    def add(self, sent: int) -> None:
        self.sent += sent
        if time.monotonic() - self.last >= self.interval_s:
            self.report()

    def report(self) -> None:
        self.lease.HttpNfcLeaseProgress(min(99, self.sent * 100 // self.total))
        self.last = time.monotonic()


class _Body:
    """The request body: a file-like reader with a length (so requests sends
    Content-Length, not chunks), hashing and counting what it hands out."""

    def __init__(self, upload: Upload, on_bytes: Callable[[int], None]):
        self.upload, self.on_bytes = upload, on_bytes
        self.hasher = hashlib.new(upload.algorithm)
        self.chunks = upload.chunks()
        self.chunk = memoryview(b"")
        self.sent = 0

    def __len__(self) -> int:
        return self.upload.size

    def read(self, size: int = -1) -> bytes:
        if not self.chunk:
            self.chunk = memoryview(next(self.chunks, b""))
        if size < 0:
            parts = [bytes(self.chunk), *self.chunks]
            data = b"".join(parts)
            self.chunk = memoryview(b"")
        else:
            # The rest of the current chunk, even when more than asked for: http.client
            # sends whatever a read returns, and 1 MiB sends beat its 16 KiB blocks.
            data = bytes(self.chunk)
            self.chunk = memoryview(b"")
        if data:
            self.hasher.update(data)
            self.sent += len(data)
            self.on_bytes(len(data))
        return data


def http_client(session: Session, upload: Upload) -> tuple[requests.Session, bool | str, dict[str, str]]:
    """A requests session for one upload, its `verify` value and headers."""
    headers = {"Content-Type": STREAM_VMDK, "Overwrite": "t"}
    if urlsplit(upload.url).netloc == session.server:
        ours, trusted, auth = server_http(session)
        return ours, trusted, {**headers, **auth}
    http = requests.Session()
    verify: bool | str
    if upload.thumbprint:
        http.mount("https://", PinnedAdapter(upload.thumbprint))
        verify = False
    else:
        trust = session.trust
        verify = str(trust.ca_file) if trust.ca_file else not trust.insecure
    return http, verify, headers


def send(session: Session, upload: Upload, on_bytes: Callable[[int], None], resource: str) -> None:
    """Stream one disk to its device URL; the bytes sent must match the manifest."""
    http, verify, headers = http_client(session, upload)
    body = _Body(upload, on_bytes)
    host = urlsplit(upload.url).netloc
    began = time.monotonic()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", urllib3.exceptions.InsecureRequestWarning)
            response = http.post(
                upload.url,
                data=body,
                headers=headers,
                verify=verify,
                timeout=(CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
            )
    except requests.exceptions.SSLError as err:
        raise VSphereError(
            f"{resource}: uploading {upload.name} to {host}: TLS check failed ({_reason(err)}); "
            "check [vsphere].thumbprint / ca_file"
        ) from None
    except requests.RequestException as err:
        raise VSphereError(
            f"{resource}: uploading {upload.name} to {host} failed: {_reason(err)}; "
            "rerun when it is reachable"
        ) from None
    finally:
        http.close()
    if response.status_code not in (200, 201, 204):
        text = (response.text or "").strip().splitlines()
        raise VSphereError(
            f"{resource}: {host} refused the upload of {upload.name}: HTTP {response.status_code}"
            f"{': ' + text[0][:200] if text else ''}"
        )
    if body.sent != upload.size or body.hasher.hexdigest() != upload.hexdigest:
        raise VSphereError(
            f"{resource}: {upload.name} changed while it was sent (its digest no longer matches the "
            "manifest); the import was aborted; rerun"
        )
    seconds = time.monotonic() - began
    log.info(
        "%s: uploaded %s (%d bytes) in %.2f s, %.1f MiB/s",
        resource,
        upload.name,
        upload.size,
        seconds,
        upload.size / 2**20 / max(seconds, 1e-6),
    )


def abort(lease: Any, resource: str) -> None:
    """Abort the lease (vSphere then removes the half-made VM); never raises."""
    try:
        lease.HttpNfcLeaseAbort()
        log.warning("%s: import lease aborted", resource)
    except (vmodl.MethodFault, OSError, requests.RequestException) as err:
        log.warning("%s: aborting the import lease failed: %s", resource, type(err).__name__)


def _fault_text(fault: Any) -> str:
    if fault is None:
        return "no reason given"
    return getattr(fault, "localizedMessage", None) or getattr(fault, "msg", None) or type(fault).__name__


def _reason(err: BaseException) -> str:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]
