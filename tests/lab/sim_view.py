"""What the simulated ESXi hosts see, for the end-to-end tests; run inside the
lab namespace (the simulator listens there): `python3 -m tests.lab.sim_view PLAN ACTION [HOST]`.

Actions (each prints one JSON document):
- show: per host, the canonical names of its iSCSI LUNs and its datastores' extents;
- rescan: RescanHba on every host's software adapter first, then show;
- break-chap HOST: put a wrong CHAP secret on HOST's send target to the VIP, rescan (drift);
- calls / reset-calls: the simulator's server-side SOAP method counts (sim.json beside the plan).
"""

import json
import sys
from pathlib import Path

import requests
from pyVmomi import vim

from orchestrator.plan import Plan, load_plan
from orchestrator.stages.iscsi.facts import software_adapter
from orchestrator.vsphere.session import connect

ISCSI_PORT = 3260


def hosts(plan: Plan, session) -> dict[str, vim.HostSystem]:
    view = session.content.viewManager.CreateContainerView(session.content.rootFolder, [vim.HostSystem], True)
    try:
        return {host.name: host for host in view.view}
    finally:
        view.DestroyView()


def show(found: dict[str, vim.HostSystem]) -> dict:
    result = {}
    for name, host in sorted(found.items()):
        storage = host.configManager.storageSystem
        names = [lun.canonicalName for lun in storage.storageDeviceInfo.scsiLun or []]
        result[name] = {
            "luns": sorted(canonical for canonical in names if canonical.startswith("naa.")),
            "datastores": {
                ds.name: [extent.diskName for extent in ds.info.vmfs.extent or []]
                for ds in host.datastore
                if isinstance(ds.info, vim.host.VmfsDatastoreInfo)
            },
        }
    return result


def rescan(found: dict[str, vim.HostSystem]) -> None:
    for host in found.values():
        storage = host.configManager.storageSystem
        adapter = software_adapter(storage.storageDeviceInfo)
        if adapter is not None:
            storage.RescanHba(adapter.device)
        storage.RescanVmfs()


def break_chap(plan: Plan, host: vim.HostSystem) -> None:
    storage = host.configManager.storageSystem
    adapter = software_adapter(storage.storageDeviceInfo)
    target = vim.host.InternetScsiHba.SendTarget(address=str(plan.network.vip), port=ISCSI_PORT)
    wrong = vim.host.InternetScsiHba.AuthenticationProperties(
        chapAuthEnabled=True,
        chapAuthenticationType="chapRequired",
        chapName=plan.chap_name,
        chapSecret="not-the-secret",
        chapInherited=False,
    )
    storage.UpdateInternetScsiAuthenticationProperties(
        adapter.device, wrong, vim.host.InternetScsiHba.TargetSet(sendTargets=[target])
    )
    storage.RescanHba(adapter.device)


def main(argv: list[str]) -> int:
    plan = load_plan(Path(argv[0]))
    action = argv[1]
    if action in ("calls", "reset-calls"):
        control = json.loads(plan.path.with_name("sim.json").read_text())["control_url"]
        if action == "reset-calls":
            requests.post(f"{control}/calls/reset", timeout=10).raise_for_status()
            print("{}")
        else:
            print(json.dumps(requests.get(f"{control}/calls", timeout=10).json()))
        return 0
    session = connect(plan, plan.resolve_password())
    try:
        found = hosts(plan, session)
        if action == "rescan":
            rescan(found)
        elif action == "break-chap":
            break_chap(plan, found[argv[2]])
        print(json.dumps(show(found)))
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
