package main

import (
	"bytes"
	"fmt"
	"log"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
	"github.com/vmware/govmomi/vim25/xml"
)

// clusterProxy implements ReconfigureComputeResource_Task and MoveInto_Task
// for a *simulator.ClusterComputeResource (see dispatch.go for why this is
// a proxy and not a wrapper). vcsim 0.24.2 ignores dasConfig/drsConfig in
// reconfigure and has no MoveInto.
type clusterProxy struct {
	Self   types.ManagedObjectReference
	target types.ManagedObjectReference
}

func newClusterProxy(target types.ManagedObjectReference) *clusterProxy {
	return &clusterProxy{
		Self:   types.ManagedObjectReference{Type: "VsaClusterComputeResource", Value: target.Value},
		target: target,
	}
}

func (p *clusterProxy) Reference() types.ManagedObjectReference { return p.Self }

func (p *clusterProxy) cluster() (*simulator.ClusterComputeResource, types.BaseMethodFault) {
	c, ok := simulator.Map.Get(p.target).(*simulator.ClusterComputeResource)
	if !ok {
		return nil, &types.ManagedObjectNotFound{Obj: p.target}
	}
	return c, nil
}

func (p *clusterProxy) ReconfigureComputeResourceTask(ctx *simulator.Context, req *types.ReconfigureComputeResource_Task) soap.HasFault {
	c, fault := p.cluster()
	body := &methods.ReconfigureComputeResource_TaskBody{}
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	task := simulator.CreateTask(c, "reconfigureCluster", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		spec, ok := req.Spec.(*types.ClusterConfigSpecEx)
		if !ok {
			return nil, &types.InvalidArgument{InvalidProperty: "spec"}
		}
		return nil, reconfigureCluster(ctx, c, spec, req.Modify)
	})
	body.Res = &types.ReconfigureComputeResource_TaskResponse{Returnval: task.Run()}
	return body
}

// reconfigureCluster applies spec to a copy of the cluster's configuration
// and publishes it only when every part applied (vCenter is atomic too).
func reconfigureCluster(ctx *simulator.Context, c *simulator.ClusterComputeResource, spec *types.ClusterConfigSpecEx, modify bool) types.BaseMethodFault {
	var fault types.BaseMethodFault
	simulator.Map.WithLock(c, func() {
		cur, ok := c.ConfigurationEx.(*types.ClusterConfigInfoEx)
		if !ok {
			fault = &types.InvalidState{}
			return
		}
		cfg := new(types.ClusterConfigInfoEx)
		if err := deepCopyXML(cur, cfg); err != nil {
			fault = &types.InvalidState{}
			return
		}
		if !modify {
			// modify=false: unset properties take their defaults.
			cfg.DasConfig = defaultDasConfig()
			cfg.DrsConfig = types.ClusterDrsConfigInfo{Enabled: types.NewBool(false), DefaultVmBehavior: types.DrsBehaviorFullyAutomated, VmotionRate: 3}
		}
		if fault = applyClusterSpec(cfg, spec); fault != nil {
			return
		}
		simulator.Map.Update(c, []types.PropertyChange{{Name: "configurationEx", Val: cfg}})
	})
	if fault != nil || (len(spec.RulesSpec) == 0 && len(spec.GroupSpec) == 0) {
		return fault
	}
	// Rules and groups: vcsim implements them; hand it just those.
	rest := &types.ClusterConfigSpecEx{RulesSpec: spec.RulesSpec, GroupSpec: spec.GroupSpec}
	res := c.ReconfigureComputeResourceTask(&types.ReconfigureComputeResource_Task{This: c.Self, Spec: rest, Modify: true})
	t := simulator.Map.Get(res.(*methods.ReconfigureComputeResource_TaskBody).Res.Returnval).(*simulator.Task)
	if t.Info.Error != nil {
		return t.Info.Error.Fault
	}
	return nil
}

func applyClusterSpec(cfg *types.ClusterConfigInfoEx, spec *types.ClusterConfigSpecEx) types.BaseMethodFault {
	if spec.DasConfig != nil {
		mergeDasConfig(&cfg.DasConfig, spec.DasConfig)
	}
	if spec.DrsConfig != nil {
		mergeDrsConfig(&cfg.DrsConfig, spec.DrsConfig)
	}
	if spec.DpmConfig != nil {
		if cfg.DpmConfigInfo == nil {
			cfg.DpmConfigInfo = &types.ClusterDpmConfigInfo{Enabled: types.NewBool(false), DefaultDpmBehavior: types.DpmBehaviorAutomated, HostPowerActionRate: 3}
		}
		d, s := cfg.DpmConfigInfo, spec.DpmConfig
		if s.Enabled != nil {
			d.Enabled = s.Enabled
		}
		if s.DefaultDpmBehavior != "" {
			d.DefaultDpmBehavior = s.DefaultDpmBehavior
		}
		if s.HostPowerActionRate != 0 {
			d.HostPowerActionRate = s.HostPowerActionRate
		}
		d.Option = mergeOptions(d.Option, s.Option)
	}
	if spec.VmSwapPlacement != "" {
		cfg.VmSwapPlacement = spec.VmSwapPlacement
	}
	for i, s := range spec.DasVmConfigSpec {
		if f := applyDasVmSpec(cfg, s); f != nil {
			return withProperty(f, fmt.Sprintf("spec.dasVmConfigSpec[%d]", i))
		}
	}
	for i, s := range spec.DrsVmConfigSpec {
		if f := applyDrsVmSpec(cfg, s); f != nil {
			return withProperty(f, fmt.Sprintf("spec.drsVmConfigSpec[%d]", i))
		}
	}
	return nil
}

func withProperty(f *types.InvalidArgument, prop string) types.BaseMethodFault {
	f.InvalidProperty = prop
	return f
}

// defaultDasConfig is what vCenter reports for a cluster created without HA
// settings.
func defaultDasConfig() types.ClusterDasConfigInfo {
	return types.ClusterDasConfigInfo{
		Enabled:                 types.NewBool(false),
		VmMonitoring:            string(types.ClusterDasConfigInfoVmMonitoringStateVmMonitoringDisabled),
		HostMonitoring:          string(types.ClusterDasConfigInfoServiceStateEnabled),
		VmComponentProtecting:   string(types.ClusterDasConfigInfoServiceStateDisabled),
		FailoverLevel:           1,
		AdmissionControlPolicy:  &types.ClusterFailoverLevelAdmissionControlPolicy{FailoverLevel: 1},
		AdmissionControlEnabled: types.NewBool(true),
		DefaultVmSettings: &types.ClusterDasVmSettings{
			RestartPriority:        string(types.ClusterDasVmSettingsRestartPriorityMedium),
			RestartPriorityTimeout: 600,
			IsolationResponse:      string(types.ClusterDasVmSettingsIsolationResponseNone),
			VmToolsMonitoringSettings: &types.ClusterVmToolsMonitoringSettings{
				Enabled:          types.NewBool(false),
				VmMonitoring:     string(types.ClusterDasConfigInfoVmMonitoringStateVmMonitoringDisabled),
				ClusterSettings:  types.NewBool(true),
				FailureInterval:  30,
				MinUpTime:        120,
				MaxFailures:      3,
				MaxFailureWindow: 3600,
			},
		},
		HBDatastoreCandidatePolicy: string(types.ClusterDasConfigInfoHBDatastoreCandidateAllFeasibleDsWithUserPreference),
	}
}

// mergeDasConfig sets what s sets, as vCenter does with modify=true.
func mergeDasConfig(d, s *types.ClusterDasConfigInfo) {
	if s.Enabled != nil {
		d.Enabled = s.Enabled
	}
	if s.VmMonitoring != "" {
		d.VmMonitoring = s.VmMonitoring
	}
	if s.HostMonitoring != "" {
		d.HostMonitoring = s.HostMonitoring
	}
	if s.VmComponentProtecting != "" {
		d.VmComponentProtecting = s.VmComponentProtecting
	}
	if s.FailoverLevel != 0 {
		d.FailoverLevel = s.FailoverLevel
	}
	if s.AdmissionControlPolicy != nil {
		d.AdmissionControlPolicy = s.AdmissionControlPolicy
	}
	if s.AdmissionControlEnabled != nil {
		d.AdmissionControlEnabled = s.AdmissionControlEnabled
	}
	if s.DefaultVmSettings != nil {
		if d.DefaultVmSettings == nil {
			d.DefaultVmSettings = &types.ClusterDasVmSettings{}
		}
		mergeDasVmSettings(d.DefaultVmSettings, s.DefaultVmSettings)
	}
	d.Option = mergeOptions(d.Option, s.Option)
	if s.HeartbeatDatastore != nil {
		d.HeartbeatDatastore = s.HeartbeatDatastore
	}
	if s.HBDatastoreCandidatePolicy != "" {
		d.HBDatastoreCandidatePolicy = s.HBDatastoreCandidatePolicy
	}
}

func mergeDasVmSettings(d, s *types.ClusterDasVmSettings) {
	if s.RestartPriority != "" {
		d.RestartPriority = s.RestartPriority
	}
	if s.RestartPriorityTimeout != 0 {
		d.RestartPriorityTimeout = s.RestartPriorityTimeout
	}
	if s.IsolationResponse != "" {
		d.IsolationResponse = s.IsolationResponse
	}
	if s.VmToolsMonitoringSettings != nil {
		d.VmToolsMonitoringSettings = s.VmToolsMonitoringSettings
	}
	if s.VmComponentProtectionSettings != nil {
		d.VmComponentProtectionSettings = s.VmComponentProtectionSettings
	}
}

func mergeDrsConfig(d, s *types.ClusterDrsConfigInfo) {
	if s.Enabled != nil {
		d.Enabled = s.Enabled
	}
	if s.EnableVmBehaviorOverrides != nil {
		d.EnableVmBehaviorOverrides = s.EnableVmBehaviorOverrides
	}
	if s.DefaultVmBehavior != "" {
		d.DefaultVmBehavior = s.DefaultVmBehavior
	}
	if s.VmotionRate != 0 {
		d.VmotionRate = s.VmotionRate
	}
	if s.ScaleDescendantsShares != "" {
		d.ScaleDescendantsShares = s.ScaleDescendantsShares
	}
	d.Option = mergeOptions(d.Option, s.Option)
}

// mergeOptions sets each option of set by key: existing keys are replaced,
// new ones appended, and a key given with an empty value is removed.
func mergeOptions(cur, set []types.BaseOptionValue) []types.BaseOptionValue {
	out := append([]types.BaseOptionValue(nil), cur...)
	for _, o := range set {
		opt := o.GetOptionValue()
		idx := -1
		for i := range out {
			if out[i].GetOptionValue().Key == opt.Key {
				idx = i
				break
			}
		}
		switch {
		case isEmptyOption(opt.Value):
			if idx >= 0 {
				out = append(out[:idx], out[idx+1:]...)
			}
		case idx >= 0:
			out[idx] = &types.OptionValue{Key: opt.Key, Value: opt.Value}
		default:
			out = append(out, &types.OptionValue{Key: opt.Key, Value: opt.Value})
		}
	}
	return out
}

func arrayKey(s types.ArrayUpdateSpec, info *types.ManagedObjectReference) (types.ManagedObjectReference, *types.InvalidArgument) {
	if s.Operation == types.ArrayUpdateOperationRemove {
		switch key := s.RemoveKey.(type) {
		case types.ManagedObjectReference:
			return key, nil
		case *types.ManagedObjectReference:
			return *key, nil
		}
		log.Printf("removeKey: unexpected %T", s.RemoveKey)
		return types.ManagedObjectReference{}, &types.InvalidArgument{}
	}
	if info == nil {
		return types.ManagedObjectReference{}, &types.InvalidArgument{}
	}
	if _, ok := simulator.Map.Get(*info).(*VirtualMachine); !ok {
		if _, ok := simulator.Map.Get(*info).(*simulator.VirtualMachine); !ok {
			return *info, &types.InvalidArgument{}
		}
	}
	return *info, nil
}

func applyDasVmSpec(cfg *types.ClusterConfigInfoEx, s types.ClusterDasVmConfigSpec) *types.InvalidArgument {
	var infoKey *types.ManagedObjectReference
	if s.Info != nil {
		infoKey = &s.Info.Key
	}
	key, f := arrayKey(s.ArrayUpdateSpec, infoKey)
	if f != nil {
		return f
	}
	idx := -1
	for i := range cfg.DasVmConfig {
		if cfg.DasVmConfig[i].Key == key {
			idx = i
		}
	}
	switch s.Operation {
	case types.ArrayUpdateOperationAdd:
		if idx >= 0 {
			return &types.InvalidArgument{}
		}
		cfg.DasVmConfig = append(cfg.DasVmConfig, *s.Info)
	case types.ArrayUpdateOperationEdit:
		if idx < 0 {
			return &types.InvalidArgument{}
		}
		d := &cfg.DasVmConfig[idx]
		if s.Info.RestartPriority != "" {
			d.RestartPriority = s.Info.RestartPriority
		}
		if s.Info.PowerOffOnIsolation != nil {
			d.PowerOffOnIsolation = s.Info.PowerOffOnIsolation
		}
		if s.Info.DasSettings != nil {
			if d.DasSettings == nil {
				d.DasSettings = &types.ClusterDasVmSettings{}
			}
			mergeDasVmSettings(d.DasSettings, s.Info.DasSettings)
		}
	case types.ArrayUpdateOperationRemove:
		if idx < 0 {
			return &types.InvalidArgument{}
		}
		cfg.DasVmConfig = append(cfg.DasVmConfig[:idx], cfg.DasVmConfig[idx+1:]...)
	default:
		return &types.InvalidArgument{}
	}
	return nil
}

func applyDrsVmSpec(cfg *types.ClusterConfigInfoEx, s types.ClusterDrsVmConfigSpec) *types.InvalidArgument {
	var infoKey *types.ManagedObjectReference
	if s.Info != nil {
		infoKey = &s.Info.Key
	}
	key, f := arrayKey(s.ArrayUpdateSpec, infoKey)
	if f != nil {
		return f
	}
	idx := -1
	for i := range cfg.DrsVmConfig {
		if cfg.DrsVmConfig[i].Key == key {
			idx = i
		}
	}
	switch s.Operation {
	case types.ArrayUpdateOperationAdd:
		if idx >= 0 {
			return &types.InvalidArgument{}
		}
		cfg.DrsVmConfig = append(cfg.DrsVmConfig, *s.Info)
	case types.ArrayUpdateOperationEdit:
		if idx < 0 {
			return &types.InvalidArgument{}
		}
		if s.Info.Enabled != nil {
			cfg.DrsVmConfig[idx].Enabled = s.Info.Enabled
		}
		if s.Info.Behavior != "" {
			cfg.DrsVmConfig[idx].Behavior = s.Info.Behavior
		}
	case types.ArrayUpdateOperationRemove:
		if idx < 0 {
			return &types.InvalidArgument{}
		}
		cfg.DrsVmConfig = append(cfg.DrsVmConfig[:idx], cfg.DrsVmConfig[idx+1:]...)
	default:
		return &types.InvalidArgument{}
	}
	return nil
}

// MoveIntoTask moves hosts into the cluster as vCenter does: a standalone
// host's ComputeResource and resource pools go away and its VMs join the
// cluster's root pool; a host from another cluster must be in maintenance
// mode.
func (p *clusterProxy) MoveIntoTask(ctx *simulator.Context, req *types.MoveInto_Task) soap.HasFault {
	c, fault := p.cluster()
	body := &methods.MoveInto_TaskBody{}
	if fault != nil {
		body.Fault_ = simulator.Fault("", fault)
		return body
	}
	task := simulator.CreateTask(c, "moveInto", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		for _, ref := range req.Host {
			if f := moveHostInto(ctx, c, ref); f != nil {
				return nil, f
			}
		}
		return nil, nil
	})
	body.Res = &types.MoveInto_TaskResponse{Returnval: task.Run()}
	return body
}

func moveHostInto(ctx *simulator.Context, c *simulator.ClusterComputeResource, ref types.ManagedObjectReference) types.BaseMethodFault {
	host, ok := simulator.Map.Get(ref).(*simulator.HostSystem)
	if !ok {
		return &types.ManagedObjectNotFound{Obj: ref}
	}
	if *host.Parent == c.Self {
		return nil
	}
	if datacenterOf(host.Self) != datacenterOf(c.Self) {
		return &types.InvalidArgument{InvalidProperty: "host"}
	}
	old := computeResource(*host.Parent)
	if old == nil {
		return &types.InvalidArgument{InvalidProperty: "host"}
	}
	standalone := old.Self.Type == "ComputeResource"
	if !standalone && !host.Runtime.InMaintenanceMode {
		return &types.InvalidState{}
	}

	// VMs follow the host into the cluster's root pool.
	newPool := simulator.Map.Get(*c.ResourcePool).(*simulator.ResourcePool)
	for _, vmRef := range host.Vm {
		vm := simulator.Map.Get(vmRef)
		e, ok := vm.(mo.Entity)
		if !ok {
			continue
		}
		mvm := vmMO(vm)
		if mvm == nil || mvm.ResourcePool == nil {
			continue
		}
		if oldPool, ok := simulator.Map.Get(*mvm.ResourcePool).(*simulator.ResourcePool); ok {
			simulator.Map.WithLock(oldPool, func() {
				vms := removeRef(oldPool.Vm, vmRef)
				simulator.Map.Update(oldPool, []types.PropertyChange{{Name: "vm", Val: vms}})
			})
		}
		simulator.Map.WithLock(newPool, func() {
			if simulator.FindReference(newPool.Vm, vmRef) == nil {
				vms := append(append([]types.ManagedObjectReference(nil), newPool.Vm...), vmRef)
				simulator.Map.Update(newPool, []types.PropertyChange{{Name: "vm", Val: vms}})
			}
		})
		simulator.Map.WithLock(e, func() {
			simulator.Map.Update(e, []types.PropertyChange{{Name: "resourcePool", Val: c.ResourcePool}})
		})
	}

	simulator.Map.WithLock(host, func() {
		simulator.Map.Update(host, []types.PropertyChange{{Name: "parent", Val: &c.Self}})
	})
	simulator.Map.WithLock(c, func() {
		hosts := append(append([]types.ManagedObjectReference(nil), c.Host...), host.Self)
		dss := unionRefs(c.Datastore, host.Datastore)
		nets := unionRefs(c.Network, host.Network)
		s := c.Summary.GetComputeResourceSummary()
		hw := host.Summary.Hardware
		// Same sums as vcsim's addComputeResource.
		s.TotalCpu += hw.CpuMhz
		s.TotalMemory += hw.MemorySize
		s.NumCpuCores += hw.NumCpuCores
		s.NumCpuThreads += hw.NumCpuThreads
		s.EffectiveCpu += hw.CpuMhz
		s.EffectiveMemory += hw.MemorySize
		s.NumHosts++
		s.NumEffectiveHosts++
		s.OverallStatus = types.ManagedEntityStatusGreen
		simulator.Map.Update(c, []types.PropertyChange{
			{Name: "host", Val: hosts},
			{Name: "datastore", Val: dss},
			{Name: "network", Val: nets},
		})
	})

	if standalone {
		removeComputeResource(ctx, old)
	} else {
		leaveComputeResource(old, host)
	}
	return nil
}

// leaveComputeResource drops host from a cluster it left.
func leaveComputeResource(cr *mo.ComputeResource, host *simulator.HostSystem) {
	obj := simulator.Map.Get(cr.Self)
	simulator.Map.WithLock(obj, func() {
		hosts := removeRef(cr.Host, host.Self)
		var dss []types.ManagedObjectReference
		for _, h := range hosts {
			if hs, ok := simulator.Map.Get(h).(*simulator.HostSystem); ok {
				dss = unionRefs(dss, hs.Datastore)
			}
		}
		s := cr.Summary.GetComputeResourceSummary()
		hw := host.Summary.Hardware
		s.TotalCpu -= hw.CpuMhz
		s.TotalMemory -= hw.MemorySize
		s.NumCpuCores -= hw.NumCpuCores
		s.NumCpuThreads -= hw.NumCpuThreads
		s.EffectiveCpu -= hw.CpuMhz
		s.EffectiveMemory -= hw.MemorySize
		s.NumHosts--
		s.NumEffectiveHosts--
		simulator.Map.Update(obj, []types.PropertyChange{{Name: "host", Val: hosts}, {Name: "datastore", Val: dss}})
	})
}

// removeComputeResource deletes a standalone host's ComputeResource and its
// pools, as vCenter does when the host moves into a cluster.
func removeComputeResource(ctx *simulator.Context, cr *mo.ComputeResource) {
	if cr.ResourcePool != nil {
		removePoolTree(*cr.ResourcePool)
	}
	folder, ok := simulator.Map.Get(*cr.Parent).(*simulator.Folder)
	simulator.Map.Remove(cr.Self)
	if !ok {
		return
	}
	simulator.Map.WithLock(folder, func() {
		children := removeRef(folder.ChildEntity, cr.Self)
		simulator.Map.Update(folder, []types.PropertyChange{{Name: "childEntity", Val: children}})
	})
}

func removePoolTree(ref types.ManagedObjectReference) {
	pool, ok := simulator.Map.Get(ref).(*simulator.ResourcePool)
	if !ok {
		return
	}
	for _, child := range pool.ResourcePool.ResourcePool {
		removePoolTree(child)
	}
	simulator.Map.Remove(ref)
}

// computeResource returns the ComputeResource part of a standalone compute
// resource or a cluster.
func computeResource(ref types.ManagedObjectReference) *mo.ComputeResource {
	switch cr := simulator.Map.Get(ref).(type) {
	case *mo.ComputeResource:
		return cr
	case *simulator.ClusterComputeResource:
		return &cr.ComputeResource
	}
	return nil
}

func vmMO(obj mo.Reference) *mo.VirtualMachine {
	switch vm := obj.(type) {
	case *VirtualMachine:
		return &vm.VirtualMachine.VirtualMachine
	case *simulator.VirtualMachine:
		return &vm.VirtualMachine
	}
	return nil
}

// datacenterOf walks up the parents to the datacenter.
func datacenterOf(ref types.ManagedObjectReference) types.ManagedObjectReference {
	for i := 0; i < 64; i++ {
		e, ok := simulator.Map.Get(ref).(mo.Entity)
		if !ok || ref.Type == "Datacenter" {
			return ref
		}
		p := e.Entity().Parent
		if p == nil {
			return ref
		}
		ref = *p
	}
	return ref
}

func removeRef(refs []types.ManagedObjectReference, ref types.ManagedObjectReference) []types.ManagedObjectReference {
	out := make([]types.ManagedObjectReference, 0, len(refs))
	for _, r := range refs {
		if r != ref {
			out = append(out, r)
		}
	}
	return out
}

func unionRefs(a, b []types.ManagedObjectReference) []types.ManagedObjectReference {
	out := append([]types.ManagedObjectReference(nil), a...)
	for _, r := range b {
		if simulator.FindReference(out, r) == nil {
			out = append(out, r)
		}
	}
	return out
}

// deepCopyXML deep-copies a vim25 data object through XML.
func deepCopyXML(src, dst interface{}) error {
	b, err := xml.Marshal(src)
	if err != nil {
		return err
	}
	dec := xml.NewDecoder(bytes.NewReader(b))
	dec.TypeFunc = types.TypeFunc()
	return dec.Decode(dst)
}
