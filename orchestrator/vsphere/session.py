"""One authenticated vSphere session: TLS trust, login, clear connection errors.

Trust modes (plan [vsphere]): a pinned SHA-256 thumbprint (checked on every
TLS connection, and once up front so a mismatch is refused before any login),
a CA file, the system CAs, or `insecure = true` (warned about).
"""

import hashlib
import http.client
import logging
import socket
import ssl
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from pathlib import Path
from typing import TypeVar

from pyVmomi import SoapStubAdapter, vim, vmodl
from pyVmomi.SoapAdapter import COOKIE_NAME
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from orchestrator.plan import Plan

log = logging.getLogger(__name__)

# vSphere 6.7 API: understood by every supported vCenter/ESXi and by the simulator.
API_VERSION = "vim.version.version12"
CONNECT_TIMEOUT_S = 15


class VSphereError(Exception):
    """A vSphere fault explained in one line: which server/host, and what to do."""


M = TypeVar("M")


def required(found: M | None, name: str) -> M:
    """A ServiceContent manager: pyVmomi's stubs mark each optional; vCenter and ESXi have them all."""
    if found is None:
        raise VSphereError(f"the server offers no {name}; vsa-orchestrate needs vCenter or an ESXi host")
    return found


def fault_msg(fault: vmodl.MethodFault) -> str | None:
    """The fault's optional `msg`, a vmodl.MethodFault property that pyVmomi's stubs leave out."""
    return getattr(fault, "msg", None)


_TRANSIENT = (
    ConnectionResetError,
    BrokenPipeError,
    http.client.RemoteDisconnected,
    vim.fault.TaskInProgress,
    vim.fault.ConcurrentAccess,
)


def _is_transient(error: BaseException) -> bool:
    return isinstance(error, _TRANSIENT)


transient_retry = retry(
    retry=retry_if_exception(_is_transient),
    stop=stop_after_attempt(4),
    wait=wait_exponential(multiplier=0.5, max=5),
    reraise=True,
)


def sha256_thumbprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def server_thumbprint(host: str, port: int) -> str:
    """SHA-256 of the certificate the server presents (read without trusting it)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with (
        socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        cert = tls.getpeercert(binary_form=True)
    if cert is None:
        raise ssl.SSLError(f"{host}:{port} presented no certificate")
    return sha256_thumbprint(cert)


def _ssl_context(plan: Plan) -> ssl.SSLContext:
    settings = plan.vsphere
    if settings.insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.thumbprint:
        # No CA is loaded, so ordinary verification always fails and pyvmomi
        # falls back to comparing the pinned thumbprint on every connection.
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if settings.ca_file:
        return ssl.create_default_context(cafile=str(plan.base_dir / settings.ca_file))
    return ssl.create_default_context()


@dataclass(frozen=True)
class Trust:
    """How the server's certificate is checked, for HTTP beside SOAP (disk uploads)."""

    thumbprint: str | None = None  # pinned SHA-256
    ca_file: Path | None = None
    insecure: bool = False


def _trust(plan: Plan) -> Trust:
    settings = plan.vsphere
    ca_file = plan.base_dir / settings.ca_file if settings.ca_file else None
    return Trust(thumbprint=settings.thumbprint, ca_file=ca_file, insecure=settings.insecure)


@dataclass
class Session:
    """A logged-in connection; `content` is the ServiceContent."""

    server: str
    stub: SoapStubAdapter
    content: vim.ServiceInstanceContent
    trust: Trust = field(default_factory=Trust)

    @property
    def esxi(self) -> bool:
        """Connected to a single ESXi host (no vCenter): no clone, no VM folders."""
        return self.content.about.apiType == "HostAgent"

    def cookie(self) -> str:
        """The session's cookie as a Cookie header value (authenticates HTTP transfers)."""
        jar = SimpleCookie(self.stub.cookie)
        morsel = jar.get(COOKIE_NAME)
        return f"{COOKIE_NAME}={morsel.value}" if morsel else ""

    def close(self) -> None:
        try:
            required(self.content.sessionManager, "sessionManager").Logout()
        except (vmodl.MethodFault, OSError, http.client.HTTPException):
            log.debug("logout from %s failed; the session expires on its own", self.server)


def connect(plan: Plan, password: str) -> Session:
    """Verify the server's identity, then log in; raise VSphereError with one clear line."""
    settings = plan.vsphere
    where = f"{settings.server}:{settings.port}"
    if settings.thumbprint:
        try:
            seen = server_thumbprint(settings.server, settings.port)
        except OSError as err:
            raise VSphereError(_unreachable(where, err)) from None
        if seen != settings.thumbprint:
            raise VSphereError(
                f"vSphere at {where} presents a certificate with SHA-256 thumbprint {seen}, "
                f"but the plan pins {settings.thumbprint}; refusing to log in. If the "
                "certificate was replaced on purpose, put the new thumbprint in [vsphere].thumbprint"
            )
    elif settings.insecure:
        log.warning("TLS verification of %s is off (insecure = true in the plan)", where)
    stub = SoapStubAdapter(
        host=settings.server,
        port=settings.port,
        version=API_VERSION,
        path="/sdk",
        sslContext=_ssl_context(plan),
        thumbprint=settings.thumbprint,
        httpConnectionTimeout=CONNECT_TIMEOUT_S,
    )
    try:
        content = _retrieve_content(stub)
        _login(content, settings.user, password)
    except vim.fault.InvalidLogin:
        raise VSphereError(
            f"vSphere at {where} rejected user {settings.user}: wrong user name or password "
            "(check [vsphere].user and the password source in the plan)"
        ) from None
    except ssl.SSLCertVerificationError as err:
        raise VSphereError(
            f"vSphere at {where}: certificate not trusted ({err.verify_message}); pin it with "
            "[vsphere].thumbprint or give ca_file"
        ) from None
    except (OSError, http.client.HTTPException) as err:
        raise VSphereError(_unreachable(where, err)) from None
    log.info("logged in to %s as %s", where, settings.user)
    return Session(server=where, stub=stub, content=content, trust=_trust(plan))


@transient_retry
def _retrieve_content(stub: SoapStubAdapter) -> vim.ServiceInstanceContent:
    return vim.ServiceInstance("ServiceInstance", stub).RetrieveContent()


@transient_retry
def _login(content: vim.ServiceInstanceContent, user: str, password: str) -> None:
    required(content.sessionManager, "sessionManager").Login(user, password, None)


def _unreachable(where: str, err: BaseException) -> str:
    reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
    return (
        f"cannot reach vSphere at {where}: {reason}; check [vsphere].server and port, "
        "and that the server is up"
    )
