package main

import (
	"bytes"
	"fmt"
	"log"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// CloneVMTask replaces vcsim's clone, which ignores location.host, panics
// when the datastore is not mounted on the source's host, and shares the
// source's device objects (so each clone rewrote the template's disk path).
// On an ESXi host (apiType HostAgent) there is no clone at all: like hostd,
// the call fails with NotSupported (only vCenter clones).
func (vm *VirtualMachine) CloneVMTask(ctx *simulator.Context, req *types.CloneVM_Task) soap.HasFault {
	if esxiMode() {
		return &methods.CloneVM_TaskBody{Fault_: simulator.Fault("The operation is not supported on the object.", &types.NotSupported{})}
	}
	task := simulator.CreateTask(vm, "cloneVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return vm.clone(ctx, req)
	})
	return &methods.CloneVM_TaskBody{
		Res: &types.CloneVM_TaskResponse{Returnval: task.Run()},
	}
}

// apiType is about.apiType: VirtualCenter, or HostAgent when posing as ESXi.
var apiType = "VirtualCenter"

func esxiMode() bool { return apiType == "HostAgent" }

type vmCreator interface {
	CreateVMTask(*simulator.Context, *types.CreateVM_Task) soap.HasFault
}

type diskCopy struct {
	src, dst string // datastore paths
	size     int64
}

func (vm *VirtualMachine) clone(ctx *simulator.Context, req *types.CloneVM_Task) (types.AnyType, types.BaseMethodFault) {
	folder, ok := simulator.Map.Get(req.Folder).(vmCreator)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: req.Folder}
	}
	if req.Name == "" {
		return nil, &types.InvalidArgument{InvalidProperty: "name"}
	}
	if e := findChildByName(req.Folder, req.Name); e != nil {
		return nil, &types.DuplicateName{Name: req.Name, Object: e.Reference()}
	}
	host, pool, ds, fault := vm.placement(&req.Spec.Location)
	if fault != nil {
		return nil, fault
	}

	devices, err := copyDevices(vm.Config.Hardware.Device)
	if err != nil {
		log.Printf("clone %s: %s", vm.Name, err)
		return nil, &types.InvalidState{}
	}
	defaults := object.VirtualDeviceList(esx.VirtualDevice)
	config := types.VirtualMachineConfigSpec{
		Name:              req.Name,
		GuestId:           vm.Config.GuestId,
		Annotation:        vm.Config.Annotation,
		NumCPUs:           vm.Config.Hardware.NumCPU,
		NumCoresPerSocket: vm.Config.Hardware.NumCoresPerSocket,
		MemoryMB:          int64(vm.Config.Hardware.MemoryMB),
		Files:             &types.VirtualMachineFileInfo{VmPathName: fmt.Sprintf("[%s]", ds.Name)},
	}
	var copies []diskCopy
	for _, dev := range devices {
		if defaults.FindByKey(dev.GetVirtualDevice().Key) != nil {
			continue // CreateVM adds the default controllers itself
		}
		var fop types.VirtualDeviceConfigSpecFileOperation
		switch d := dev.(type) {
		case *types.VirtualDisk:
			b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				return nil, &types.NotSupported{}
			}
			name := req.Name
			if len(copies) > 0 {
				name = fmt.Sprintf("%s_%d", req.Name, len(copies))
			}
			dst := fmt.Sprintf("[%s] %s/%s.vmdk", ds.Name, req.Name, name)
			copies = append(copies, diskCopy{src: b.FileName, dst: dst, size: diskBytes(d)})
			b.FileName = dst
			b.Parent = nil
			b.Datastore = &ds.Self
			b.Uuid = ""
			fop = types.VirtualDeviceConfigSpecFileOperationCreate
		case types.BaseVirtualEthernetCard:
			d.GetVirtualEthernetCard().MacAddress = "" // clones get new MACs
		}
		config.DeviceChange = append(config.DeviceChange, &types.VirtualDeviceConfigSpec{
			Operation:     types.VirtualDeviceConfigSpecOperationAdd,
			FileOperation: fop,
			Device:        dev,
		})
	}

	res := folder.CreateVMTask(ctx, &types.CreateVM_Task{
		This:   req.Folder,
		Config: config,
		Pool:   pool,
		Host:   &host.Self,
	})
	ctask := simulator.Map.Get(res.(*methods.CreateVM_TaskBody).Res.Returnval).(*simulator.Task)
	if ctask.Info.Error != nil {
		return nil, ctask.Info.Error.Fault
	}
	ref := ctask.Info.Result.(types.ManagedObjectReference)
	clone := wrapVM(ref)

	for _, c := range copies {
		src, ok1 := vm.localPath(c.src)
		dst, ok2 := clone.localPath(c.dst)
		if !ok1 || !ok2 {
			continue
		}
		if err := copySparse(flatName(src), flatName(dst), c.size); err != nil {
			log.Printf("clone %s: copy %s: %s", req.Name, c.src, err)
		}
	}
	clone.syncDiskFiles()

	return ref, clone.applyCloneSpec(ctx, &req.Spec)
}

// applyCloneSpec applies spec.config, spec.template and spec.powerOn.
func (vm *VirtualMachine) applyCloneSpec(ctx *simulator.Context, spec *types.VirtualMachineCloneSpec) types.BaseMethodFault {
	if spec.Config != nil {
		if err := vm.reconfigure(ctx, spec.Config); err != nil {
			return err
		}
	}
	if spec.Template {
		if r := vm.MarkAsTemplate(&types.MarkAsTemplate{This: vm.Self}); r.Fault() != nil {
			return r.Fault().VimFault().(types.BaseMethodFault)
		}
		return nil
	}
	if spec.PowerOn {
		res := vm.PowerOnVMTask(ctx, &types.PowerOnVM_Task{This: vm.Self})
		t := simulator.Map.Get(res.(*methods.PowerOnVM_TaskBody).Res.Returnval).(*simulator.Task)
		if t.Info.Error != nil {
			return t.Info.Error.Fault
		}
	}
	return nil
}

// placement resolves the clone's host, pool and datastore from the spec,
// defaulting like vCenter: host from the pool, pool from the host, and the
// source's datastore; the datastore must be mounted on the host.
func (vm *VirtualMachine) placement(loc *types.VirtualMachineRelocateSpec) (*simulator.HostSystem, types.ManagedObjectReference, *simulator.Datastore, types.BaseMethodFault) {
	var pool types.ManagedObjectReference
	var hostRef *types.ManagedObjectReference
	switch {
	case loc.Host != nil:
		hostRef = loc.Host
	case loc.Pool != nil:
		if cr := poolOwner(*loc.Pool); cr != nil && len(cr.Host) > 0 {
			hostRef = &cr.Host[0]
		}
	default:
		hostRef = vm.Runtime.Host
	}
	if hostRef == nil {
		return nil, pool, nil, &types.InvalidArgument{InvalidProperty: "spec.location.host"}
	}
	host, ok := simulator.Map.Get(*hostRef).(*simulator.HostSystem)
	if !ok {
		return nil, pool, nil, &types.ManagedObjectNotFound{Obj: *hostRef}
	}
	hostCR := computeResource(*host.Parent) // standalone or cluster
	if hostCR == nil {
		return nil, pool, nil, &types.NotSupported{}
	}

	if loc.Pool != nil {
		cr := poolOwner(*loc.Pool)
		if cr == nil {
			return nil, pool, nil, &types.ManagedObjectNotFound{Obj: *loc.Pool}
		}
		if cr.Self != hostCR.Self {
			return nil, pool, nil, &types.InvalidArgument{InvalidProperty: "spec.location.pool"}
		}
		pool = *loc.Pool
	} else {
		pool = *hostCR.ResourcePool
	}

	dsRef := loc.Datastore
	if dsRef == nil && len(vm.Datastore) > 0 {
		dsRef = &vm.Datastore[0]
	}
	if dsRef == nil {
		return nil, pool, nil, &types.InvalidArgument{InvalidProperty: "spec.location.datastore"}
	}
	ds, ok := simulator.Map.Get(*dsRef).(*simulator.Datastore)
	if !ok {
		return nil, pool, nil, &types.ManagedObjectNotFound{Obj: *dsRef}
	}
	if simulator.FindReference(host.Datastore, ds.Self) == nil {
		return nil, pool, nil, &types.DatastoreNotWritableOnHost{
			InvalidDatastore: types.InvalidDatastore{Datastore: &ds.Self, Name: ds.Name},
			Host:             host.Self,
		}
	}
	return host, pool, ds, nil
}

// poolOwner returns the ComputeResource owning a (possibly nested) pool.
func poolOwner(ref types.ManagedObjectReference) *mo.ComputeResource {
	pool, ok := simulator.Map.Get(ref).(*simulator.ResourcePool)
	if !ok {
		return nil
	}
	return computeResource(pool.Owner)
}

func findChildByName(folder types.ManagedObjectReference, name string) mo.Entity {
	f, ok := simulator.Map.Get(folder).(*simulator.Folder)
	if !ok {
		return nil
	}
	return simulator.Map.FindByName(name, f.ChildEntity)
}

// copyDevices deep-copies devices through XML, as vcsim does internally.
func copyDevices(devices []types.BaseVirtualDevice) ([]types.BaseVirtualDevice, error) {
	b, err := xml.Marshal(types.ArrayOfVirtualDevice{VirtualDevice: devices})
	if err != nil {
		return nil, err
	}
	var out types.ArrayOfVirtualDevice
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.TypeFunc = types.TypeFunc()
	if err := dec.Decode(&out); err != nil {
		return nil, err
	}
	return out.VirtualDevice, nil
}
