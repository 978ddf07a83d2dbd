"""`vsa-orchestrate status PLAN [--json]`: exit 0 healthy, 2 degraded, 1 error.

Read-only: one vSphere snapshot (no task, no change), one SSH command per
node that only reads, and nothing written locally (no run log, no state
folder, no generated key).
"""

import argparse
import logging
from pathlib import Path
from typing import NoReturn

from orchestrator.engine import EXIT_ERROR, EXIT_OK, EXIT_PENDING, RUN_ERRORS, one_line
from orchestrator.guest.render import lun_serial, naa_from_serial
from orchestrator.output import error_line, make_console, warn_about_plan
from orchestrator.plan import Plan, PlanError, load_plan
from orchestrator.stages import deployed_host_key
from orchestrator.stages.vms import facts as vms_facts
from orchestrator.state import StateDir
from orchestrator.status import health, nodes, render, vsphere_view
from orchestrator.status.model import Expected, NodeView, SiteStatus, WitnessView
from orchestrator.vsphere.inventory import take_snapshot
from orchestrator.vsphere.session import connect

log = logging.getLogger(__name__)

EXIT_DEGRADED = EXIT_PENDING  # 2


def expected_of(plan: Plan) -> Expected:
    serial = lun_serial(plan)
    return Expected(
        iqn=plan.iqn,
        vip=str(plan.network.vip),
        datastore=plan.datastore.name,
        target_kind=plan.target.kind,
        serial=serial,
        naa=naa_from_serial(serial),
        manager=plan.ha.manager,
        two_node=plan.ha.manager == "pacemaker" and plan.ha.two_node,
        witness=plan.witness.node if plan.witness else None,
    )


def observe(plan: Plan) -> SiteStatus:
    """vSphere first (an error there is exit 1), then the nodes (unreachable is a finding)."""
    session = connect(plan, plan.resolve_password())
    try:
        inventory = take_snapshot(
            session, plan.vsphere.datacenter, vms_facts.vm_folder(plan, session.esxi), []
        )
        api_type = session.content.about.apiType
    finally:
        session.close()
    expected = expected_of(plan)
    vms = vsphere_view.storage_vms_by_node(plan, inventory)
    state = StateDir(plan.state_dir, persist=False)
    views, keys = [], {}
    for node in plan.storage_nodes:
        vm = vms.get(node.node)
        views.append(
            NodeView(
                node=node.node,
                vm=plan.vm_name(node.node),
                esxi=node.esxi,
                address=str(node.iscsi_ip),
                vm_found=vm is not None,
                power=vm.power if vm else None,
                vm_host=vsphere_view.host_name(inventory, vm.host_id) if vm else None,
            )
        )
        keys[node.node] = nodes.pinned_key(state, node.node, deployed_host_key(vm))
    nodes.observe_nodes(plan, views, keys)
    witness = None
    if plan.witness is not None:
        member, vm = plan.witness, vms.get(plan.witness.node)
        witness = WitnessView(
            node=member.node,
            vm=plan.vm_name(member.node),
            esxi=member.esxi,
            address=str(member.iscsi_ip),
            vm_found=vm is not None,
            power=vm.power if vm else None,
        )
        nodes.observe_witness(plan, witness, nodes.pinned_key(state, member.node, deployed_host_key(vm)))
    hosts, datastore = vsphere_view.observe_hosts(plan, inventory, expected.naa)
    cluster = vsphere_view.observe_cluster(plan, inventory, api_type)
    ha_wanted = bool(plan.cluster and plan.cluster.ha)
    return SiteStatus(
        plan=plan.name,
        expected=expected,
        nodes=views,
        active_node=health.active_node(views),
        hosts=hosts,
        datastore=datastore,
        cluster=cluster,
        problems=health.findings(views, hosts, datastore, cluster, expected, ha_wanted)
        + health.witness_findings(witness),
        witness=witness,
    )


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A usage error is exit 1: argparse's 2 would read as "degraded" to a script."""
        self.print_usage()
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vsa-orchestrate status",
        description="Show the site's health, read-only: storage VMs, DRBD, the cluster manager, the target, "
        "every host's iSCSI paths and datastore, the cluster's HA. Exit 0 healthy, 2 degraded, 1 error.",
    )
    parser.add_argument("plan", type=Path, help="the plan file (plan.toml)")
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    return parser


def status_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    console = make_console()
    errors = make_console(stderr=True)
    try:
        plan = load_plan(args.plan)
    except PlanError as err:
        if args.json:
            print(render.error_json(None, "; ".join(map(str, err.issues)), EXIT_ERROR))
        for issue in err.issues:
            errors.print(error_line(issue))
        return EXIT_ERROR
    warn_about_plan(errors, plan)
    try:
        status = observe(plan)
    except RUN_ERRORS as err:
        message = one_line(err)
        if args.json:
            print(render.error_json(plan.name, message, EXIT_ERROR))
        else:
            errors.print(error_line(message))
        return EXIT_ERROR
    code = EXIT_OK if status.healthy else EXIT_DEGRADED
    if args.json:
        print(render.as_json(status, code))
    else:
        render.render_text(console, status)
    return code
