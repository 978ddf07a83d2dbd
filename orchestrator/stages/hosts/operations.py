"""What the `hosts` stage does: add a host to vCenter with its thumbprint pinned."""

from dataclasses import dataclass

from orchestrator.operations import Operation


@dataclass(frozen=True)
class AddHost(Operation):
    """AddHost_Task into the cluster (cluster_id), else AddStandaloneHost_Task into
    the host folder. The password is the plan's hosts[].add.password, read by
    the handler (never held here)."""

    side = "vsphere"
    host: str
    user: str
    thumbprint: str
    host_folder: str
    cluster_id: str | None

    def describe(self) -> str:
        into = (
            f"ClusterComputeResource({self.cluster_id}).AddHost_Task"
            if self.cluster_id
            else (f"Folder({self.host_folder}).AddStandaloneHost_Task")
        )
        return f"{into}({self.host}, user {self.user}, sslThumbprint {self.thumbprint})"
