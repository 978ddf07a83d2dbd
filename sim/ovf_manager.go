package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/ovf"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// OvfManager fixes vcsim 0.24.2's CreateImportSpec where it differs from
// vSphere's: disks are named as ESXi names them ("[ds] vm/vm.vmdk", then
// vm_1.vmdk, ...) and created by the import (fileOperation create, with the
// requested provisioning); a disk capacity without allocation units is in
// bytes (vcsim read it as KB, making the disk 1024 times too large).
type OvfManager struct {
	simulator.OvfManager
}

func installOvfManager(ref types.ManagedObjectReference) {
	m := &OvfManager{}
	if cur, ok := simulator.Map.Get(ref).(*simulator.OvfManager); ok {
		m.OvfManager = *cur
	}
	m.Self = ref
	simulator.Map.Put(m)
}

func (m *OvfManager) CreateImportSpec(ctx *simulator.Context, req *types.CreateImportSpec) soap.HasFault {
	if _, ok := simulator.Map.Get(req.Datastore).(*simulator.Datastore); !ok {
		return &methods.CreateImportSpecBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.Datastore})}
	}
	if _, ok := simulator.Map.Get(req.ResourcePool).(*simulator.ResourcePool); !ok {
		return &methods.CreateImportSpecBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: req.ResourcePool})}
	}
	res := m.OvfManager.CreateImportSpec(ctx, req)
	body, ok := res.(*methods.CreateImportSpecBody)
	if !ok || body.Res == nil {
		return res
	}
	spec, ok := body.Res.Returnval.ImportSpec.(*types.VirtualMachineImportSpec)
	if !ok {
		return res
	}
	env, err := ovf.Unmarshal(strings.NewReader(req.OvfDescriptor))
	if err != nil {
		return res
	}
	capacities := ovfDiskCapacities(env)
	var dsPath object.DatastorePath
	dsPath.FromString(spec.ConfigSpec.Files.VmPathName)
	name := req.Cisp.EntityName
	n := 0
	for _, change := range spec.ConfigSpec.DeviceChange {
		dspec := change.GetVirtualDeviceConfigSpec()
		disk, ok := dspec.Device.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok {
			continue
		}
		file := name
		if n > 0 {
			file = fmt.Sprintf("%s_%d", name, n)
		}
		b.FileName = fmt.Sprintf("[%s] %s/%s.vmdk", dsPath.Datastore, name, file)
		b.ThinProvisioned = types.NewBool(req.Cisp.DiskProvisioning == "thin")
		b.EagerlyScrub = types.NewBool(req.Cisp.DiskProvisioning == "eagerZeroedThick")
		dspec.FileOperation = types.VirtualDeviceConfigSpecFileOperationCreate
		if n < len(capacities) {
			disk.CapacityInBytes = capacities[n]
			disk.CapacityInKB = capacities[n] / 1024
		}
		n++
	}
	return body
}

// ovfDiskCapacities lists the capacity in bytes of each disk item of the
// first virtual hardware section, in item order (as vcsim adds them).
func ovfDiskCapacities(env *ovf.Envelope) []int64 {
	if env.VirtualSystem == nil || len(env.VirtualSystem.VirtualHardware) == 0 || env.Disk == nil {
		return nil
	}
	var out []int64
	for _, item := range env.VirtualSystem.VirtualHardware[0].Item {
		if item.ResourceType == nil || *item.ResourceType != 17 || len(item.HostResource) == 0 {
			continue
		}
		for _, disk := range env.Disk.Disks {
			if strings.HasSuffix(item.HostResource[0], "/"+disk.DiskID) {
				out = append(out, ovfCapacityBytes(disk))
				break
			}
		}
	}
	return out
}

// ovfCapacityBytes reads ovf:capacity with its ovf:capacityAllocationUnits
// ("byte * 2^30"; bytes when absent, as the OVF standard says).
func ovfCapacityBytes(disk ovf.VirtualDiskDesc) int64 {
	b, _ := strconv.ParseInt(disk.Capacity, 10, 64)
	if disk.CapacityAllocationUnits == nil {
		return b
	}
	f := strings.Fields(*disk.CapacityAllocationUnits)
	if len(f) == 3 && f[0] == "byte" && f[1] == "*" {
		p := strings.Split(f[2], "^")
		x, _ := strconv.ParseFloat(p[0], 64)
		if len(p) == 2 {
			y, _ := strconv.ParseFloat(p[1], 64)
			x = math.Pow(x, y)
		}
		return b * int64(x)
	}
	return b
}
