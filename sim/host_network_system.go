package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostNetworkSystem fixes AddPortGroup for several standalone hosts: vcsim
// 0.24.2 creates a datacenter-wide Network per call (so the 2nd host gets
// DuplicateName) and never lists it in HostSystem.network.
type HostNetworkSystem struct {
	simulator.HostNetworkSystem
}

func (s *HostNetworkSystem) AddPortGroup(ctx *simulator.Context, req *types.AddPortGroup) soap.HasFault {
	body := &methods.AddPortGroupBody{}
	for _, pg := range s.NetworkInfo.Portgroup {
		if pg.Spec.Name == req.Portgrp.Name {
			body.Fault_ = simulator.Fault("", &types.AlreadyExists{Name: req.Portgrp.Name})
			return body
		}
	}

	net := s.datacenterNetwork(req.Portgrp.Name)
	if net == nil {
		// First host with this portgroup: vcsim creates the Network.
		res := s.HostNetworkSystem.AddPortGroup(ctx, req)
		if res.Fault() != nil {
			return res
		}
		net = s.datacenterNetwork(req.Portgrp.Name)
	} else {
		var vswitch *types.HostVirtualSwitch
		for i := range s.NetworkInfo.Vswitch {
			if s.NetworkInfo.Vswitch[i].Name == req.Portgrp.VswitchName {
				vswitch = &s.NetworkInfo.Vswitch[i]
			}
		}
		if vswitch == nil {
			body.Fault_ = simulator.Fault("", &types.NotFound{})
			return body
		}
		vswitch.Portgroup = append(vswitch.Portgroup, req.Portgrp.Name)
		s.NetworkInfo.Portgroup = append(s.NetworkInfo.Portgroup, types.HostPortGroup{
			Key:  "key-vim.host.PortGroup-" + req.Portgrp.Name,
			Spec: req.Portgrp,
		})
	}
	if net != nil {
		s.linkNetwork(net)
	}
	body.Res = &types.AddPortGroupResponse{}
	return body
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
	if cr, ok := simulator.Map.Get(*s.Host.Parent).(*mo.ComputeResource); ok && simulator.FindReference(cr.Network, net.Self) == nil {
		nets := append(append([]types.ManagedObjectReference(nil), cr.Network...), net.Self)
		simulator.Map.Update(cr, []types.PropertyChange{{Name: "network", Val: nets}})
	}
	if simulator.FindReference(net.Host, s.Host.Self) == nil {
		hosts := append(append([]types.ManagedObjectReference(nil), net.Host...), s.Host.Self)
		simulator.Map.Update(net, []types.PropertyChange{{Name: "host", Val: hosts}})
	}
}
