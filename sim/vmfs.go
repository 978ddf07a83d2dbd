package main

import (
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/types"
)

// vmfsVolume is a VMFS file system on a LUN. Its Datastore object is made
// when a host first mounts it and is shared by every host that mounts it.
type vmfsVolume struct {
	uuid    string
	name    string
	naa     string
	foreign bool
	ds      *types.ManagedObjectReference
	dir     string
	size    int64
	// mounts: hosts that know the volume; false = unmounted by the user
	// (UnmountVmfsVolume), which survives rescans as on ESXi.
	mounts map[types.ManagedObjectReference]bool
}

const vmfsPartitionStart = 2048 // sectors

func vmfsUUID(seed string) string {
	s := sha256.Sum256([]byte(seed))
	return fmt.Sprintf("%x-%x-%x-%x", s[0:4], s[4:8], s[8:10], s[10:16])
}

func (v *vmfsVolume) capacity() int64 {
	c := v.size - vmfsPartitionStart*512
	return c &^ (1<<20 - 1)
}

func (v *vmfsVolume) hostVolume() *types.HostVmfsVolume {
	return &types.HostVmfsVolume{
		HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: v.name, Capacity: v.capacity()},
		BlockSizeMb:          1,
		BlockSize:            1024,
		UnmapGranularity:     1024,
		UnmapPriority:        "low",
		MaxBlocks:            64 * 1024 * 1024,
		MajorVersion:         6,
		Version:              "6.82",
		Uuid:                 v.uuid,
		Extent:               []types.HostScsiDiskPartition{{DiskName: v.naa, Partition: 1}},
		Ssd:                  types.NewBool(false),
		Local:                types.NewBool(false),
		ScsiDiskType:         "native512",
	}
}

func (v *vmfsVolume) anyMounted() bool {
	for _, m := range v.mounts {
		if m {
			return true
		}
	}
	return false
}

// ensureDatastore makes the volume's Datastore object through host h's
// datastore system (vcsim then files it in the datacenter and the host's
// compute resource), then turns it into a VMFS datastore.
func (v *vmfsVolume) ensureDatastore(ctx *simulator.Context, h *hostStorage) types.BaseMethodFault {
	if v.ds != nil {
		return nil
	}
	host := simulator.Map.Get(h.ref).(*simulator.HostSystem)
	dss := simulator.Map.Get(*host.ConfigManager.DatastoreSystem).(*HostDatastoreSystem)
	v.dir = filepath.Join(storage.dsRoot, v.name)
	if err := os.MkdirAll(v.dir, 0700); err != nil {
		return &types.HostConfigFault{}
	}
	res := dss.HostDatastoreSystem.CreateLocalDatastore(ctx, &types.CreateLocalDatastore{This: dss.Self, Name: v.name, Path: v.dir})
	body := res.(*methods.CreateLocalDatastoreBody)
	if body.Fault_ != nil {
		return body.Fault_.VimFault().(types.BaseMethodFault)
	}
	ref := body.Res.Returnval
	v.ds = &ref
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	wrapBrowser(ds)
	now := time.Now()
	capacity := v.capacity()
	free := capacity - capacity/50
	info := &types.VmfsDatastoreInfo{
		DatastoreInfo: types.DatastoreInfo{
			Name:                   v.name,
			Url:                    v.dir,
			FreeSpace:              free,
			MaxFileSize:            62 << 40,
			MaxVirtualDiskCapacity: 62 << 40,
			MaxMemoryFileSize:      62 << 40,
			Timestamp:              &now,
			ContainerId:            v.uuid,
		},
		MaxPhysicalRDMFileSize: 64 << 40,
		MaxVirtualRDMFileSize:  62 << 40,
		Vmfs:                   v.hostVolume(),
	}
	simulator.Map.WithLock(ds, func() {
		summary := ds.Summary
		summary.Type = "VMFS"
		summary.Capacity = capacity
		summary.FreeSpace = free
		summary.Url = v.dir
		simulator.Map.Update(ds, []types.PropertyChange{
			{Name: "info", Val: info},
			{Name: "summary", Val: summary},
		})
	})
	return nil
}

// publish brings the Datastore object, the hosts' datastore lists and the
// hosts' file system volume info in line with the volume's mounts.
func (v *vmfsVolume) publish() {
	if v.ds == nil {
		return
	}
	ds, ok := simulator.Map.Get(*v.ds).(*simulator.Datastore)
	if !ok {
		return
	}
	var refs []types.ManagedObjectReference
	for ref := range v.mounts {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Value < refs[j].Value })
	var mounts []types.DatastoreHostMount
	accessible := false
	for _, ref := range refs {
		mounted := v.mounts[ref]
		h := storage.hosts[ref]
		acc := mounted && h != nil && h.sees(v.naa)
		accessible = accessible || acc
		info := types.HostMountInfo{
			Path:       "/vmfs/volumes/" + v.uuid,
			AccessMode: string(types.HostMountModeReadWrite),
			Mounted:    types.NewBool(mounted),
			Accessible: types.NewBool(acc),
		}
		if mounted && !acc {
			info.InaccessibleReason = string(types.HostMountInfoInaccessibleReasonAllPathsDown_Start)
		}
		mounts = append(mounts, types.DatastoreHostMount{Key: ref, MountInfo: info})
		hostAddDatastore(ref, *v.ds)
	}
	for _, m := range ds.Host {
		if _, ok := v.mounts[m.Key]; !ok {
			hostRemoveDatastore(m.Key, *v.ds)
		}
	}
	simulator.Map.WithLock(ds, func() {
		summary := ds.Summary
		summary.Accessible = accessible
		summary.MultipleHostAccess = types.NewBool(len(mounts) > 1)
		simulator.Map.Update(ds, []types.PropertyChange{
			{Name: "host", Val: mounts},
			{Name: "summary", Val: summary},
		})
	})
}

// hostAddDatastore lists ds in the host's datastore (and its datastore
// system's), and in its compute resource's.
func hostAddDatastore(hostRef, ds types.ManagedObjectReference) {
	host, ok := simulator.Map.Get(hostRef).(*simulator.HostSystem)
	if !ok {
		return
	}
	var list []types.ManagedObjectReference
	simulator.Map.WithLock(host, func() {
		list = append([]types.ManagedObjectReference(nil), host.Datastore...)
		if simulator.FindReference(list, ds) == nil {
			list = append(list, ds)
			simulator.Map.Update(host, []types.PropertyChange{{Name: "datastore", Val: list}})
		}
	})
	setDatastoreSystemList(host, list)
	if cr := computeResource(*host.Parent); cr != nil {
		obj := simulator.Map.Get(cr.Self)
		simulator.Map.WithLock(obj, func() {
			if simulator.FindReference(cr.Datastore, ds) == nil {
				l := append(append([]types.ManagedObjectReference(nil), cr.Datastore...), ds)
				simulator.Map.Update(obj, []types.PropertyChange{{Name: "datastore", Val: l}})
			}
		})
	}
}

func hostRemoveDatastore(hostRef, ds types.ManagedObjectReference) {
	host, ok := simulator.Map.Get(hostRef).(*simulator.HostSystem)
	if !ok {
		return
	}
	var list []types.ManagedObjectReference
	simulator.Map.WithLock(host, func() {
		list = removeRef(host.Datastore, ds)
		simulator.Map.Update(host, []types.PropertyChange{{Name: "datastore", Val: list}})
	})
	setDatastoreSystemList(host, list)
	if cr := computeResource(*host.Parent); cr != nil {
		still := false
		for _, other := range cr.Host {
			if h, ok := simulator.Map.Get(other).(*simulator.HostSystem); ok && other != hostRef && simulator.FindReference(h.Datastore, ds) != nil {
				still = true
			}
		}
		if !still {
			obj := simulator.Map.Get(cr.Self)
			simulator.Map.WithLock(obj, func() {
				simulator.Map.Update(obj, []types.PropertyChange{{Name: "datastore", Val: removeRef(cr.Datastore, ds)}})
			})
		}
	}
}

// setDatastoreSystemList keeps HostDatastoreSystem.datastore equal to the
// host's list: vcsim's CreateLocalDatastore copies it over host.datastore.
// The datastore system's lock is storage.mu, which the caller holds (or it
// runs at startup), so no WithLock here.
func setDatastoreSystemList(host *simulator.HostSystem, list []types.ManagedObjectReference) {
	if dss, ok := simulator.Map.Get(*host.ConfigManager.DatastoreSystem).(*HostDatastoreSystem); ok {
		simulator.Map.Update(dss, []types.PropertyChange{{Name: "datastore", Val: append([]types.ManagedObjectReference(nil), list...)}})
	}
}

// fileSystemVolumes renders the host's fileSystemVolumeInfo from the
// datastores it lists.
func (h *hostStorage) fileSystemVolumes() *types.HostFileSystemVolumeInfo {
	info := &types.HostFileSystemVolumeInfo{
		VolumeTypeList: []string{"VMFS", "NFS", "NFS41", "CIFS", "vsan", "VFFS", "VVOL", "PMEM", "OTHER"},
	}
	host, ok := simulator.Map.Get(h.ref).(*simulator.HostSystem)
	if !ok {
		return info
	}
	var refs []types.ManagedObjectReference
	simulator.Map.WithLock(host, func() { refs = append(refs, host.Datastore...) })
	for _, ref := range refs {
		ds, ok := simulator.Map.Get(ref).(*simulator.Datastore)
		if !ok {
			continue
		}
		var mi types.HostFileSystemMountInfo
		simulator.Map.WithLock(ds, func() {
			for _, m := range ds.Host {
				if m.Key == h.ref {
					mi.MountInfo = m.MountInfo
				}
			}
			capacity := ds.Summary.Capacity
			switch i := ds.Info.(type) {
			case *types.VmfsDatastoreInfo:
				mi.Volume = i.Vmfs
			case *types.NasDatastoreInfo:
				if i.Nas != nil {
					nas := *i.Nas
					nas.Capacity = capacity
					nas.Name = ds.Name
					mi.Volume = &nas
				}
				mi.MountInfo.Path = "/vmfs/volumes/" + vmfsUUID(ds.Name)[:17]
			case *types.LocalDatastoreInfo:
				// Our hosts' local datastores: VMFS on the boot disk.
				uuid := vmfsUUID(ds.Name)
				mi.MountInfo.Path = "/vmfs/volumes/" + uuid
				mi.Volume = &types.HostVmfsVolume{
					HostFileSystemVolume: types.HostFileSystemVolume{Type: "VMFS", Name: ds.Name, Capacity: capacity},
					BlockSizeMb:          1,
					BlockSize:            1024,
					MaxBlocks:            64 * 1024 * 1024,
					MajorVersion:         6,
					Version:              "6.82",
					Uuid:                 uuid,
					Extent:               []types.HostScsiDiskPartition{{DiskName: "mpx.vmhba0:C0:T0:L0", Partition: 3}},
					Ssd:                  types.NewBool(false),
					Local:                types.NewBool(true),
					ScsiDiskType:         "native512",
				}
			}
		})
		if mi.Volume == nil {
			continue
		}
		if mi.MountInfo.AccessMode == "" {
			mi.MountInfo.AccessMode = string(types.HostMountModeReadWrite)
			mi.MountInfo.Mounted = types.NewBool(true)
			mi.MountInfo.Accessible = types.NewBool(true)
		}
		info.MountInfo = append(info.MountInfo, mi)
	}
	return info
}

// publishHost swaps in freshly rendered storage info on the host's storage
// system and in host.config. Caller holds storage.mu.
func (h *hostStorage) publishHost() {
	host, ok := simulator.Map.Get(h.ref).(*simulator.HostSystem)
	if !ok {
		return
	}
	dev := h.deviceInfo()
	fs := h.fileSystemVolumes()
	if ss, ok := simulator.Map.Get(*host.ConfigManager.StorageSystem).(*HostStorageSystem); ok {
		simulator.Map.Update(ss, []types.PropertyChange{
			{Name: "storageDeviceInfo", Val: dev},
			{Name: "fileSystemVolumeInfo", Val: fs},
		})
	}
	simulator.Map.WithLock(host, func() {
		simulator.Map.Update(host, []types.PropertyChange{
			{Name: "config.storageDevice", Val: dev},
			{Name: "config.fileSystemVolume", Val: fs},
		})
	})
}

// publishHostVolumes republishes the volumes a host knows, then the host.
func (h *hostStorage) publishHostVolumes() {
	for _, v := range storage.volumes {
		if _, ok := v.mounts[h.ref]; ok {
			v.publish()
		}
	}
	h.publishHost()
}

// publishVolume republishes a volume and every host that knows it.
func publishVolume(v *vmfsVolume) {
	v.publish()
	for ref := range v.mounts {
		if h := storage.hosts[ref]; h != nil {
			h.publishHost()
		}
	}
}

func wrapBrowser(ds *simulator.Datastore) {
	if b, ok := simulator.Map.Get(ds.Browser).(*simulator.HostDatastoreBrowser); ok {
		replaceObject(b.Self, &HostDatastoreBrowser{HostDatastoreBrowser: *b})
	}
}
