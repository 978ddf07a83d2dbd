"""The storage-node appliance image: Debian 12 with DRBD, heartbeat, LIO and cloud-init."""
