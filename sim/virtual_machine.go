package main

import (
	"log"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// VirtualMachine wraps vcsim's VM (by value; see registry.go) to give
// ReconfigVM_Task and CloneVM_Task real-vSphere semantics.
type VirtualMachine struct {
	simulator.VirtualMachine
}

func (vm *VirtualMachine) ReconfigVMTask(ctx *simulator.Context, req *types.ReconfigVM_Task) soap.HasFault {
	if vm.Config.Template {
		// vcsim refuses anything but name/annotation on templates, like vSphere.
		return vm.VirtualMachine.ReconfigVMTask(ctx, req)
	}
	spec := req.Spec
	task := simulator.CreateTask(vm, "reconfigVm", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		return nil, vm.reconfigure(ctx, &spec)
	})
	return &methods.ReconfigVM_TaskBody{
		Res: &types.ReconfigVM_TaskResponse{Returnval: task.Run()},
	}
}

// reconfigure applies spec: devices and other settings through vcsim, then
// extraConfig with vSphere semantics, then makes disk files match.
func (vm *VirtualMachine) reconfigure(ctx *simulator.Context, spec *types.VirtualMachineConfigSpec) types.BaseMethodFault {
	if err := vm.checkDeviceChanges(spec); err != nil {
		return err
	}
	ours, theirs := splitExtraConfig(spec.ExtraConfig)
	inner := *spec
	inner.ExtraConfig = theirs

	res := vm.VirtualMachine.ReconfigVMTask(ctx, &types.ReconfigVM_Task{This: vm.Self, Spec: inner})
	ref := res.(*methods.ReconfigVM_TaskBody).Res.Returnval
	if t := simulator.Map.Get(ref).(*simulator.Task); t.Info.Error != nil {
		return t.Info.Error.Fault
	}
	vm.setExtraConfig(ours)
	vm.syncDiskFiles()
	return nil
}

// splitExtraConfig keeps vcsim's "SET.guest.*" pseudo keys (which drive
// guest info) for vcsim and returns the real keys for us.
func splitExtraConfig(opts []types.BaseOptionValue) (ours, theirs []types.BaseOptionValue) {
	for _, o := range opts {
		key := o.GetOptionValue().Key
		if strings.HasPrefix(key, "SET.") || key == "ip0" {
			theirs = append(theirs, o)
		} else {
			ours = append(ours, o)
		}
	}
	return ours, theirs
}

// setExtraConfig replaces existing keys, appends new ones and removes keys
// set to an empty value, as vSphere does (vcsim 0.24.2 only appends).
func (vm *VirtualMachine) setExtraConfig(opts []types.BaseOptionValue) {
	if len(opts) == 0 {
		return
	}
	cur := append([]types.BaseOptionValue(nil), vm.Config.ExtraConfig...)
	for _, o := range opts {
		opt := o.GetOptionValue()
		idx := -1
		for i := range cur {
			if cur[i].GetOptionValue().Key == opt.Key {
				idx = i
				break
			}
		}
		switch {
		case isEmptyOption(opt.Value):
			if idx >= 0 {
				cur = append(cur[:idx], cur[idx+1:]...)
			}
		case idx >= 0:
			cur[idx] = &types.OptionValue{Key: opt.Key, Value: opt.Value}
		default:
			cur = append(cur, &types.OptionValue{Key: opt.Key, Value: opt.Value})
		}
	}
	simulator.Map.Update(vm, []types.PropertyChange{{Name: "config.extraConfig", Val: cur}})
}

func isEmptyOption(v types.AnyType) bool {
	if v == nil {
		return true
	}
	s, ok := v.(string)
	return ok && s == ""
}

// checkDeviceChanges rejects or patches specs that vcsim would mishandle
// (panics on unknown networks and nil DeviceInfo, stale capacity fields).
func (vm *VirtualMachine) checkDeviceChanges(spec *types.VirtualMachineConfigSpec) types.BaseMethodFault {
	devices := object.VirtualDeviceList(vm.Config.Hardware.Device)
	for i, change := range spec.DeviceChange {
		dspec := change.GetVirtualDeviceConfigSpec()
		if dspec.Device == nil {
			return &types.InvalidDeviceSpec{DeviceIndex: int32(i)}
		}
		d := dspec.Device.GetVirtualDevice()
		if dspec.Operation == types.VirtualDeviceConfigSpecOperationEdit && d.DeviceInfo == nil {
			d.DeviceInfo = &types.Description{}
		}
		switch dev := dspec.Device.(type) {
		case types.BaseVirtualEthernetCard:
			if b, ok := d.Backing.(*types.VirtualEthernetCardNetworkBackingInfo); ok {
				if vm.hostNetwork(b.DeviceName) == nil {
					log.Printf("%s: network %q not on host", vm.Name, b.DeviceName)
					return &types.InvalidDeviceSpec{DeviceIndex: int32(i)}
				}
			}
		case *types.VirtualDisk:
			var old *types.VirtualDisk
			if dspec.Operation == types.VirtualDeviceConfigSpecOperationEdit {
				old, _ = devices.FindByKey(d.Key).(*types.VirtualDisk)
				if old == nil {
					return &types.InvalidDeviceSpec{DeviceIndex: int32(i)}
				}
			}
			if dspec.Operation == types.VirtualDeviceConfigSpecOperationAdd && dspec.FileOperation == "" {
				vm.capacityFromFile(dev)
			}
			if err := fixCapacity(dev, old); err != nil {
				err.DeviceIndex = int32(i)
				return err
			}
		}
	}
	return nil
}

// fixCapacity keeps capacityInKB and capacityInBytes consistent: clients
// usually change only one of them. Shrinking is refused as in vSphere.
func fixCapacity(disk, old *types.VirtualDisk) *types.InvalidDeviceSpec {
	kb, bytes := disk.CapacityInKB, disk.CapacityInBytes
	switch {
	case old != nil && kb != old.CapacityInKB && bytes == old.CapacityInBytes:
		bytes = kb * 1024
	case old != nil && bytes != old.CapacityInBytes && kb == old.CapacityInKB:
		kb = bytes / 1024
	case bytes == 0:
		bytes = kb * 1024
	case kb == 0:
		kb = bytes / 1024
	}
	disk.CapacityInKB, disk.CapacityInBytes = kb, bytes
	if old != nil && bytes < diskBytes(old) {
		return &types.InvalidDeviceSpec{}
	}
	return nil
}

func diskBytes(d *types.VirtualDisk) int64 {
	if d.CapacityInBytes != 0 {
		return d.CapacityInBytes
	}
	return d.CapacityInKB * 1024
}

// hostNetwork finds a network by name among those of the VM's host.
func (vm *VirtualMachine) hostNetwork(name string) mo.Entity {
	if vm.Runtime.Host == nil {
		return nil
	}
	host, ok := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	if !ok {
		return nil
	}
	return simulator.Map.FindByName(name, host.Network)
}
