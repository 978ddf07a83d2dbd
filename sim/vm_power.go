package main

import (
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// In lab mode (lab_hook.go) a VM's power operations drive its real twin:
// power-on boots it, power-off and reset act on it as a host losing power
// would, destroy removes it. Without -lab-hook these are vcsim's own.

// vmDoc is what the hook learns about a VM.
type vmDoc struct {
	Name      string            `json:"name"`
	UUID      string            `json:"uuid"`
	Folder    string            `json:"folder"` // the VM's folder on the local filesystem
	CPUs      int32             `json:"cpus"`
	MemoryMB  int32             `json:"memory_mb"`
	Disks     []diskDoc         `json:"disks"`
	NICs      []nicDoc          `json:"nics"`
	Guestinfo map[string]string `json:"guestinfo"` // every guestinfo.* extraConfig key
}

type diskDoc struct {
	File          string `json:"file"`       // the flat extent: raw disk data, sparse
	Descriptor    string `json:"descriptor"` // the .vmdk descriptor
	Datastore     string `json:"datastore_path"`
	CapacityBytes int64  `json:"capacity_bytes"`
	Bus           int32  `json:"bus"`
	Unit          int32  `json:"unit"`
}

type nicDoc struct {
	Portgroup string `json:"portgroup"`
	MAC       string `json:"mac"`
}

func (vm *VirtualMachine) labDoc() vmDoc {
	doc := vmDoc{
		Name:      vm.Name,
		UUID:      vm.Config.Uuid,
		CPUs:      vm.Config.Hardware.NumCPU,
		MemoryMB:  vm.Config.Hardware.MemoryMB,
		Disks:     []diskDoc{},
		NICs:      []nicDoc{},
		Guestinfo: map[string]string{},
	}
	if vmx, ok := vm.localPath(vm.Config.Files.VmPathName); ok {
		doc.Folder = filepath.Dir(vmx)
	}
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	for _, dev := range devices {
		switch d := dev.(type) {
		case *types.VirtualDisk:
			b, ok := d.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
			if !ok {
				continue
			}
			disk := diskDoc{Datastore: b.FileName, CapacityBytes: diskBytes(d), Bus: -1}
			if desc, ok := vm.localPath(b.FileName); ok {
				disk.Descriptor, disk.File = desc, flatName(desc)
			}
			if c, ok := devices.FindByKey(d.ControllerKey).(types.BaseVirtualController); ok {
				disk.Bus = c.GetVirtualController().BusNumber
			}
			if d.UnitNumber != nil {
				disk.Unit = *d.UnitNumber
			}
			doc.Disks = append(doc.Disks, disk)
		case types.BaseVirtualEthernetCard:
			card := d.GetVirtualEthernetCard()
			nic := nicDoc{MAC: card.MacAddress}
			if b, ok := card.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
				nic.Portgroup = b.DeviceName
			}
			doc.NICs = append(doc.NICs, nic)
		}
	}
	sort.SliceStable(doc.Disks, func(i, j int) bool {
		a, b := doc.Disks[i], doc.Disks[j]
		return a.Bus < b.Bus || (a.Bus == b.Bus && a.Unit < b.Unit)
	})
	for _, o := range vm.Config.ExtraConfig {
		opt := o.GetOptionValue()
		if s, ok := opt.Value.(string); ok && strings.HasPrefix(opt.Key, "guestinfo.") {
			doc.Guestinfo[opt.Key] = s
		}
	}
	return doc
}

// labTask runs fn as a vSphere task whose fault, if any, carries msg as its
// localized message (vcsim would show only the fault's Go type).
func labTask(vm *VirtualMachine, name string, fn func() (types.BaseMethodFault, string)) types.ManagedObjectReference {
	var msg string
	task := simulator.CreateTask(vm, name, func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		var f types.BaseMethodFault
		f, msg = fn()
		return nil, f
	})
	ref := task.Run()
	if task.Info.Error != nil && msg != "" {
		simulator.Map.Update(task, []types.PropertyChange{{
			Name: "info.error",
			Val:  &types.LocalizedMethodFault{Fault: task.Info.Error.Fault, LocalizedMessage: msg},
		}})
	}
	return ref
}

func hookFault(err error) (types.BaseMethodFault, string) {
	return &types.SystemError{Reason: err.Error()}, err.Error()
}

func (vm *VirtualMachine) hookVerb(verb string) error {
	_, err := hook.run(verb, vm.labDoc(), hookPowerTimeout)
	return err
}

// hookPowerOn boots the twin and watches its process (lab_watch.go).
func (vm *VirtualMachine) hookPowerOn() error {
	out, err := hook.run("power-on", vm.labDoc(), hookPowerTimeout)
	if err == nil {
		vm.watchTwin(out)
	}
	return err
}

// hookPowerOff pulls the twin's plug; its watch ends first.
func (vm *VirtualMachine) hookPowerOff() error {
	unwatch(vm.Self)
	return vm.hookVerb("power-off")
}

// innerFault is the fault of a task vcsim ran for us, if any.
func innerFault(ref types.ManagedObjectReference) types.BaseMethodFault {
	if t, ok := simulator.Map.Get(ref).(*simulator.Task); ok && t.Info.Error != nil {
		return t.Info.Error.Fault
	}
	return nil
}

func (vm *VirtualMachine) wrongState(want types.VirtualMachinePowerState) types.BaseMethodFault {
	if vm.Runtime.PowerState == want {
		return nil
	}
	return &types.InvalidPowerState{RequestedState: want, ExistingState: vm.Runtime.PowerState}
}

func (vm *VirtualMachine) PowerOnVMTask(ctx *simulator.Context, req *types.PowerOnVM_Task) soap.HasFault {
	if !labMode() || vm.Config.Template {
		return vm.VirtualMachine.PowerOnVMTask(ctx, req)
	}
	ref := labTask(vm, "powerOn", func() (types.BaseMethodFault, string) {
		if f := vm.wrongState(types.VirtualMachinePowerStatePoweredOff); f != nil {
			return f, ""
		}
		if err := vm.hookPowerOn(); err != nil {
			return hookFault(err)
		}
		res := vm.VirtualMachine.PowerOnVMTask(ctx, req).(*methods.PowerOnVM_TaskBody)
		return innerFault(res.Res.Returnval), ""
	})
	return &methods.PowerOnVM_TaskBody{Res: &types.PowerOnVM_TaskResponse{Returnval: ref}}
}

func (vm *VirtualMachine) PowerOffVMTask(ctx *simulator.Context, req *types.PowerOffVM_Task) soap.HasFault {
	if !labMode() || vm.Config.Template {
		return vm.VirtualMachine.PowerOffVMTask(ctx, req)
	}
	ref := labTask(vm, "powerOff", func() (types.BaseMethodFault, string) {
		if f := vm.wrongState(types.VirtualMachinePowerStatePoweredOn); f != nil {
			return f, ""
		}
		return vm.labPowerOff(ctx)
	})
	return &methods.PowerOffVM_TaskBody{Res: &types.PowerOffVM_TaskResponse{Returnval: ref}}
}

func (vm *VirtualMachine) labPowerOff(ctx *simulator.Context) (types.BaseMethodFault, string) {
	if err := vm.hookPowerOff(); err != nil {
		return hookFault(err)
	}
	res := vm.VirtualMachine.PowerOffVMTask(ctx, &types.PowerOffVM_Task{This: vm.Self}).(*methods.PowerOffVM_TaskBody)
	return innerFault(res.Res.Returnval), ""
}

// ResetVMTask is a hard reset: off, then on (vcsim's own would call the
// embedded VM's power methods and bypass ours).
func (vm *VirtualMachine) ResetVMTask(ctx *simulator.Context, req *types.ResetVM_Task) soap.HasFault {
	if !labMode() || vm.Config.Template {
		return vm.VirtualMachine.ResetVMTask(ctx, req)
	}
	ref := labTask(vm, "reset", func() (types.BaseMethodFault, string) {
		if f := vm.wrongState(types.VirtualMachinePowerStatePoweredOn); f != nil {
			return f, ""
		}
		if err := vm.hookPowerOff(); err != nil {
			return hookFault(err)
		}
		if err := vm.hookPowerOn(); err != nil {
			// The twin is off now: say so, as a host would after a failed reset.
			vm.VirtualMachine.PowerOffVMTask(ctx, &types.PowerOffVM_Task{This: vm.Self})
			return hookFault(err)
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "summary.runtime.bootTime", Val: types.NewTime(time.Now())},
		})
		return nil, ""
	})
	return &methods.ResetVM_TaskBody{Res: &types.ResetVM_TaskResponse{Returnval: ref}}
}

// ShutdownGuest in the lab is a hard power-off: the simulator has no tools
// channel into the guest.
func (vm *VirtualMachine) ShutdownGuest(ctx *simulator.Context, req *types.ShutdownGuest) soap.HasFault {
	if !labMode() || vm.Config.Template || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return vm.VirtualMachine.ShutdownGuest(ctx, req)
	}
	if err := vm.hookPowerOff(); err != nil {
		return &methods.ShutdownGuestBody{Fault_: simulator.Fault(err.Error(), &types.SystemError{Reason: err.Error()})}
	}
	return vm.VirtualMachine.ShutdownGuest(ctx, req)
}

func (vm *VirtualMachine) DestroyTask(ctx *simulator.Context, req *types.Destroy_Task) soap.HasFault {
	if !labMode() || vm.Config.Template {
		return vm.VirtualMachine.DestroyTask(ctx, req)
	}
	ref := labTask(vm, "destroy", func() (types.BaseMethodFault, string) {
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			if f, msg := vm.labPowerOff(ctx); f != nil {
				return f, msg
			}
		}
		if err := vm.hookVerb("remove"); err != nil {
			return hookFault(err)
		}
		res := vm.VirtualMachine.DestroyTask(ctx, req).(*methods.Destroy_TaskBody)
		return innerFault(res.Res.Returnval), ""
	})
	return &methods.Destroy_TaskBody{Res: &types.Destroy_TaskResponse{Returnval: ref}}
}
