"""Import a storage VM from the appliance OVA: OvfManager.CreateImportSpec ->
ResourcePool.ImportVApp (host, VM folder, the host's local datastore, the
planned name) -> the HttpNfcLease: every disk uploaded, then Complete.

The VM is marked ours from birth (plan and node) and also
`vsa-orchestrate.incomplete`, which only the vms stage's reconfigure after
the import removes: a VM still carrying it is never mistaken for a finished
node (the next run replaces it). Any failure, Ctrl-C included, aborts the
lease, and vSphere removes the VM it was importing.
"""

import functools
import logging
import time
from typing import Any

from pyVmomi import vim, vmodl

from orchestrator.plan import Plan
from orchestrator.progress import Reporter
from orchestrator.vsphere import nfc_lease
from orchestrator.vsphere.ova_package import OvaPackage
from orchestrator.vsphere.session import Session, VSphereError, fault_msg, required, transient_retry
from orchestrator.vsphere.vm_facts import MARKER_INCOMPLETE, MARKER_NODE, MARKER_PLAN

log = logging.getLogger(__name__)

# plan provisioning -> OvfCreateImportSpecParams.diskProvisioning
PROVISIONING = {"thin": "thin", "thick-lazy": "thick", "thick-eager": "eagerZeroedThick"}


def import_vm(
    session: Session,
    plan: Plan,
    package: OvaPackage,
    node: str,
    placement: dict[str, Any],
    folder: Any,
    reporter: Reporter,
    resource: str,
) -> Any:
    """Import the OVA as VM `plan.vm_name(node)`, powered off; returns the VM."""
    stub = session.stub
    name = plan.vm_name(node)
    host = vim.HostSystem(placement["host"], stub)
    pool = vim.ResourcePool(placement["pool"], stub)
    datastore = vim.Datastore(placement["datastore"], stub)
    params = vim.OvfManager.CreateImportSpecParams(
        entityName=name,
        diskProvisioning=PROVISIONING[plan.storage_vm.provisioning],
        hostSystem=host,
    )
    try:
        result = transient_retry(required(session.content.ovfManager, "ovfManager").CreateImportSpec)(
            package.descriptor, pool, datastore, params
        )
    except vmodl.MethodFault as fault:
        raise VSphereError(f"{resource}: vSphere cannot read {package.path}: {_text(fault)}") from None
    if result.error:
        raise VSphereError(
            f"{resource}: vSphere cannot import {package.path}: "
            + "; ".join(_text(error) for error in result.error)
        )
    spec = result.importSpec
    if not isinstance(spec, vim.vm.VmImportSpec):  # an OVF of one VM
        raise VSphereError(f"{resource}: {package.path} does not describe exactly one VM; rebuild the OVA")
    spec.configSpec.extraConfig = [
        *(spec.configSpec.extraConfig or []),
        vim.option.OptionValue(key=MARKER_PLAN, value=plan.name),
        vim.option.OptionValue(key=MARKER_NODE, value=node),
        vim.option.OptionValue(key=MARKER_INCOMPLETE, value="import"),
    ]
    try:
        lease = pool.ImportVApp(spec, folder, host)
    except vmodl.MethodFault as fault:
        raise VSphereError(f"{resource}: ImportVApp on {host._moId} failed: {_text(fault)}") from None
    log.info("%s: import lease %s", resource, lease._moId)
    try:
        info = nfc_lease.wait_ready(lease, resource)
        uploads = _uploads(session, package, result.fileItem or [], info, resource)
        _send_all(session, lease, uploads, reporter, resource, package)
        lease.HttpNfcLeaseComplete()
    except KeyboardInterrupt:
        nfc_lease.abort(lease, resource)
        raise VSphereError(
            f"{resource}: import interrupted; the lease was aborted and vSphere removes the half-made "
            "VM; rerun to import again"
        ) from None
    except BaseException:
        nfc_lease.abort(lease, resource)
        raise
    return vim.VirtualMachine(info.entity._moId, stub)


def _uploads(
    session: Session, package: OvaPackage, items: list[Any], info: Any, resource: str
) -> list[nfc_lease.Upload]:
    """Pair each file the import wants (fileItem) with its device URL and OVA member."""
    urls = {url.importKey: url for url in info.deviceUrl or []}
    uploads = []
    for item in items:
        url = urls.get(item.deviceId)
        if url is None:
            raise VSphereError(f"{resource}: the import lease offers no device URL for {item.path}")
        member = package.member(item.path)
        digest = package.manifest.get(item.path)
        if digest is None:
            raise VSphereError(
                f"{resource}: the import wants {item.path} from {package.path}, which its manifest does "
                "not list; rebuild the OVA"
            )
        uploads.append(
            nfc_lease.Upload(
                url=nfc_lease.device_url(url.url, session.server),
                name=item.path,
                size=member.size,
                chunks=functools.partial(package.read, item.path),
                algorithm=digest.algorithm,
                hexdigest=digest.hexdigest,
                thumbprint=url.sslThumbprint or None,
            )
        )
    if not uploads:
        raise VSphereError(f"{resource}: vSphere asked for no disk of {package.path}; nothing to import")
    return uploads


def _send_all(
    session: Session,
    lease: Any,
    uploads: list[nfc_lease.Upload],
    reporter: Reporter,
    resource: str,
    package: OvaPackage,
) -> None:
    total = sum(upload.size for upload in uploads)
    keepalive = nfc_lease.KeepAlive(lease, total)
    began = time.monotonic()
    with reporter.transfer(f"import {resource} from {package.path.name}", total) as advance:

        def on_bytes(sent: int) -> None:
            advance(sent)
            keepalive.add(sent)

        for upload in uploads:
            nfc_lease.send(session, upload, on_bytes, resource)
            keepalive.report()
    seconds = time.monotonic() - began
    log.info(
        "%s: imported %s: %d bytes in %.2f s (%.1f MiB/s)",
        resource,
        package.path,
        total,
        seconds,
        total / 2**20 / max(seconds, 1e-6),
    )


def _text(fault: Any) -> str:
    if isinstance(fault, vmodl.MethodFault):
        return fault_msg(fault) or type(fault).__name__.rsplit(".", 1)[-1]
    return getattr(fault, "localizedMessage", None) or str(fault)
