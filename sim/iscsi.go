package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/simulator/esx"
	"github.com/vmware/govmomi/vim25/types"
)

// The storage data path model. The test harness registers iSCSI portals
// (portals.go), or in lab mode real portals answer (lab_probe.go); each host's software iSCSI adapter logs in to them on
// rescan; LUNs carry VMFS volumes (vmfs.go). One mutex, storage.mu, guards
// all of it and is also the lock vcsim takes for our HostStorageSystem and
// HostDatastoreSystem objects, so property reads of those are consistent.
// Published structs are always freshly built and never mutated afterwards.

const (
	swIscsiDevice = "vmhba65"
	swIscsiKey    = "key-vim.host.InternetScsiHba-" + swIscsiDevice
)

type portal struct {
	Address    string `json:"address"`
	Port       int32  `json:"port"`
	IQN        string `json:"iqn"`
	LunSize    int64  `json:"lun_size_bytes"`
	NAA        string `json:"naa"`
	ChapName   string `json:"chap_name,omitempty"`
	ChapSecret string `json:"chap_secret,omitempty"` // never echoed
	Vendor     string `json:"vendor,omitempty"`
}

// lun is the block device behind one or more portals, keyed by naa id. It
// outlives its portals, as the DRBD-backed LUN outlives a VIP move.
type lun struct {
	naa    string
	size   int64
	vendor string
	volume *vmfsVolume
	// formats counts CreateVmfsDatastore calls on this LUN; overwrote is set
	// when one destroyed a foreign VMFS.
	formats   int
	overwrote bool
}

type sendTarget struct {
	address string
	port    int32
	auth    *types.HostInternetScsiHbaAuthenticationProperties // nil: inherited
	adv     map[string]types.AnyType
}

// path is one working path found by the last rescan of the iSCSI adapter.
type path struct {
	address string
	port    int32
	iqn     string
	naa     string
	target  int32
}

type hostStorage struct {
	ref     types.ManagedObjectReference
	name    string
	base    *types.HostStorageDeviceInfo // this host's copy of vcsim's template
	iqn     string
	enabled bool
	auth    types.HostInternetScsiHbaAuthenticationProperties // with secrets
	adv     map[string]types.AnyType
	targets []*sendTarget
	paths   []path
	targetN map[string]int32 // iqn -> stable SCSI target number
	// boundVnics are the vmknics bound to the adapter (iscsi_manager.go).
	boundVnics []string
}

type storageModel struct {
	mu      sync.Mutex
	portals map[string]*portal // by address
	luns    map[string]*lun    // by naa
	hosts   map[types.ManagedObjectReference]*hostStorage
	volumes map[string]*vmfsVolume // by uuid
	dsRoot  string
}

var storage = &storageModel{
	portals: map[string]*portal{},
	luns:    map[string]*lun{},
	hosts:   map[types.ManagedObjectReference]*hostStorage{},
	volumes: map[string]*vmfsVolume{},
}

// newHostStorage gives a host its own copy of the storage device template
// (vcsim 0.24.2 points every host at the same esx.HostStorageDeviceInfo).
func newHostStorage(host *simulator.HostSystem) (*hostStorage, error) {
	base := new(types.HostStorageDeviceInfo)
	if err := deepCopyXML(&esx.HostStorageDeviceInfo, base); err != nil {
		return nil, err
	}
	short := strings.SplitN(host.Name, ".", 2)[0]
	sum := sha256.Sum256([]byte(host.Name))
	return &hostStorage{
		ref:     host.Self,
		name:    host.Name,
		base:    base,
		iqn:     fmt.Sprintf("iqn.1998-01.com.vmware:%s-%s", short, hex.EncodeToString(sum[:4])),
		adv:     map[string]types.AnyType{},
		targetN: map[string]int32{},
		auth: types.HostInternetScsiHbaAuthenticationProperties{
			ChapAuthenticationType:       string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited),
			MutualChapAuthenticationType: string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited),
		},
	}, nil
}

// iSCSI advanced parameters ESXi exposes, with its defaults and ranges.
type advParam struct {
	key      string
	def      int32
	min, max int32
	isBool   bool
	boolDef  bool
}

var advParams = []advParam{
	{key: "ErrorRecoveryLevel", def: 0, min: 0, max: 2},
	{key: "LoginRetryMax", def: 4, min: 0, max: 64},
	{key: "MaxOutstandingR2T", def: 1, min: 1, max: 8},
	{key: "FirstBurstLength", def: 262144, min: 512, max: 16777215},
	{key: "MaxBurstLength", def: 262144, min: 512, max: 16777215},
	{key: "MaxRecvDataSegLen", def: 131072, min: 512, max: 16777215},
	{key: "MaxCommands", def: 128, min: 2, max: 2048},
	{key: "DefaultTimeToWait", def: 2, min: 0, max: 60},
	{key: "DefaultTimeToRetain", def: 0, min: 0, max: 60},
	{key: "LoginTimeout", def: 5, min: 1, max: 60},
	{key: "LogoutTimeout", def: 15, min: 0, max: 60},
	{key: "RecoveryTimeout", def: 10, min: 1, max: 120},
	{key: "NoopOutTimeout", def: 10, min: 10, max: 30},
	{key: "NoopOutInterval", def: 15, min: 1, max: 60},
	{key: "InitR2T", isBool: true, boolDef: false},
	{key: "ImmediateData", isBool: true, boolDef: true},
	{key: "DelayedAck", isBool: true, boolDef: true},
}

func findAdvParam(key string) *advParam {
	for i := range advParams {
		if advParams[i].key == key {
			return &advParams[i]
		}
	}
	return nil
}

func (p *advParam) defValue() types.AnyType {
	if p.isBool {
		return p.boolDef
	}
	return p.def
}

// normalize checks a client value against the parameter's type and range.
func (p *advParam) normalize(v types.AnyType) (types.AnyType, bool) {
	if p.isBool {
		b, ok := v.(bool)
		return b, ok
	}
	var n int64
	switch x := v.(type) {
	case int32:
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case int16:
		n = int64(x)
	case int8:
		n = int64(x)
	default:
		return nil, false
	}
	if n < int64(p.min) || n > int64(p.max) {
		return nil, false
	}
	return int32(n), true
}

func advOptionDefs() []types.OptionDef {
	defs := make([]types.OptionDef, 0, len(advParams))
	for _, p := range advParams {
		var ot types.BaseOptionType
		if p.isBool {
			ot = &types.BoolOption{Supported: true, DefaultValue: p.boolDef}
		} else {
			ot = &types.IntOption{Min: p.min, Max: p.max, DefaultValue: p.def}
		}
		defs = append(defs, types.OptionDef{
			ElementDescription: types.ElementDescription{
				Description: types.Description{Label: p.key, Summary: p.key},
				Key:         p.key,
			},
			OptionType: ot,
		})
	}
	return defs
}

// advValues lists every parameter: values set at this level are not
// inherited; the rest come from parent (or the default).
func advValues(own, parent map[string]types.AnyType) []types.HostInternetScsiHbaParamValue {
	out := make([]types.HostInternetScsiHbaParamValue, 0, len(advParams))
	for _, p := range advParams {
		v, ok := own[p.key]
		inherited := !ok
		if !ok {
			if v, ok = parent[p.key]; !ok {
				v = p.defValue()
			}
		}
		out = append(out, types.HostInternetScsiHbaParamValue{
			OptionValue: types.OptionValue{Key: p.key, Value: v},
			IsInherited: types.NewBool(inherited),
		})
	}
	return out
}

// publicAuth strips secrets: ESXi never returns CHAP secrets.
func publicAuth(a types.HostInternetScsiHbaAuthenticationProperties) *types.HostInternetScsiHbaAuthenticationProperties {
	a.ChapSecret = ""
	a.MutualChapSecret = ""
	return &a
}

func (h *hostStorage) effectiveAuth(st *sendTarget) types.HostInternetScsiHbaAuthenticationProperties {
	if st.auth != nil {
		return *st.auth
	}
	return h.auth
}

// login says whether an initiator with auth a gets into portal p.
func login(a types.HostInternetScsiHbaAuthenticationProperties, p *portal) bool {
	chap := a.ChapAuthenticationType
	if chap == "" {
		chap = string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited)
	}
	if p.ChapSecret == "" {
		// The target does not challenge: only "use CHAP" (required) fails.
		return chap != string(types.HostInternetScsiHbaChapAuthenticationTypeChapRequired)
	}
	if chap == string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited) {
		return false
	}
	if p.ChapName != "" && a.ChapName != p.ChapName {
		return false
	}
	return a.ChapSecret == p.ChapSecret
}

// rescanIscsi re-discovers the adapter's targets through its send targets.
func (h *hostStorage) rescanIscsi() {
	h.paths = nil
	if !h.enabled {
		return
	}
	seen := map[string]bool{}
	for _, st := range h.targets {
		var found []path
		p, registered := storage.portals[st.address]
		switch {
		case registered && p.Port == st.port && login(h.effectiveAuth(st), p):
			found = []path{{address: p.Address, port: p.Port, iqn: p.IQN, naa: p.NAA}}
		case !registered && labMode():
			found = h.probedPaths(st) // a real portal (lab_probe.go)
		}
		for _, fp := range found {
			id := fmt.Sprintf("%s:%d/%s", fp.address, fp.port, fp.iqn)
			if seen[id] {
				continue
			}
			seen[id] = true
			n, ok := h.targetN[fp.iqn]
			if !ok {
				n = int32(len(h.targetN))
				h.targetN[fp.iqn] = n
			}
			fp.target = n
			h.paths = append(h.paths, fp)
		}
	}
	sort.Slice(h.paths, func(i, j int) bool { return h.paths[i].target < h.paths[j].target })
}

// sees reports whether the host has a working path to the LUN.
func (h *hostStorage) sees(naa string) bool {
	for _, p := range h.paths {
		if p.naa == naa {
			return true
		}
	}
	return false
}

func (h *hostStorage) sendTarget(address string, port int32) *sendTarget {
	for _, st := range h.targets {
		if st.address == address && st.port == port {
			return st
		}
	}
	return nil
}

func lunUUID(naa string) string {
	id := strings.TrimPrefix(naa, "naa.")
	return "02000000" + id + "4c494f2d4f52"
}

func diskKey(naa string) string { return "key-vim.host.ScsiDisk-" + lunUUID(naa) }

// scsiDisk renders the LUN as ESXi shows an iSCSI disk; naa and uuid are
// the same on every host.
func scsiDisk(l *lun) *types.HostScsiDisk {
	uuid := lunUUID(l.naa)
	vendor := l.vendor
	if vendor == "" {
		vendor = "LIO-ORG"
	}
	return &types.HostScsiDisk{
		ScsiLun: types.ScsiLun{
			HostDevice: types.HostDevice{DeviceName: "/vmfs/devices/disks/" + l.naa, DeviceType: "disk"},
			Key:        diskKey(l.naa),
			Uuid:       uuid,
			Descriptor: []types.ScsiLunDescriptor{
				{Quality: "highQuality", Id: l.naa},
				{Quality: "highQuality", Id: "vml." + uuid},
				{Quality: "mediumQuality", Id: uuid},
			},
			CanonicalName:    l.naa,
			DisplayName:      fmt.Sprintf("%s iSCSI Disk (%s)", vendor, l.naa),
			LunType:          "disk",
			Vendor:           fmt.Sprintf("%-8s", vendor),
			Model:            "vsa-lun         ",
			Revision:         "4.0 ",
			ScsiLevel:        6,
			SerialNumber:     "unavailable",
			OperationalState: []string{"ok"},
			Capabilities:     &types.ScsiLunCapabilities{UpdateDisplayNameSupported: true},
			VStorageSupport:  "vStorageUnsupported",
			ProtocolEndpoint: types.NewBool(false),
		},
		Capacity:     types.HostDiskDimensionsLba{BlockSize: 512, Block: l.size / 512},
		DevicePath:   "/vmfs/devices/disks/" + l.naa,
		Ssd:          types.NewBool(false),
		LocalDisk:    types.NewBool(false),
		ScsiDiskType: "native512",
	}
}

// deviceInfo renders this host's storageDeviceInfo.
func (h *hostStorage) deviceInfo() *types.HostStorageDeviceInfo {
	info := new(types.HostStorageDeviceInfo)
	_ = deepCopyXML(h.base, info)
	info.SoftwareInternetScsiEnabled = h.enabled
	if !h.enabled {
		return info
	}
	info.HostBusAdapter = append(info.HostBusAdapter, h.iscsiHba())
	if info.ScsiTopology == nil {
		info.ScsiTopology = &types.HostScsiTopology{}
	}
	if info.MultipathInfo == nil {
		info.MultipathInfo = &types.HostMultipathInfo{}
	}

	iface := types.HostScsiTopologyInterface{
		Key:     "key-vim.host.ScsiTopology.Interface-" + swIscsiDevice,
		Adapter: swIscsiKey,
	}
	byNaa := map[string][]path{}
	var order []string
	for _, p := range h.paths {
		l := storage.luns[p.naa]
		if l == nil {
			continue
		}
		if _, ok := byNaa[p.naa]; !ok {
			order = append(order, p.naa)
			info.ScsiLun = append(info.ScsiLun, scsiDisk(l))
		}
		byNaa[p.naa] = append(byNaa[p.naa], p)
		iface.Target = append(iface.Target, types.HostScsiTopologyTarget{
			Key:    fmt.Sprintf("key-vim.host.ScsiTopology.Target-%s:0:%d", swIscsiDevice, p.target),
			Target: p.target,
			Lun: []types.HostScsiTopologyLun{{
				Key:     "key-vim.host.ScsiTopology.Lun-" + lunUUID(p.naa),
				Lun:     0,
				ScsiLun: diskKey(p.naa),
			}},
			Transport: iscsiTransport(p),
		})
	}
	info.ScsiTopology.Adapter = append(info.ScsiTopology.Adapter, iface)
	for _, naa := range order {
		uuid := lunUUID(naa)
		lu := types.HostMultipathInfoLogicalUnit{
			Key: "key-vim.host.MultipathInfo.LogicalUnit-" + uuid,
			Id:  uuid,
			Lun: diskKey(naa),
			Policy: &types.HostMultipathInfoFixedLogicalUnitPolicy{
				HostMultipathInfoLogicalUnitPolicy: types.HostMultipathInfoLogicalUnitPolicy{Policy: "VMW_PSP_FIXED"},
			},
			StorageArrayTypePolicy: &types.HostMultipathInfoLogicalUnitStorageArrayTypePolicy{Policy: "VMW_SATP_DEFAULT_AA"},
		}
		for i, p := range byNaa[naa] {
			name := fmt.Sprintf("%s:C0:T%d:L0", swIscsiDevice, p.target)
			lu.Path = append(lu.Path, types.HostMultipathInfoPath{
				Key:           "key-vim.host.MultipathInfo.Path-" + name,
				Name:          name,
				PathState:     "active",
				State:         "active",
				IsWorkingPath: types.NewBool(i == 0),
				Adapter:       swIscsiKey,
				Lun:           lu.Key,
				Transport:     iscsiTransport(p),
			})
		}
		info.MultipathInfo.Lun = append(info.MultipathInfo.Lun, lu)
	}
	return info
}

func iscsiTransport(p path) *types.HostInternetScsiTargetTransport {
	return &types.HostInternetScsiTargetTransport{
		IScsiName: p.iqn,
		Address:   []string{fmt.Sprintf("%s:%d", p.address, p.port)},
	}
}

func (h *hostStorage) iscsiHba() *types.HostInternetScsiHba {
	auth := publicAuth(h.auth)
	auth.ChapAuthEnabled = auth.ChapAuthenticationType != "" &&
		auth.ChapAuthenticationType != string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited)
	hba := &types.HostInternetScsiHba{
		HostHostBusAdapter: types.HostHostBusAdapter{
			Key:    swIscsiKey,
			Device: swIscsiDevice,
			Status: "online",
			Model:  "iSCSI Software Adapter",
			Driver: "iscsi_vmk",
		},
		IsSoftwareBased:       true,
		CanBeDisabled:         types.NewBool(true),
		NetworkBindingSupport: types.HostInternetScsiHbaNetworkBindingSupportTypeOptional,
		DiscoveryCapabilities: types.HostInternetScsiHbaDiscoveryCapabilities{
			SendTargetsDiscoverySettable:  false,
			StaticTargetDiscoverySettable: false,
		},
		DiscoveryProperties: types.HostInternetScsiHbaDiscoveryProperties{
			SendTargetsDiscoveryEnabled:  true,
			StaticTargetDiscoveryEnabled: true,
		},
		AuthenticationCapabilities: types.HostInternetScsiHbaAuthenticationCapabilities{
			ChapAuthSettable:         true,
			MutualChapSettable:       types.NewBool(true),
			TargetChapSettable:       types.NewBool(true),
			TargetMutualChapSettable: types.NewBool(true),
		},
		AuthenticationProperties: *auth,
		IpCapabilities:           types.HostInternetScsiHbaIPCapabilities{},
		IpProperties:             types.HostInternetScsiHbaIPProperties{DhcpConfigurationEnabled: false},
		SupportedAdvancedOptions: advOptionDefs(),
		AdvancedOptions:          advValues(h.adv, nil),
		IScsiName:                h.iqn,
		MaxSpeedMb:               10000,
		CurrentSpeedMb:           10000,
	}
	for _, st := range h.targets {
		out := types.HostInternetScsiHbaSendTarget{
			Address:                  st.address,
			Port:                     st.port,
			SupportedAdvancedOptions: advOptionDefs(),
			AdvancedOptions:          advValues(st.adv, h.adv),
			Parent:                   swIscsiDevice,
		}
		if st.auth != nil {
			a := publicAuth(*st.auth)
			a.ChapInherited = types.NewBool(false)
			out.AuthenticationProperties = a
		} else {
			a := publicAuth(h.auth)
			a.ChapInherited = types.NewBool(true)
			a.MutualChapInherited = types.NewBool(true)
			out.AuthenticationProperties = a
		}
		hba.ConfiguredSendTarget = append(hba.ConfiguredSendTarget, out)
	}
	for _, p := range h.paths {
		hba.ConfiguredStaticTarget = append(hba.ConfiguredStaticTarget, types.HostInternetScsiHbaStaticTarget{
			Address:         p.address,
			Port:            p.port,
			IScsiName:       p.iqn,
			DiscoveryMethod: string(types.HostInternetScsiHbaStaticTargetTargetDiscoveryMethodSendTargetMethod),
			Parent:          fmt.Sprintf("%s:%d", p.address, p.port),
		})
	}
	return hba
}
