package main

import (
	"crypto/sha256"
	"fmt"
	"net"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostNetworkSystem models a host's standard switches, portgroups and
// vmknics. Its NetworkInfo is the very *types.HostNetworkInfo the host
// publishes as config.network (one source of truth); changes are made
// holding the HostSystem's lock, so property reads see them whole.
//
// AddPortGroup also fixes vcsim 0.24.2 for several standalone hosts: it
// creates a datacenter-wide Network per call (so the 2nd host gets
// DuplicateName) and never lists it in HostSystem.network.
type HostNetworkSystem struct {
	simulator.HostNetworkSystem
}

const labPnics = 4

// installNetworkSystem swaps vcsim's network system for ours and merges its
// NetworkInfo with host.Config.Network: vSwitch0 with uplink vmnic0, the
// host's portgroups, vmk0 and four physical NICs with per-host MACs.
func installNetworkSystem(host *simulator.HostSystem) (*HostNetworkSystem, error) {
	ns := simulator.Map.Get(*host.ConfigManager.NetworkSystem).(*simulator.HostNetworkSystem)
	info := new(types.HostNetworkInfo)
	if err := deepCopyXML(host.Config.Network, info); err != nil {
		return nil, err
	}
	sum := sha256.Sum256([]byte("vsa-sim-mac:" + host.Name))
	var pnics []types.PhysicalNic
	for i := 0; i < labPnics; i++ {
		dev := fmt.Sprintf("vmnic%d", i)
		p := types.PhysicalNic{
			Key:       pnicKey(dev),
			Device:    dev,
			Pci:       fmt.Sprintf("0000:0b:%02x.0", i),
			Driver:    "nvmxnet3",
			LinkSpeed: &types.PhysicalNicLinkInfo{SpeedMb: 10000, Duplex: true},
			Mac:       fmt.Sprintf("00:50:56:%02x:%02x:%02x", sum[0]&0x3f, sum[1], sum[2]+byte(i)),
			Spec:      types.PhysicalNicSpec{LinkSpeed: &types.PhysicalNicLinkInfo{SpeedMb: 10000, Duplex: true}},
		}
		if i < len(info.Pnic) {
			p.Pci, p.Driver = info.Pnic[i].Pci, info.Pnic[i].Driver
		}
		pnics = append(pnics, p)
	}
	info.Pnic = pnics
	for i := range info.Vswitch {
		vs := &info.Vswitch[i]
		if vs.Name != "vSwitch0" {
			continue
		}
		vs.Key = vswitchKey(vs.Name)
		vs.Mtu = 1500
		vs.Pnic = []string{pnicKey("vmnic0")}
		if vs.Spec.Mtu == 0 {
			vs.Spec.Mtu = 1500
		}
		vs.Spec.Bridge = &types.HostVirtualSwitchBondBridge{NicDevice: []string{"vmnic0"}}
		vs.Portgroup = nil
		for _, pg := range info.Portgroup {
			vs.Portgroup = append(vs.Portgroup, pg.Key)
		}
	}
	for i := range info.Vnic {
		v := &info.Vnic[i]
		if v.Key == "" {
			v.Key = vnicKey(v.Device)
		}
		if v.Spec.Mac == "" {
			v.Spec.Mac = vnicMac(host.Name, v.Device)
		}
	}
	wrapped := &HostNetworkSystem{HostNetworkSystem: *ns}
	simulator.Map.WithLock(host, func() {
		host.Config.Network = info
		wrapped.NetworkInfo = info
	})
	replaceObject(ns.Self, wrapped)
	return wrapped, nil
}

func pnicKey(dev string) string     { return "key-vim.host.PhysicalNic-" + dev }
func vswitchKey(name string) string { return "key-vim.host.VirtualSwitch-" + name }
func pgKey(name string) string      { return "key-vim.host.PortGroup-" + name }
func vnicKey(dev string) string     { return "key-vim.host.VirtualNic-" + dev }

func vnicMac(host, dev string) string {
	sum := sha256.Sum256([]byte("vsa-sim-vnic:" + host + "/" + dev))
	return fmt.Sprintf("00:50:56:%02x:%02x:%02x", 0x40|sum[0]&0x3f, sum[1], sum[2])
}

func (s *HostNetworkSystem) hostObj() mo.Reference { return simulator.Map.Get(s.Host.Self) }

// update runs fn on the network info holding the host's lock and, when it
// succeeds, announces the change to property filters (WaitForUpdatesEx).
func (s *HostNetworkSystem) update(fn func(info *types.HostNetworkInfo) types.BaseMethodFault) types.BaseMethodFault {
	var f types.BaseMethodFault
	host := s.hostObj()
	simulator.Map.WithLock(host, func() {
		if f = fn(s.NetworkInfo); f == nil {
			simulator.Map.Update(host, []types.PropertyChange{{Name: "config.network", Val: s.NetworkInfo}})
		}
	})
	if f == nil {
		simulator.Map.Update(s, []types.PropertyChange{{Name: "networkInfo", Val: s.NetworkInfo}})
	}
	return f
}

func findVswitch(info *types.HostNetworkInfo, name string) *types.HostVirtualSwitch {
	for i := range info.Vswitch {
		if info.Vswitch[i].Name == name {
			return &info.Vswitch[i]
		}
	}
	return nil
}

func findPortgroup(info *types.HostNetworkInfo, name string) *types.HostPortGroup {
	for i := range info.Portgroup {
		if info.Portgroup[i].Spec.Name == name {
			return &info.Portgroup[i]
		}
	}
	return nil
}

func findVnic(info *types.HostNetworkInfo, dev string) *types.HostVirtualNic {
	for i := range info.Vnic {
		if info.Vnic[i].Device == dev {
			return &info.Vnic[i]
		}
	}
	return nil
}

// checkVswitchSpec validates mtu and uplinks; it returns the uplink
// devices of spec.bridge.
func checkVswitchSpec(info *types.HostNetworkInfo, name string, spec types.HostVirtualSwitchSpec) ([]string, types.BaseMethodFault) {
	if spec.Mtu != 0 && (spec.Mtu < 1280 || spec.Mtu > 9000) {
		return nil, &types.InvalidArgument{InvalidProperty: "spec.mtu"}
	}
	var nics []string
	switch b := spec.Bridge.(type) {
	case nil:
	case *types.HostVirtualSwitchBondBridge:
		nics = b.NicDevice
	case *types.HostVirtualSwitchSimpleBridge:
		nics = []string{b.NicDevice}
	default:
		return nil, &types.InvalidArgument{InvalidProperty: "spec.bridge"}
	}
	for _, dev := range nics {
		found := false
		for _, p := range info.Pnic {
			found = found || p.Device == dev
		}
		if !found {
			return nil, &types.NotFound{}
		}
		for _, vs := range info.Vswitch {
			if vs.Name == name {
				continue
			}
			for _, k := range vs.Pnic {
				if k == pnicKey(dev) {
					return nil, &types.ResourceInUse{Type: "PhysicalNic", Name: dev}
				}
			}
		}
	}
	return nics, nil
}

func applyVswitchSpec(vs *types.HostVirtualSwitch, spec types.HostVirtualSwitchSpec, nics []string) {
	if spec.NumPorts == 0 {
		spec.NumPorts = 128
		if vs.Spec.NumPorts != 0 {
			spec.NumPorts = vs.Spec.NumPorts
		}
	}
	if spec.Mtu == 0 {
		spec.Mtu = 1500
	}
	vs.Spec = spec
	vs.NumPorts = spec.NumPorts
	vs.NumPortsAvailable = spec.NumPorts
	vs.Mtu = spec.Mtu
	vs.Pnic = nil
	for _, dev := range nics {
		vs.Pnic = append(vs.Pnic, pnicKey(dev))
	}
}

func (s *HostNetworkSystem) AddVirtualSwitch(ctx *simulator.Context, req *types.AddVirtualSwitch) soap.HasFault {
	body := &methods.AddVirtualSwitchBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		if req.VswitchName == "" {
			return &types.InvalidArgument{InvalidProperty: "vswitchName"}
		}
		if findVswitch(info, req.VswitchName) != nil {
			return &types.AlreadyExists{Name: req.VswitchName}
		}
		var spec types.HostVirtualSwitchSpec
		if req.Spec != nil {
			spec = *req.Spec
		}
		nics, f := checkVswitchSpec(info, req.VswitchName, spec)
		if f != nil {
			return f
		}
		vs := types.HostVirtualSwitch{Name: req.VswitchName, Key: vswitchKey(req.VswitchName)}
		applyVswitchSpec(&vs, spec, nics)
		info.Vswitch = append(info.Vswitch, vs)
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.AddVirtualSwitchResponse{}
	return body
}

func (s *HostNetworkSystem) UpdateVirtualSwitch(ctx *simulator.Context, req *types.UpdateVirtualSwitch) soap.HasFault {
	body := &methods.UpdateVirtualSwitchBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		vs := findVswitch(info, req.VswitchName)
		if vs == nil {
			return &types.NotFound{}
		}
		nics, f := checkVswitchSpec(info, req.VswitchName, req.Spec)
		if f != nil {
			return f
		}
		applyVswitchSpec(vs, req.Spec, nics)
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.UpdateVirtualSwitchResponse{}
	return body
}

func (s *HostNetworkSystem) RemoveVirtualSwitch(ctx *simulator.Context, req *types.RemoveVirtualSwitch) soap.HasFault {
	body := &methods.RemoveVirtualSwitchBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		for i, vs := range info.Vswitch {
			if vs.Name != req.VswitchName {
				continue
			}
			if len(vs.Portgroup) > 0 {
				return &types.ResourceInUse{Type: "VirtualSwitch", Name: vs.Name}
			}
			info.Vswitch = append(info.Vswitch[:i:i], info.Vswitch[i+1:]...)
			return nil
		}
		return &types.NotFound{}
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.RemoveVirtualSwitchResponse{}
	return body
}

func checkVlan(v int32) types.BaseMethodFault {
	if v < 0 || v > 4095 {
		return &types.InvalidArgument{InvalidProperty: "portgrp.vlanId"}
	}
	return nil
}

func (s *HostNetworkSystem) AddPortGroup(ctx *simulator.Context, req *types.AddPortGroup) soap.HasFault {
	body := &methods.AddPortGroupBody{}
	var f types.BaseMethodFault
	switch {
	case req.Portgrp.Name == "":
		f = &types.InvalidArgument{InvalidProperty: "portgrp.name"}
	case findPortgroup(s.NetworkInfo, req.Portgrp.Name) != nil:
		f = &types.AlreadyExists{Name: req.Portgrp.Name}
	case findVswitch(s.NetworkInfo, req.Portgrp.VswitchName) == nil:
		f = &types.NotFound{}
	default:
		f = checkVlan(req.Portgrp.VlanId)
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}

	net := s.datacenterNetwork(req.Portgrp.Name)
	if net == nil {
		// First host with this portgroup: vcsim creates the Network (and
		// lists the portgroup; fixed up below).
		var res soap.HasFault
		simulator.Map.WithLock(s.hostObj(), func() { res = s.HostNetworkSystem.AddPortGroup(ctx, req) })
		if res.Fault() != nil {
			return res
		}
		net = s.datacenterNetwork(req.Portgrp.Name)
	}
	s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		vs := findVswitch(info, req.Portgrp.VswitchName)
		var keep []string
		for _, k := range vs.Portgroup {
			if k != req.Portgrp.Name && k != pgKey(req.Portgrp.Name) {
				keep = append(keep, k)
			}
		}
		vs.Portgroup = append(keep, pgKey(req.Portgrp.Name))
		pg := types.HostPortGroup{Key: pgKey(req.Portgrp.Name), Vswitch: vs.Key, Spec: req.Portgrp}
		if p := findPortgroup(info, req.Portgrp.Name); p != nil {
			*p = pg
		} else {
			info.Portgroup = append(info.Portgroup, pg)
		}
		return nil
	})
	if net != nil {
		s.linkNetwork(net)
	}
	body.Res = &types.AddPortGroupResponse{}
	return body
}

func (s *HostNetworkSystem) UpdatePortGroup(ctx *simulator.Context, req *types.UpdatePortGroup) soap.HasFault {
	body := &methods.UpdatePortGroupBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		pg := findPortgroup(info, req.PgName)
		if pg == nil {
			return &types.NotFound{}
		}
		if f := checkVlan(req.Portgrp.VlanId); f != nil {
			return f
		}
		spec := req.Portgrp
		if spec.Name == "" {
			spec.Name = req.PgName
		}
		if spec.Name != req.PgName {
			return &types.NotSupported{} // renaming is not modelled
		}
		if spec.VswitchName == "" {
			spec.VswitchName = pg.Spec.VswitchName
		}
		if spec.VswitchName != pg.Spec.VswitchName {
			to := findVswitch(info, spec.VswitchName)
			if to == nil {
				return &types.NotFound{}
			}
			if from := findVswitch(info, pg.Spec.VswitchName); from != nil {
				from.Portgroup = removeString(from.Portgroup, pg.Key)
			}
			to.Portgroup = append(to.Portgroup, pg.Key)
			pg.Vswitch = to.Key
		}
		pg.Spec = spec
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.UpdatePortGroupResponse{}
	return body
}

func removeString(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// checkIP validates a vmknic's IP config; the address must not be used by
// another vmknic of this host.
func checkIP(info *types.HostNetworkInfo, ip *types.HostIpConfig, self string) types.BaseMethodFault {
	if ip == nil || ip.Dhcp || ip.IpAddress == "" {
		return nil
	}
	if net.ParseIP(ip.IpAddress).To4() == nil {
		return &types.InvalidArgument{InvalidProperty: "nic.ip.ipAddress"}
	}
	if ip.SubnetMask != "" && net.ParseIP(ip.SubnetMask).To4() == nil {
		return &types.InvalidArgument{InvalidProperty: "nic.ip.subnetMask"}
	}
	for _, v := range info.Vnic {
		if v.Device != self && v.Spec.Ip != nil && !v.Spec.Ip.Dhcp && v.Spec.Ip.IpAddress == ip.IpAddress {
			return &types.AlreadyExists{Name: ip.IpAddress}
		}
	}
	return nil
}

func (s *HostNetworkSystem) AddVirtualNic(ctx *simulator.Context, req *types.AddVirtualNic) soap.HasFault {
	body := &methods.AddVirtualNicBody{}
	var dev string
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		pg := findPortgroup(info, req.Portgroup)
		if pg == nil {
			return &types.NotFound{}
		}
		for _, v := range info.Vnic {
			if v.Portgroup == req.Portgroup {
				return &types.AlreadyExists{Name: req.Portgroup}
			}
		}
		if f := checkIP(info, req.Nic.Ip, ""); f != nil {
			return f
		}
		for n := 0; ; n++ {
			dev = fmt.Sprintf("vmk%d", n)
			if findVnic(info, dev) == nil {
				break
			}
		}
		spec := req.Nic
		if spec.Ip == nil {
			spec.Ip = &types.HostIpConfig{Dhcp: true}
		}
		if spec.Mtu == 0 {
			spec.Mtu = 1500
		}
		if spec.Mac == "" {
			spec.Mac = vnicMac(s.Host.Name, dev)
		}
		spec.Portgroup = req.Portgroup
		info.Vnic = append(info.Vnic, types.HostVirtualNic{
			Device:    dev,
			Key:       vnicKey(dev),
			Portgroup: req.Portgroup,
			Spec:      spec,
			Port:      "key-vim.host.PortGroup.Port-" + dev,
		})
		pg.Port = append(pg.Port, types.HostPortGroupPort{Key: "key-vim.host.PortGroup.Port-" + dev, Mac: []string{spec.Mac}, Type: "host"})
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.AddVirtualNicResponse{Returnval: dev}
	return body
}

func (s *HostNetworkSystem) UpdateVirtualNic(ctx *simulator.Context, req *types.UpdateVirtualNic) soap.HasFault {
	body := &methods.UpdateVirtualNicBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		v := findVnic(info, req.Device)
		if v == nil {
			return &types.NotFound{}
		}
		if req.Nic.Mtu != 0 && (req.Nic.Mtu < 1280 || req.Nic.Mtu > 9000) {
			return &types.InvalidArgument{InvalidProperty: "nic.mtu"}
		}
		if f := checkIP(info, req.Nic.Ip, v.Device); f != nil {
			return f
		}
		if req.Nic.Ip != nil {
			ip := *req.Nic.Ip
			v.Spec.Ip = &ip
		}
		if req.Nic.Mtu != 0 {
			v.Spec.Mtu = req.Nic.Mtu
		}
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	body.Res = &types.UpdateVirtualNicResponse{}
	return body
}

func (s *HostNetworkSystem) RemoveVirtualNic(ctx *simulator.Context, req *types.RemoveVirtualNic) soap.HasFault {
	body := &methods.RemoveVirtualNicBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		for i, v := range info.Vnic {
			if v.Device != req.Device {
				continue
			}
			if pg := findPortgroup(info, v.Portgroup); pg != nil {
				var ports []types.HostPortGroupPort
				for _, p := range pg.Port {
					if p.Key != v.Port {
						ports = append(ports, p)
					}
				}
				pg.Port = ports
			}
			info.Vnic = append(info.Vnic[:i:i], info.Vnic[i+1:]...)
			return nil
		}
		return &types.NotFound{}
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	// Not under the host's lock: storage.mu is taken before host locks.
	unbindVnicEverywhere(s.Host.Self, req.Device)
	body.Res = &types.RemoveVirtualNicResponse{}
	return body
}

// vnicPort describes a vmknic for iSCSI port binding; ok is false when the
// host has no such vmknic.
func vnicPort(host types.ManagedObjectReference, dev string) (types.IscsiPortInfo, int, bool) {
	var out types.IscsiPortInfo
	var uplinks int
	ok := false
	hs, _ := simulator.Map.Get(host).(*simulator.HostSystem)
	if hs == nil {
		return out, 0, false
	}
	simulator.Map.WithLock(hs, func() {
		info := hs.Config.Network
		v := findVnic(info, dev)
		if v == nil {
			return
		}
		ok = true
		vnic := *v
		out.VnicDevice = dev
		out.Vnic = &vnic
		out.PortgroupName = v.Portgroup
		out.PortgroupKey = pgKey(v.Portgroup)
		out.PortKey = v.Port
		pg := findPortgroup(info, v.Portgroup)
		if pg == nil {
			return
		}
		vs := findVswitch(info, pg.Spec.VswitchName)
		if vs == nil {
			return
		}
		out.SwitchName = vs.Name
		uplinks = len(vs.Pnic)
		if len(vs.Pnic) > 0 {
			dev := strings.TrimPrefix(vs.Pnic[0], "key-vim.host.PhysicalNic-")
			if t := pg.Spec.Policy.NicTeaming; t != nil && t.NicOrder != nil && len(t.NicOrder.ActiveNic) == 1 {
				dev = t.NicOrder.ActiveNic[0]
				uplinks = 1
			}
			out.PnicDevice = dev
			for _, p := range info.Pnic {
				if p.Device == dev {
					pn := p
					out.Pnic = &pn
				}
			}
		}
	})
	return out, uplinks, ok
}

func (s *HostNetworkSystem) datacenterNetwork(name string) *mo.Network {
	for _, e := range simulator.Map.All("Network") {
		if n, ok := e.(*mo.Network); ok && n.Name == name {
			return n
		}
	}
	return nil
}

// linkNetwork lists net in host.network, the host's compute resource and
// net.host, as vCenter does for a standard portgroup.
func (s *HostNetworkSystem) linkNetwork(net *mo.Network) {
	host := simulator.Map.Get(s.Host.Self)
	if simulator.FindReference(s.Host.Network, net.Self) == nil {
		nets := append(append([]types.ManagedObjectReference(nil), s.Host.Network...), net.Self)
		simulator.Map.Update(host, []types.PropertyChange{{Name: "network", Val: nets}})
	}
	if cr := computeResource(*s.Host.Parent); cr != nil && simulator.FindReference(cr.Network, net.Self) == nil {
		nets := append(append([]types.ManagedObjectReference(nil), cr.Network...), net.Self)
		simulator.Map.Update(simulator.Map.Get(cr.Self), []types.PropertyChange{{Name: "network", Val: nets}})
	}
	if simulator.FindReference(net.Host, s.Host.Self) == nil {
		hosts := append(append([]types.ManagedObjectReference(nil), net.Host...), s.Host.Self)
		simulator.Map.Update(net, []types.PropertyChange{{Name: "host", Val: hosts}})
	}
}

// RemovePortGroup drops a standard portgroup from this host (vcsim's looks
// names up in vswitch.portgroup, which lists keys, and deletes the
// datacenter Network other hosts still use). ResourceInUse while a vmknic
// is on it, as on ESXi.
func (s *HostNetworkSystem) RemovePortGroup(ctx *simulator.Context, req *types.RemovePortGroup) soap.HasFault {
	body := &methods.RemovePortGroupBody{}
	f := s.update(func(info *types.HostNetworkInfo) types.BaseMethodFault {
		pg := findPortgroup(info, req.PgName)
		if pg == nil {
			return &types.NotFound{}
		}
		for _, v := range info.Vnic {
			if v.Portgroup == req.PgName {
				return &types.ResourceInUse{Type: "HostPortGroup", Name: req.PgName}
			}
		}
		for i := range info.Vswitch {
			info.Vswitch[i].Portgroup = removeString(info.Vswitch[i].Portgroup, pg.Key)
		}
		var keep []types.HostPortGroup
		for _, p := range info.Portgroup {
			if p.Spec.Name != req.PgName {
				keep = append(keep, p)
			}
		}
		info.Portgroup = keep
		return nil
	})
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	if net := s.datacenterNetwork(req.PgName); net != nil {
		host := simulator.Map.Get(s.Host.Self)
		simulator.Map.WithLock(host, func() {
			simulator.Map.Update(host, []types.PropertyChange{{Name: "network", Val: removeRef(s.Host.Network, net.Self)}})
		})
		simulator.Map.Update(net, []types.PropertyChange{{Name: "host", Val: removeRef(net.Host, s.Host.Self)}})
	}
	body.Res = &types.RemovePortGroupResponse{}
	return body
}
