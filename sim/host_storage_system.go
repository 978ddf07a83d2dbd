package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostStorageSystem gives each host its own storage devices and a software
// iSCSI adapter driven by the portal model (iscsi.go). Its lock is
// storage.mu (see Lock), so methods here run holding it.
type HostStorageSystem struct {
	simulator.HostStorageSystem
}

func (s *HostStorageSystem) Lock()   { storage.mu.Lock() }
func (s *HostStorageSystem) Unlock() { storage.mu.Unlock() }

func (s *HostStorageSystem) state() *hostStorage { return storage.hosts[s.Host.Self] }

func fault(f types.BaseMethodFault) *soap.Fault { return simulator.Fault("", f) }

// iscsiHba checks that device names the enabled software adapter.
func (s *HostStorageSystem) iscsiHba(device string) (*hostStorage, types.BaseMethodFault) {
	h := s.state()
	if h == nil || !h.enabled || device != swIscsiDevice {
		return nil, &types.NotFound{}
	}
	return h, nil
}

func (s *HostStorageSystem) UpdateSoftwareInternetScsiEnabled(ctx *simulator.Context, req *types.UpdateSoftwareInternetScsiEnabled) soap.HasFault {
	h := s.state()
	if h.enabled != req.Enabled {
		h.enabled = req.Enabled
		if !h.enabled {
			h.boundVnics = nil // the adapter and its port bindings go away
		}
		// Disabling drops the adapter's sessions; configuration (send
		// targets, CHAP, options) is kept for when it comes back.
		h.rescanIscsi()
		h.publishHostVolumes()
	}
	return &methods.UpdateSoftwareInternetScsiEnabledBody{Res: &types.UpdateSoftwareInternetScsiEnabledResponse{}}
}

func (s *HostStorageSystem) AddInternetScsiSendTargets(ctx *simulator.Context, req *types.AddInternetScsiSendTargets) soap.HasFault {
	body := &methods.AddInternetScsiSendTargetsBody{}
	h, f := s.iscsiHba(req.IScsiHbaDevice)
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	for _, t := range req.Targets {
		if t.Address == "" {
			body.Fault_ = fault(&types.InvalidArgument{InvalidProperty: "targets.address"})
			return body
		}
	}
	for _, t := range req.Targets {
		port := t.Port
		if port == 0 {
			port = 3260
		}
		if h.sendTarget(t.Address, port) != nil {
			continue // ESXi ignores a target it already has
		}
		st := &sendTarget{address: t.Address, port: port, adv: map[string]types.AnyType{}}
		if a := t.AuthenticationProperties; a != nil && (a.ChapInherited == nil || !*a.ChapInherited) {
			auth := *a
			st.auth = &auth
		}
		h.targets = append(h.targets, st)
	}
	h.publishHost()
	body.Res = &types.AddInternetScsiSendTargetsResponse{}
	return body
}

func (s *HostStorageSystem) RemoveInternetScsiSendTargets(ctx *simulator.Context, req *types.RemoveInternetScsiSendTargets) soap.HasFault {
	body := &methods.RemoveInternetScsiSendTargetsBody{}
	h, f := s.iscsiHba(req.IScsiHbaDevice)
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	for _, t := range req.Targets {
		port := t.Port
		if port == 0 {
			port = 3260
		}
		if h.sendTarget(t.Address, port) == nil {
			body.Fault_ = fault(&types.NotFound{})
			return body
		}
	}
	for _, t := range req.Targets {
		port := t.Port
		if port == 0 {
			port = 3260
		}
		var keep []*sendTarget
		for _, st := range h.targets {
			if st.address != t.Address || st.port != port {
				keep = append(keep, st)
			}
		}
		h.targets = keep
	}
	// Discovered targets stay until the next rescan, as on ESXi.
	h.publishHost()
	body.Res = &types.RemoveInternetScsiSendTargetsResponse{}
	return body
}

// targets resolves a targetSet to our send targets; static targets are not
// modelled.
func (h *hostStorage) targetSet(set *types.HostInternetScsiHbaTargetSet) ([]*sendTarget, types.BaseMethodFault) {
	if len(set.StaticTargets) > 0 {
		return nil, &types.NotSupported{}
	}
	var out []*sendTarget
	for _, t := range set.SendTargets {
		port := t.Port
		if port == 0 {
			port = 3260
		}
		st := h.sendTarget(t.Address, port)
		if st == nil {
			return nil, &types.NotFound{}
		}
		out = append(out, st)
	}
	return out, nil
}

// mergeAuth applies new CHAP settings over old. ESXi never returns secrets,
// so a client that does not resend one keeps the stored secret unless CHAP
// is being switched off.
func mergeAuth(old *types.HostInternetScsiHbaAuthenticationProperties, n types.HostInternetScsiHbaAuthenticationProperties) types.HostInternetScsiHbaAuthenticationProperties {
	prohibited := string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited)
	if n.ChapAuthenticationType == "" {
		if n.ChapAuthEnabled {
			n.ChapAuthenticationType = string(types.HostInternetScsiHbaChapAuthenticationTypeChapPreferred)
		} else {
			n.ChapAuthenticationType = prohibited
		}
	}
	if n.MutualChapAuthenticationType == "" {
		n.MutualChapAuthenticationType = prohibited
	}
	if old != nil {
		if n.ChapSecret == "" && n.ChapAuthenticationType != prohibited {
			n.ChapSecret = old.ChapSecret
		}
		if n.MutualChapSecret == "" && n.MutualChapAuthenticationType != prohibited {
			n.MutualChapSecret = old.MutualChapSecret
		}
	}
	if n.ChapAuthenticationType == prohibited {
		n.ChapName, n.ChapSecret = "", ""
	}
	if n.MutualChapAuthenticationType == prohibited {
		n.MutualChapName, n.MutualChapSecret = "", ""
	}
	n.ChapAuthEnabled = n.ChapAuthenticationType != prohibited
	n.ChapInherited = nil
	n.MutualChapInherited = nil
	return n
}

func (s *HostStorageSystem) UpdateInternetScsiAuthenticationProperties(ctx *simulator.Context, req *types.UpdateInternetScsiAuthenticationProperties) soap.HasFault {
	body := &methods.UpdateInternetScsiAuthenticationPropertiesBody{}
	h, f := s.iscsiHba(req.IScsiHbaDevice)
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	a := req.AuthenticationProperties
	if req.TargetSet == nil {
		h.auth = mergeAuth(&h.auth, a)
	} else {
		targets, f := h.targetSet(req.TargetSet)
		if f != nil {
			body.Fault_ = fault(f)
			return body
		}
		for _, st := range targets {
			if a.ChapInherited != nil && *a.ChapInherited {
				st.auth = nil // back to the adapter's settings
				continue
			}
			n := mergeAuth(st.auth, a)
			st.auth = &n
		}
	}
	h.publishHost()
	body.Res = &types.UpdateInternetScsiAuthenticationPropertiesResponse{}
	return body
}

func (s *HostStorageSystem) UpdateInternetScsiAdvancedOptions(ctx *simulator.Context, req *types.UpdateInternetScsiAdvancedOptions) soap.HasFault {
	body := &methods.UpdateInternetScsiAdvancedOptionsBody{}
	h, f := s.iscsiHba(req.IScsiHbaDevice)
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	dests := []map[string]types.AnyType{h.adv}
	if req.TargetSet != nil {
		targets, f := h.targetSet(req.TargetSet)
		if f != nil {
			body.Fault_ = fault(f)
			return body
		}
		dests = nil
		for _, st := range targets {
			dests = append(dests, st.adv)
		}
	}
	type change struct {
		key   string
		value types.AnyType
		reset bool
	}
	var changes []change
	for _, o := range req.Options {
		p := findAdvParam(o.Key)
		if p == nil {
			body.Fault_ = fault(&types.InvalidArgument{InvalidProperty: o.Key})
			return body
		}
		if o.IsInherited != nil && *o.IsInherited {
			changes = append(changes, change{key: o.Key, reset: true})
			continue
		}
		v, ok := p.normalize(o.Value)
		if !ok {
			body.Fault_ = fault(&types.InvalidArgument{InvalidProperty: o.Key})
			return body
		}
		changes = append(changes, change{key: o.Key, value: v})
	}
	for _, d := range dests {
		for _, c := range changes {
			if c.reset {
				delete(d, c.key)
			} else {
				d[c.key] = c.value
			}
		}
	}
	h.publishHost()
	body.Res = &types.UpdateInternetScsiAdvancedOptionsResponse{}
	return body
}

func (s *HostStorageSystem) RescanHba(ctx *simulator.Context, req *types.RescanHba) soap.HasFault {
	body := &methods.RescanHbaBody{}
	h := s.state()
	if req.HbaDevice == swIscsiDevice && h.enabled {
		h.rescanIscsi()
		h.publishHostVolumes()
		body.Res = &types.RescanHbaResponse{}
		return body
	}
	for _, hba := range h.base.HostBusAdapter {
		if hba.GetHostHostBusAdapter().Device == req.HbaDevice {
			body.Res = &types.RescanHbaResponse{}
			return body
		}
	}
	body.Fault_ = fault(&types.NotFound{})
	return body
}

// RescanAllHba rescans the iSCSI adapter (vcsim's version swaps in a
// Fibre Channel adapter list instead).
func (s *HostStorageSystem) RescanAllHba(ctx *simulator.Context, req *types.RescanAllHba) soap.HasFault {
	h := s.state()
	h.rescanIscsi()
	h.publishHostVolumes()
	return &methods.RescanAllHbaBody{Res: &types.RescanAllHbaResponse{}}
}

// RescanVmfs mounts the VMFS volumes found on the LUNs this host sees:
// the same Datastore object other hosts already mount. Volumes the user
// unmounted here stay unmounted. Snapshot volumes (signature naming another
// device, see unresolved_vmfs.go) are not mounted.
func (s *HostStorageSystem) RescanVmfs(ctx *simulator.Context, req *types.RescanVmfs) soap.HasFault {
	body := &methods.RescanVmfsBody{}
	h := s.state()
	for _, p := range h.paths {
		l := storage.luns[p.naa]
		if l == nil || l.volume == nil || l.unresolved() {
			continue
		}
		v := l.volume
		if _, known := v.mounts[h.ref]; !known {
			v.mounts[h.ref] = true
		}
		if f := v.ensureDatastore(ctx, h); f != nil {
			body.Fault_ = fault(f)
			return body
		}
	}
	h.publishHostVolumes()
	for _, v := range storage.volumes {
		if _, ok := v.mounts[h.ref]; ok {
			publishVolume(v)
		}
	}
	body.Res = &types.RescanVmfsResponse{}
	return body
}

func (s *HostStorageSystem) volume(uuid string) (*hostStorage, *vmfsVolume, types.BaseMethodFault) {
	h := s.state()
	v, ok := storage.volumes[uuid]
	if !ok {
		return h, nil, &types.NotFound{}
	}
	return h, v, nil
}

func (s *HostStorageSystem) UnmountVmfsVolume(ctx *simulator.Context, req *types.UnmountVmfsVolume) soap.HasFault {
	body := &methods.UnmountVmfsVolumeBody{}
	h, v, f := s.volume(req.VmfsUuid)
	if f == nil && !v.mounts[h.ref] {
		f = &types.InvalidState{} // not mounted here
	}
	if f == nil && v.ds != nil {
		if ds, ok := simulator.Map.Get(*v.ds).(*simulator.Datastore); ok {
			for _, vmRef := range ds.Vm {
				if vm := vmMO(simulator.Map.Get(vmRef)); vm != nil && vm.Runtime.Host != nil && *vm.Runtime.Host == h.ref {
					f = &types.ResourceInUse{Type: "Datastore", Name: v.name}
				}
			}
		}
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	v.mounts[h.ref] = false
	publishVolume(v)
	body.Res = &types.UnmountVmfsVolumeResponse{}
	return body
}

func (s *HostStorageSystem) MountVmfsVolume(ctx *simulator.Context, req *types.MountVmfsVolume) soap.HasFault {
	body := &methods.MountVmfsVolumeBody{}
	h, v, f := s.volume(req.VmfsUuid)
	if f == nil && !h.sees(v.naa) {
		f = &types.NotFound{} // no path to the LUN
	}
	if f == nil && v.mounts[h.ref] {
		f = &types.InvalidState{} // already mounted
	}
	if f == nil {
		v.mounts[h.ref] = true
		f = v.ensureDatastore(ctx, h)
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	publishVolume(v)
	body.Res = &types.MountVmfsVolumeResponse{}
	return body
}
