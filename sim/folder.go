package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// folderProxy implements CreateFolder (NotSupported on ESXi), CreateClusterEx (vcsim 0.24.2 ignores the spec)
// and MoveIntoFolder_Task for hosts leaving a cluster (vcsim only moves
// objects whose parent is a folder). See dispatch.go.
type folderProxy struct {
	Self   types.ManagedObjectReference
	target types.ManagedObjectReference
}

func newFolderProxy(target types.ManagedObjectReference) *folderProxy {
	return &folderProxy{
		Self:   types.ManagedObjectReference{Type: "VsaFolder", Value: target.Value},
		target: target,
	}
}

func (p *folderProxy) Reference() types.ManagedObjectReference { return p.Self }

func (p *folderProxy) folder() *simulator.Folder {
	f, _ := simulator.Map.Get(p.target).(*simulator.Folder)
	return f
}

// CreateFolder: a single ESXi host has no VM folders; like hostd, the call
// fails with NotSupported there (vCenter makes them as vcsim does).
func (p *folderProxy) CreateFolder(ctx *simulator.Context, req *types.CreateFolder) soap.HasFault {
	if esxiMode() {
		return &methods.CreateFolderBody{Fault_: simulator.Fault("The operation is not supported on the object.", &types.NotSupported{})}
	}
	f := p.folder()
	if f == nil {
		return &methods.CreateFolderBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: p.target})}
	}
	r := *req
	r.This = p.target
	return f.CreateFolder(ctx, &r)
}

func (p *folderProxy) CreateClusterEx(ctx *simulator.Context, req *types.CreateClusterEx) soap.HasFault {
	f := p.folder()
	if f == nil {
		return &methods.CreateClusterExBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: p.target})}
	}
	r := *req
	r.This = p.target
	res := f.CreateClusterEx(ctx, &r)
	body, ok := res.(*methods.CreateClusterExBody)
	if !ok || body.Res == nil {
		return res
	}
	c := simulator.Map.Get(body.Res.Returnval).(*simulator.ClusterComputeResource)
	simulator.Map.WithLock(c, func() {
		cfg := c.ConfigurationEx.(*types.ClusterConfigInfoEx)
		// vCenter's defaults for a new cluster: HA and DRS off.
		cfg.DasConfig = defaultDasConfig()
		cfg.DrsConfig = types.ClusterDrsConfigInfo{
			Enabled:                   types.NewBool(false),
			EnableVmBehaviorOverrides: types.NewBool(true),
			DefaultVmBehavior:         types.DrsBehaviorFullyAutomated,
			VmotionRate:               3,
		}
	})
	if fault := reconfigureCluster(ctx, c, &req.Spec, true); fault != nil {
		// vCenter validates before creating; undo so nothing half-made stays.
		simulator.Map.Remove(*c.ResourcePool)
		simulator.Map.Remove(c.Self)
		simulator.Map.WithLock(f, func() {
			simulator.Map.Update(f, []types.PropertyChange{{Name: "childEntity", Val: removeRef(f.ChildEntity, c.Self)}})
		})
		return &methods.CreateClusterExBody{Fault_: simulator.Fault("", fault)}
	}
	return body
}

// MoveIntoFolderTask moves hosts out of a cluster into a host folder as
// standalone hosts (they must be in maintenance mode, as in vCenter) and
// hands everything else to vcsim.
func (p *folderProxy) MoveIntoFolderTask(ctx *simulator.Context, req *types.MoveIntoFolder_Task) soap.HasFault {
	f := p.folder()
	if f == nil {
		return &methods.MoveIntoFolder_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: p.target})}
	}
	var hosts, others []types.ManagedObjectReference
	for _, ref := range req.List {
		if ref.Type == "HostSystem" {
			hosts = append(hosts, ref)
		} else {
			others = append(others, ref)
		}
	}
	if len(hosts) == 0 {
		r := *req
		r.This = p.target
		return f.MoveIntoFolderTask(ctx, &r)
	}
	task := simulator.CreateTask(f, "moveIntoFolder", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		if !hasChildType(f, "ComputeResource") {
			return nil, &types.NotSupported{}
		}
		for _, ref := range hosts {
			if fault := moveHostOut(ctx, f, ref); fault != nil {
				return nil, fault
			}
		}
		if len(others) > 0 {
			res := f.MoveIntoFolderTask(ctx, &types.MoveIntoFolder_Task{This: p.target, List: others})
			t := simulator.Map.Get(res.(*methods.MoveIntoFolder_TaskBody).Res.Returnval).(*simulator.Task)
			if t.Info.Error != nil {
				return nil, t.Info.Error.Fault
			}
		}
		return nil, nil
	})
	return &methods.MoveIntoFolder_TaskBody{Res: &types.MoveIntoFolder_TaskResponse{Returnval: task.Run()}}
}

func hasChildType(f *simulator.Folder, kind string) bool {
	for _, t := range f.ChildType {
		if t == kind {
			return true
		}
	}
	return false
}

// moveHostOut makes a clustered host standalone under folder f: a new
// ComputeResource and root pool; its VMs move to that pool.
func moveHostOut(ctx *simulator.Context, f *simulator.Folder, ref types.ManagedObjectReference) types.BaseMethodFault {
	host, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	c, ok := simulator.Map.Get(*host.Parent).(*simulator.ClusterComputeResource)
	if !ok {
		return &types.NotSupported{} // already standalone: move its ComputeResource instead
	}
	if datacenterOf(f.Self) != datacenterOf(host.Self) {
		return &types.InvalidArgument{InvalidProperty: "list"}
	}
	if !host.Runtime.InMaintenanceMode {
		return &types.InvalidState{}
	}

	hw := host.Summary.Hardware
	cr := &mo.ComputeResource{
		ConfigurationEx: &types.ComputeResourceConfigInfo{
			VmSwapPlacement: string(types.VirtualMachineConfigInfoSwapPlacementTypeVmDirectory),
		},
		Summary: &types.ComputeResourceSummary{
			TotalCpu: hw.CpuMhz, TotalMemory: hw.MemorySize,
			NumCpuCores: hw.NumCpuCores, NumCpuThreads: hw.NumCpuThreads,
			EffectiveCpu: hw.CpuMhz, EffectiveMemory: hw.MemorySize,
			NumHosts: 1, NumEffectiveHosts: 1, OverallStatus: types.ManagedEntityStatusGreen,
		},
		EnvironmentBrowser: c.EnvironmentBrowser,
	}
	simulator.Map.NewEntity(cr)
	cr.Name = host.Name
	cr.Host = []types.ManagedObjectReference{host.Self}
	cr.Network = append([]types.ManagedObjectReference(nil), host.Network...)
	cr.Datastore = append([]types.ManagedObjectReference(nil), host.Datastore...)
	pool := simulator.NewResourcePool()
	simulator.Map.PutEntity(cr, simulator.Map.NewEntity(pool))
	pool.Owner = cr.Self
	cr.ResourcePool = &pool.Self

	// Like vcsim's folderPutChild: childEntity first, for ContainerViews.
	simulator.Map.WithLock(f, func() {
		children := append(append([]types.ManagedObjectReference(nil), f.ChildEntity...), cr.Self)
		simulator.Map.Update(f, []types.PropertyChange{{Name: "childEntity", Val: children}})
		simulator.Map.PutEntity(f, cr)
	})

	for _, vmRef := range host.Vm {
		vm := simulator.Map.Get(vmRef)
		e, ok := vm.(mo.Entity)
		mvm := vmMO(vm)
		if !ok || mvm == nil || mvm.ResourcePool == nil {
			continue
		}
		if oldPool, ok := simulator.Map.Get(*mvm.ResourcePool).(*simulator.ResourcePool); ok {
			simulator.Map.WithLock(oldPool, func() {
				simulator.Map.Update(oldPool, []types.PropertyChange{{Name: "vm", Val: removeRef(oldPool.Vm, vmRef)}})
			})
		}
		simulator.Map.WithLock(pool, func() {
			vms := append(append([]types.ManagedObjectReference(nil), pool.Vm...), vmRef)
			simulator.Map.Update(pool, []types.PropertyChange{{Name: "vm", Val: vms}})
		})
		simulator.Map.WithLock(e, func() {
			simulator.Map.Update(e, []types.PropertyChange{{Name: "resourcePool", Val: cr.ResourcePool}})
		})
	}
	simulator.Map.WithLock(host, func() {
		simulator.Map.Update(host, []types.PropertyChange{{Name: "parent", Val: &cr.Self}})
	})
	leaveComputeResource(&c.ComputeResource, host)
	return nil
}
