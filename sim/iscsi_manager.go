package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// IscsiManager (HostSystem.configManager.iscsiManager; vcsim 0.24.2 has
// none) binds vmknics to the software iSCSI adapter. Bindings live in the
// host's storage state (iscsi.go), guarded by storage.mu, which is also
// this object's lock; they are dropped when software iSCSI is disabled or
// the vmknic is removed.
type IscsiManager struct {
	mo.IscsiManager
	host types.ManagedObjectReference
}

func (m *IscsiManager) Lock()   { storage.mu.Lock() }
func (m *IscsiManager) Unlock() { storage.mu.Unlock() }

// installIscsiManager registers an IscsiManager for host and lists it in
// host.configManager.
func installIscsiManager(host *simulator.HostSystem) {
	m := &IscsiManager{host: host.Self}
	m.Self = types.ManagedObjectReference{Type: "IscsiManager", Value: "iscsiManager-" + host.Self.Value}
	replaceObject(m.Self, m)
	ref := m.Self
	simulator.Map.WithLock(host, func() {
		cm := host.ConfigManager
		cm.IscsiManager = &ref
		simulator.Map.Update(host, []types.PropertyChange{{Name: "configManager", Val: cm}})
	})
}

func (m *IscsiManager) hba(name string) (*hostStorage, types.BaseMethodFault) {
	h := storage.hosts[m.host]
	if h == nil || !h.enabled || name != swIscsiDevice {
		return nil, &types.NotFound{}
	}
	return h, nil
}

func (m *IscsiManager) BindVnic(ctx *simulator.Context, req *types.BindVnic) soap.HasFault {
	body := &methods.BindVnicBody{}
	h, f := m.hba(req.IScsiHbaName)
	if f == nil {
		port, uplinks, ok := vnicPort(m.host, req.VnicDevice)
		iscsi := types.IscsiFault{}
		switch {
		case !ok:
			f = &types.IscsiFaultVnicNotFound{IscsiFault: iscsi, VnicDevice: req.VnicDevice}
		case h.bound(req.VnicDevice):
			f = &types.IscsiFaultVnicAlreadyBound{IscsiFault: iscsi, VnicDevice: req.VnicDevice}
		case port.SwitchName == "" || uplinks == 0:
			f = &types.IscsiFaultVnicHasNoUplinks{IscsiFault: iscsi, VnicDevice: req.VnicDevice}
		}
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	h.boundVnics = append(h.boundVnics, req.VnicDevice)
	body.Res = &types.BindVnicResponse{}
	return body
}

func (m *IscsiManager) UnbindVnic(ctx *simulator.Context, req *types.UnbindVnic) soap.HasFault {
	body := &methods.UnbindVnicBody{}
	h, f := m.hba(req.IScsiHbaName)
	if f == nil && !h.bound(req.VnicDevice) {
		f = &types.IscsiFaultVnicNotBound{VnicDevice: req.VnicDevice}
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	h.boundVnics = removeString(h.boundVnics, req.VnicDevice)
	body.Res = &types.UnbindVnicResponse{}
	return body
}

func (m *IscsiManager) QueryBoundVnics(ctx *simulator.Context, req *types.QueryBoundVnics) soap.HasFault {
	body := &methods.QueryBoundVnicsBody{}
	h, f := m.hba(req.IScsiHbaName)
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	var out []types.IscsiPortInfo
	for _, dev := range h.boundVnics {
		p, uplinks, ok := vnicPort(m.host, dev)
		if !ok {
			continue
		}
		status := "compliant"
		if uplinks != 1 {
			status = "nonCompliant"
		}
		p.ComplianceStatus = &types.IscsiStatus{Reason: []types.LocalizedMethodFault{}}
		if status != "compliant" {
			p.ComplianceStatus.Reason = append(p.ComplianceStatus.Reason, types.LocalizedMethodFault{
				Fault:            &types.IscsiFaultVnicHasMultipleUplinks{VnicDevice: dev},
				LocalizedMessage: "vmknic " + dev + " has more than one active uplink",
			})
		}
		p.PathStatus = string(types.IscsiPortInfoPathStatusNotUsed)
		if len(h.paths) > 0 {
			p.PathStatus = string(types.IscsiPortInfoPathStatusActive)
		}
		out = append(out, p)
	}
	body.Res = &types.QueryBoundVnicsResponse{Returnval: out}
	return body
}

func (h *hostStorage) bound(dev string) bool {
	for _, d := range h.boundVnics {
		if d == dev {
			return true
		}
	}
	return false
}

// unbindVnicEverywhere drops a removed vmknic's binding.
func unbindVnicEverywhere(host types.ManagedObjectReference, dev string) {
	storage.mu.Lock()
	defer storage.mu.Unlock()
	if h := storage.hosts[host]; h != nil {
		h.boundVnics = removeString(h.boundVnics, dev)
	}
}
