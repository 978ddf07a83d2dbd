"""The `guest` stage: DRBD, heartbeat and the iSCSI target inside the storage VMs."""
