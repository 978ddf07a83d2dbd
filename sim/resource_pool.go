package main

import (
	"fmt"
	"net/url"
	"path/filepath"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// resourcePoolProxy implements ImportVApp (see dispatch.go for proxies).
// vcsim 0.24.2 ignores the host, puts the VM anywhere, creates no disk
// files and hands out a lease that discards uploads. Ours creates the VM
// powered off on the given host, in the given folder, with its files on
// the datastore of the spec (which must be mounted on that host), and a
// lease (http_nfc_lease.go) with one device URL per disk.
type resourcePoolProxy struct {
	Self   types.ManagedObjectReference
	target types.ManagedObjectReference
}

func newResourcePoolProxy(target types.ManagedObjectReference) *resourcePoolProxy {
	return &resourcePoolProxy{
		Self:   types.ManagedObjectReference{Type: "VsaResourcePool", Value: target.Value},
		target: target,
	}
}

func (p *resourcePoolProxy) Reference() types.ManagedObjectReference { return p.Self }

func (p *resourcePoolProxy) ImportVApp(ctx *simulator.Context, req *types.ImportVApp) soap.HasFault {
	body := &methods.ImportVAppBody{}
	lease, fault := p.importVApp(ctx, req)
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	body.Res = &types.ImportVAppResponse{Returnval: lease}
	return body
}

func (p *resourcePoolProxy) importVApp(ctx *simulator.Context, req *types.ImportVApp) (types.ManagedObjectReference, types.BaseMethodFault) {
	var none types.ManagedObjectReference
	spec, ok := req.Spec.(*types.VirtualMachineImportSpec)
	if !ok {
		return none, &types.InvalidArgument{InvalidProperty: "spec"}
	}
	cr := poolOwner(p.target)
	if cr == nil {
		return none, &types.ManagedObjectNotFound{Obj: p.target}
	}
	hostRef := req.Host
	if hostRef == nil && len(cr.Host) > 0 {
		hostRef = &cr.Host[0]
	}
	if hostRef == nil || simulator.FindReference(cr.Host, *hostRef) == nil {
		return none, &types.InvalidArgument{InvalidProperty: "host"}
	}
	host, ok := simulator.Map.Get(*hostRef).(*simulator.HostSystem)
	if !ok {
		return none, &types.ManagedObjectNotFound{Obj: *hostRef}
	}
	folderRef := req.Folder
	if folderRef == nil {
		dc, ok := simulator.Map.Any("Datacenter").(*simulator.Datacenter)
		if !ok {
			return none, &types.InvalidArgument{InvalidProperty: "folder"}
		}
		folderRef = &dc.VmFolder
	}
	folder, ok := simulator.Map.Get(*folderRef).(vmCreator)
	if !ok {
		return none, &types.ManagedObjectNotFound{Obj: *folderRef}
	}
	config := spec.ConfigSpec
	if config.Name == "" || config.Files == nil {
		return none, &types.InvalidArgument{InvalidProperty: "spec.configSpec"}
	}
	if e := findChildByName(*folderRef, config.Name); e != nil {
		return none, &types.DuplicateName{Name: config.Name, Object: e.Reference()}
	}
	var vmx object.DatastorePath
	if !vmx.FromString(config.Files.VmPathName) {
		return none, &types.InvalidArgument{InvalidProperty: "spec.configSpec.files.vmPathName"}
	}
	ds, ok := simulator.Map.FindByName(vmx.Datastore, host.Datastore).(*simulator.Datastore)
	if !ok {
		return none, &types.InvalidDatastorePath{DatastorePath: config.Files.VmPathName}
	}
	config.Files = &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name)}

	res := folder.CreateVMTask(ctx, &types.CreateVM_Task{This: *folderRef, Config: config, Pool: p.target, Host: hostRef})
	task := simulator.Map.Get(res.(*methods.CreateVM_TaskBody).Res.Returnval).(*simulator.Task)
	if task.Info.Error != nil {
		return none, task.Info.Error.Fault
	}
	vm := wrapVM(task.Info.Result.(types.ManagedObjectReference))

	files := map[string]*nfcFile{}
	var urls []types.HttpNfcLeaseDeviceUrl
	var capacityKB int64
	n := 0
	leaseID := nextLeaseID()
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		desc, ok := vm.localPath(b.FileName)
		if !ok {
			continue
		}
		name := filepath.Base(desc)
		files[name] = &nfcFile{datastorePath: b.FileName, flat: flatName(desc)}
		capacityKB += disk.CapacityInKB
		urls = append(urls, types.HttpNfcLeaseDeviceUrl{
			Key:       fmt.Sprintf("/%s/disk:%d", vm.Self.Value, n),
			ImportKey: fmt.Sprintf("/%s/disk:%d", vm.Name, n),
			Url:       (&url.URL{Scheme: "https", Host: "*", Path: nfcPath + leaseID + "/" + name}).String(),
			Disk:      types.NewBool(true),
			TargetId:  name,
		})
		n++
	}
	return newImportLease(ctx, leaseID, vm, files, urls, capacityKB).Self, nil
}
