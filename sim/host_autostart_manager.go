package main

import (
	"sort"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostAutoStartManager: vcsim 0.24.2 gives every host the same unregistered
// moref (ha-autostart-mgr). We register one per host and point the host's
// configManager.autoStartManager at it; host.config.autoStart mirrors it.
type HostAutoStartManager struct {
	mo.HostAutoStartManager

	host types.ManagedObjectReference
}

func installAutoStartManager(host *simulator.HostSystem) {
	m := &HostAutoStartManager{host: host.Self}
	m.Self = types.ManagedObjectReference{Type: "HostAutoStartManager", Value: "ha-autostart-mgr-" + host.Self.Value}
	m.Config = types.HostAutoStartManagerConfig{Defaults: &types.AutoStartDefaults{}}
	if d := esx.HostConfigInfo.AutoStart; d != nil && d.Defaults != nil {
		def := *d.Defaults
		m.Config.Defaults = &def
	}
	m.Config.Defaults.Enabled = types.NewBool(false)
	simulator.Map.Put(m)
	simulator.Map.WithLock(host, func() {
		ref := m.Self
		host.ConfigManager.AutoStartManager = &ref
		cfg := m.Config
		host.Config.AutoStart = &cfg
	})
}

func (m *HostAutoStartManager) ReconfigureAutostart(ctx *simulator.Context, req *types.ReconfigureAutostart) soap.HasFault {
	body := &methods.ReconfigureAutostartBody{}
	host, ok := simulator.Map.Get(m.host).(*simulator.HostSystem)
	if !ok {
		body.Fault_ = simulator.Fault("", &types.ManagedObjectNotFound{Obj: m.host})
		return body
	}
	cfg := types.HostAutoStartManagerConfig{PowerInfo: append([]types.AutoStartPowerInfo(nil), m.Config.PowerInfo...)}
	def := *m.Config.Defaults
	cfg.Defaults = &def
	if s := req.Spec.Defaults; s != nil {
		if s.Enabled != nil {
			def.Enabled = s.Enabled
		}
		if s.StartDelay != 0 {
			def.StartDelay = s.StartDelay
		}
		if s.StopDelay != 0 {
			def.StopDelay = s.StopDelay
		}
		if s.WaitForHeartbeat != nil {
			def.WaitForHeartbeat = s.WaitForHeartbeat
		}
		if s.StopAction != "" {
			def.StopAction = s.StopAction
		}
	}
	for _, p := range req.Spec.PowerInfo {
		if simulator.FindReference(host.Vm, p.Key) == nil {
			body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "spec.powerInfo.key"})
			return body
		}
		replaced := false
		for j := range cfg.PowerInfo {
			if cfg.PowerInfo[j].Key == p.Key {
				cfg.PowerInfo[j] = p
				replaced = true
			}
		}
		if !replaced {
			cfg.PowerInfo = append(cfg.PowerInfo, p)
		}
	}
	// ESXi lists ordered VMs by startOrder, then the unordered (-1) ones.
	sort.SliceStable(cfg.PowerInfo, func(i, j int) bool {
		a, b := cfg.PowerInfo[i].StartOrder, cfg.PowerInfo[j].StartOrder
		if a < 0 || b < 0 {
			return a >= 0 && b < 0
		}
		return a < b
	})
	simulator.Map.Update(m, []types.PropertyChange{{Name: "config", Val: cfg}})
	simulator.Map.WithLock(host, func() {
		mirror := cfg
		simulator.Map.Update(host, []types.PropertyChange{{Name: "config.autoStart", Val: &mirror}})
	})
	body.Res = &types.ReconfigureAutostartResponse{}
	return body
}

func (m *HostAutoStartManager) AutoStartPowerOn(ctx *simulator.Context, req *types.AutoStartPowerOn) soap.HasFault {
	return &methods.AutoStartPowerOnBody{Res: &types.AutoStartPowerOnResponse{}}
}

func (m *HostAutoStartManager) AutoStartPowerOff(ctx *simulator.Context, req *types.AutoStartPowerOff) soap.HasFault {
	return &methods.AutoStartPowerOffBody{Res: &types.AutoStartPowerOffResponse{}}
}
