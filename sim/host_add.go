package main

import (
	"context"
	"crypto/sha1"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// The spare host: reachable, with a fixed certificate, but not in the
// inventory until AddStandaloneHost_Task / AddHost_Task adds it.
var spareHosts = []string{"esx4.lab.local"}

// lab is what runtime host adds need from startup.
var lab struct {
	mu       sync.Mutex
	client   *vim25.Client
	dsRoot   string
	password string
	shared   types.ManagedObjectReference
}

type spareHostInfo struct {
	Name             string `json:"name"`
	Thumbprint       string `json:"thumbprint"`
	ThumbprintSHA256 string `json:"thumbprint_sha256"`
	User             string `json:"user"`
	Password         string `json:"password"`
}

func colonHex(b []byte) string {
	parts := make([]string, len(b))
	for i, x := range b {
		parts[i] = fmt.Sprintf("%02X", x)
	}
	return strings.Join(parts, ":")
}

// hostThumbprints is the simulated host's certificate identity.
func hostThumbprints(name string) (sha1Form, sha256Form string) {
	s1 := sha1.Sum([]byte("vsa-sim-host:" + name))
	s2 := sha256.Sum256([]byte("vsa-sim-host:" + name))
	return colonHex(s1[:]), colonHex(s2[:])
}

func normThumbprint(s string) string {
	return strings.ToUpper(strings.NewReplacer(":", "", " ", "").Replace(s))
}

func thumbprintMatches(name, given string) bool {
	s1, s2 := hostThumbprints(name)
	g := normThumbprint(given)
	return g != "" && (g == normThumbprint(s1) || g == normThumbprint(s2))
}

func isSpare(name string) bool {
	for _, n := range spareHosts {
		if strings.EqualFold(n, name) {
			return true
		}
	}
	return false
}

func hostInInventory(name string) bool {
	for _, e := range simulator.Map.All("HostSystem") {
		if h, ok := e.(*simulator.HostSystem); ok && strings.EqualFold(h.Name, name) {
			return true
		}
	}
	return false
}

// checkHostConnect does what vCenter checks before adding a host: it is
// reachable, not yet managed, its certificate is the pinned one, and the
// credentials log in.
func checkHostConnect(spec types.HostConnectSpec) types.BaseMethodFault {
	switch {
	case hostInInventory(spec.HostName):
		return &types.AlreadyConnected{Name: spec.HostName}
	case !isSpare(spec.HostName):
		return &types.NoHost{Name: spec.HostName}
	case !thumbprintMatches(spec.HostName, spec.SslThumbprint):
		s1, _ := hostThumbprints(spec.HostName)
		return &types.SSLVerifyFault{SelfSigned: true, Thumbprint: s1}
	case spec.UserName != "root" || spec.Password != lab.password:
		return &types.InvalidLogin{}
	}
	return nil
}

// finishHostAdd gives a runtime-added host the lab setup esx1..3 get.
func finishHostAdd(ref types.ManagedObjectReference) types.BaseMethodFault {
	host := simulator.Map.Get(ref).(*simulator.HostSystem)
	short := strings.SplitN(host.Name, ".", 2)[0]
	ctx := context.Background()
	h, err := setupLabHost(ctx, lab.client, ref, short+"-local", lab.dsRoot)
	if err == nil {
		err = installStorage(host)
	}
	if err == nil && lab.shared.Value != "" {
		mountShared(lab.shared, []labHost{h})
	}
	if err != nil {
		return &types.HostConnectFault{VimFault: types.VimFault{MethodFault: types.MethodFault{
			FaultMessage: []types.LocalizableMessage{{Key: "vsa.sim", Message: err.Error()}},
		}}}
	}
	return nil
}

func taskResult(res soap.HasFault, ret types.ManagedObjectReference) (types.ManagedObjectReference, types.BaseMethodFault) {
	if res.Fault() != nil {
		return types.ManagedObjectReference{}, res.Fault().VimFault().(types.BaseMethodFault)
	}
	t := simulator.Map.Get(ret).(*simulator.Task)
	if t.Info.Error != nil {
		return types.ManagedObjectReference{}, t.Info.Error.Fault
	}
	return t.Info.Result.(types.ManagedObjectReference), nil
}

func (p *folderProxy) AddStandaloneHostTask(ctx *simulator.Context, req *types.AddStandaloneHost_Task) soap.HasFault {
	f := p.folder()
	if f == nil {
		return &methods.AddStandaloneHost_TaskBody{Fault_: simulator.Fault("", &types.ManagedObjectNotFound{Obj: p.target})}
	}
	task := simulator.CreateTask(f, "addStandaloneHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		lab.mu.Lock()
		defer lab.mu.Unlock()
		if fault := checkHostConnect(req.Spec); fault != nil {
			return nil, fault
		}
		r := *req
		r.This = p.target
		res := f.AddStandaloneHostTask(ctx, &r)
		var ret types.ManagedObjectReference
		if b, ok := res.(*methods.AddStandaloneHost_TaskBody); ok && b.Res != nil {
			ret = b.Res.Returnval
		}
		ref, fault := taskResult(res, ret)
		if fault != nil {
			return nil, fault
		}
		if fault := finishHostAdd(ref); fault != nil {
			return nil, fault
		}
		return ref, nil
	})
	return &methods.AddStandaloneHost_TaskBody{Res: &types.AddStandaloneHost_TaskResponse{Returnval: task.Run()}}
}

func (p *clusterProxy) AddHostTask(ctx *simulator.Context, req *types.AddHost_Task) soap.HasFault {
	c, fault := p.cluster()
	if fault != nil {
		return &methods.AddHost_TaskBody{Fault_: simulator.Fault("", fault)}
	}
	task := simulator.CreateTask(c, "addHost", func(*simulator.Task) (types.AnyType, types.BaseMethodFault) {
		lab.mu.Lock()
		defer lab.mu.Unlock()
		if fault := checkHostConnect(req.Spec); fault != nil {
			return nil, fault
		}
		r := *req
		r.This = p.target
		res := c.AddHostTask(&r)
		var ret types.ManagedObjectReference
		if b, ok := res.(*methods.AddHost_TaskBody); ok && b.Res != nil {
			ret = b.Res.Returnval
		}
		ref, fault := taskResult(res, ret)
		if fault != nil {
			return nil, fault
		}
		if fault := finishHostAdd(ref); fault != nil {
			return nil, fault
		}
		return ref, nil
	})
	return &methods.AddHost_TaskBody{Res: &types.AddHost_TaskResponse{Returnval: task.Run()}}
}

// setupLabHost gives a host in the inventory its local datastore under
// dsRoot, our network system (vmnic0..3, VSA portgroups on vSwitch0) and
// an IscsiManager. Storage (installStorage) and the shared datastore are
// the caller's.
func setupLabHost(ctx context.Context, c *vim25.Client, ref types.ManagedObjectReference, dsName, dsRoot string) (labHost, error) {
	h := labHost{host: object.NewHostSystem(c, ref)}
	var err error
	if h.pool, err = h.host.ResourcePool(ctx); err != nil {
		return h, err
	}
	dir := filepath.Join(dsRoot, dsName)
	if err := os.MkdirAll(dir, 0700); err != nil {
		return h, err
	}
	dss, err := h.host.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return h, err
	}
	ds, err := dss.CreateLocalDatastore(ctx, dsName, dir)
	if err != nil {
		return h, err
	}
	h.ds = dsName
	dsObj := simulator.Map.Get(ds.Reference()).(*simulator.Datastore)
	simulator.Map.WithLock(dsObj, func() {
		dsObj.Summary.MultipleHostAccess = types.NewBool(false)
		dsObj.Summary.Type = "VMFS"
	})
	wrapBrowser(dsObj)

	hs := simulator.Map.Get(ref).(*simulator.HostSystem)
	if _, err := installNetworkSystem(hs); err != nil {
		return h, err
	}
	netsys, err := h.host.ConfigManager().NetworkSystem(ctx)
	if err != nil {
		return h, err
	}
	// "VM Network" is already there: vcsim gives every host the DC default.
	for _, pg := range labPortgroups {
		err := netsys.AddPortGroup(ctx, types.HostPortGroupSpec{Name: pg, VswitchName: "vSwitch0"})
		if err != nil {
			return h, fmt.Errorf("portgroup %s: %w", pg, err)
		}
	}
	installIscsiManager(hs)
	return h, nil
}
