package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/types"
)

var (
	labHosts      = []string{"esx1.lab.local", "esx2.lab.local", "esx3.lab.local"}
	labPortgroups = []string{"VSA-iSCSI", "VSA-Replication"}
)

const (
	templateName     = "vsa-appliance"
	templateDiskSize = 2 << 30 // bytes
)

type topology struct {
	datacenter string
	hosts      []hostInfo
	portgroups []string
	template   string
	shared     string
	spare      []spareHostInfo
}

type labHost struct {
	host *object.HostSystem
	pool *object.ResourcePool
	ds   string
}

// buildTopology turns vcsim's empty DC0 into the lab: three standalone hosts,
// each with its own local datastore under DIR/datastores and the VSA
// portgroups, the vsa-appliance template, and optional filler VMs.
func buildTopology(ctx context.Context, c *vim25.Client, cfg config) (*topology, error) {
	dcObj, ok := simulator.Map.Any("Datacenter").(*simulator.Datacenter)
	if !ok {
		return nil, fmt.Errorf("no datacenter in model")
	}
	dc := object.NewDatacenter(c, dcObj.Self)
	folders, err := dc.Folders(ctx)
	if err != nil {
		return nil, err
	}

	// Datastore contents (and the VMFS LUN model) do not survive a restart; stale VM directories
	// would make vcsim rename new ones ("name (0)").
	dsRoot := filepath.Join(cfg.stateDir, "datastores")
	if err := os.RemoveAll(dsRoot); err != nil {
		return nil, err
	}

	topo := &topology{datacenter: dcObj.Name, portgroups: labPortgroups, template: templateName}
	var hosts []labHost
	for i, name := range labHosts {
		h, err := addHost(ctx, folders, name, fmt.Sprintf("esx%d-local", i+1), dsRoot)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		hosts = append(hosts, h)
		s1, s2 := hostThumbprints(name)
		topo.hosts = append(topo.hosts, hostInfo{Name: name, Datastore: h.ds, Thumbprint: s1, ThumbprintSHA256: s2})
	}

	storage.dsRoot = dsRoot
	for _, h := range hosts {
		if err := installStorage(simulator.Map.Get(h.host.Reference()).(*simulator.HostSystem)); err != nil {
			return nil, fmt.Errorf("%s storage: %w", h.host.Reference().Value, err)
		}
	}
	if topo.shared, err = addSharedDatastore(ctx, hosts, dsRoot); err != nil {
		return nil, fmt.Errorf("shared datastore: %w", err)
	}
	lab.client, lab.dsRoot, lab.password = c, dsRoot, cfg.password
	if ds := simulator.Map.FindByName(topo.shared, simulator.Map.Get(hosts[0].host.Reference()).(*simulator.HostSystem).Datastore); ds != nil {
		lab.shared = ds.Reference()
	}
	for _, name := range spareHosts {
		s1, s2 := hostThumbprints(name)
		topo.spare = append(topo.spare, spareHostInfo{Name: name, Thumbprint: s1, ThumbprintSHA256: s2, User: "root", Password: cfg.password})
	}

	if err := addTemplate(ctx, folders, hosts[0]); err != nil {
		return nil, fmt.Errorf("template: %w", err)
	}
	for i := 0; i < cfg.extraVMs; i++ {
		h := hosts[i%len(hosts)]
		spec := types.VirtualMachineConfigSpec{
			Name:    fmt.Sprintf("other-vm-%04d", i+1),
			GuestId: string(types.VirtualMachineGuestOsIdentifierOtherGuest),
			Files:   &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", h.ds)},
		}
		if _, err := createVM(ctx, folders, h, spec); err != nil {
			return nil, fmt.Errorf("extra VM %d: %w", i+1, err)
		}
	}
	return topo, nil
}

func addHost(ctx context.Context, folders *object.DatacenterFolders, name, dsName, dsRoot string) (labHost, error) {
	task, err := folders.HostFolder.AddStandaloneHost(ctx, types.HostConnectSpec{HostName: name}, true, nil, nil)
	if err != nil {
		return labHost{}, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return labHost{}, err
	}
	return setupLabHost(ctx, folders.HostFolder.Client(), info.Result.(types.ManagedObjectReference), dsName, dsRoot)
}

func addTemplate(ctx context.Context, folders *object.DatacenterFolders, h labHost) error {
	var devices object.VirtualDeviceList
	scsi, err := devices.CreateSCSIController("lsilogic")
	if err != nil {
		return err
	}
	devices = append(devices, scsi)
	dsRef := simulator.Map.FindByName(h.ds, simulator.Map.Get(h.host.Reference()).(*simulator.HostSystem).Datastore).Reference()
	disk := devices.CreateDisk(scsi.(types.BaseVirtualController), dsRef, "")
	disk.CapacityInKB = templateDiskSize / 1024
	disk.CapacityInBytes = templateDiskSize
	devices = append(devices, disk)

	net := simulator.Map.FindByName("VM Network", simulator.Map.Get(h.host.Reference()).(*simulator.HostSystem).Network).Reference()
	nic, err := devices.CreateEthernetCard("vmxnet3", &types.VirtualEthernetCardNetworkBackingInfo{
		VirtualDeviceDeviceBackingInfo: types.VirtualDeviceDeviceBackingInfo{DeviceName: "VM Network"},
		Network:                        &net,
	})
	if err != nil {
		return err
	}
	devices = append(devices, nic)

	changes, err := devices.ConfigSpec(types.VirtualDeviceConfigSpecOperationAdd)
	if err != nil {
		return err
	}
	for _, ch := range changes {
		if s := ch.GetVirtualDeviceConfigSpec(); s.Device == disk {
			s.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		}
	}
	spec := types.VirtualMachineConfigSpec{
		Name:         templateName,
		GuestId:      string(types.VirtualMachineGuestOsIdentifierDebian11_64Guest),
		NumCPUs:      2,
		MemoryMB:     2048,
		Annotation:   "VSA appliance template (simulated)",
		Files:        &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", h.ds)},
		DeviceChange: changes,
	}
	vm, err := createVM(ctx, folders, h, spec)
	if err != nil {
		return err
	}
	return vm.MarkAsTemplate(ctx)
}

func createVM(ctx context.Context, folders *object.DatacenterFolders, h labHost, spec types.VirtualMachineConfigSpec) (*object.VirtualMachine, error) {
	task, err := folders.VmFolder.CreateVM(ctx, spec, h.pool, h.host)
	if err != nil {
		return nil, err
	}
	info, err := task.WaitForResult(ctx, nil)
	if err != nil {
		return nil, err
	}
	return object.NewVirtualMachine(folders.VmFolder.Client(), info.Result.(types.ManagedObjectReference)), nil
}
