package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostDatastoreSystem adds VMFS on the iSCSI LUNs of the storage model.
// Like HostStorageSystem, its lock is storage.mu.
type HostDatastoreSystem struct {
	simulator.HostDatastoreSystem
}

func (s *HostDatastoreSystem) Lock()   { storage.mu.Lock() }
func (s *HostDatastoreSystem) Unlock() { storage.mu.Unlock() }

func (s *HostDatastoreSystem) state() *hostStorage { return storage.hosts[s.Host.Self] }

// QueryAvailableDisksForVmfs lists the LUNs this host sees that carry no
// VMFS (ours or anyone's).
func (s *HostDatastoreSystem) QueryAvailableDisksForVmfs(ctx *simulator.Context, req *types.QueryAvailableDisksForVmfs) soap.HasFault {
	h := s.state()
	res := &types.QueryAvailableDisksForVmfsResponse{}
	seen := map[string]bool{}
	for _, p := range h.paths {
		l := storage.luns[p.naa]
		if l == nil || seen[p.naa] || l.volume != nil {
			continue
		}
		seen[p.naa] = true
		res.Returnval = append(res.Returnval, *scsiDisk(l))
	}
	return &methods.QueryAvailableDisksForVmfsBody{Res: res}
}

// visibleLun resolves "/vmfs/devices/disks/naa..." or "naa..." to a LUN
// this host has a path to.
func (h *hostStorage) visibleLun(device string) *lun {
	naa := strings.TrimPrefix(device, "/vmfs/devices/disks/")
	if !h.sees(naa) {
		return nil
	}
	return storage.luns[naa]
}

func (s *HostDatastoreSystem) QueryVmfsDatastoreCreateOptions(ctx *simulator.Context, req *types.QueryVmfsDatastoreCreateOptions) soap.HasFault {
	body := &methods.QueryVmfsDatastoreCreateOptionsBody{}
	l := s.state().visibleLun(req.DevicePath)
	if l == nil {
		body.Fault_ = fault(&types.NotFound{})
		return body
	}
	major := req.VmfsMajorVersion
	if major == 0 {
		major = 6
	}
	if major != 5 && major != 6 {
		body.Fault_ = fault(&types.InvalidArgument{InvalidProperty: "vmfsMajorVersion"})
		return body
	}
	blocks := l.size / 512
	end := blocks - 1
	block := func(n int64) types.HostDiskDimensionsLba {
		return types.HostDiskDimensionsLba{BlockSize: 512, Block: n}
	}
	extent := types.HostDiskPartitionBlockRange{Partition: 1, Type: "vmfs", Start: block(vmfsPartitionStart), End: block(end)}
	info := &types.VmfsDatastoreAllExtentOption{
		VmfsDatastoreSingleExtentOption: types.VmfsDatastoreSingleExtentOption{
			VmfsDatastoreBaseOption: types.VmfsDatastoreBaseOption{
				Layout: types.HostDiskPartitionLayout{
					Total:     &types.HostDiskDimensionsLba{BlockSize: 512, Block: blocks},
					Partition: []types.HostDiskPartitionBlockRange{extent},
				},
				PartitionFormatChange: types.NewBool(false),
			},
			VmfsExtent: extent,
		},
	}
	spec := &types.VmfsDatastoreCreateSpec{
		VmfsDatastoreSpec: types.VmfsDatastoreSpec{DiskUuid: lunUUID(l.naa)},
		Partition: types.HostDiskPartitionSpec{
			PartitionFormat: "gpt",
			TotalSectors:    blocks,
			Partition: []types.HostDiskPartitionAttributes{{
				Partition:   1,
				StartSector: vmfsPartitionStart,
				EndSector:   end,
				Type:        "vmfs",
				Guid:        "AA31E02A400F11DB9590000C2911D1B8",
			}},
		},
		Vmfs: types.HostVmfsSpec{
			Extent:       types.HostScsiDiskPartition{DiskName: l.naa, Partition: 1},
			MajorVersion: major,
			BlockSizeMb:  1,
		},
	}
	if major == 6 {
		spec.Vmfs.UnmapGranularity = 1024
		spec.Vmfs.UnmapPriority = "low"
	}
	body.Res = &types.QueryVmfsDatastoreCreateOptionsResponse{
		Returnval: []types.VmfsDatastoreOption{{Info: info, Spec: spec}},
	}
	return body
}

// CreateVmfsDatastore formats the LUN and mounts the new datastore on this
// host only; other hosts get it by rescanning. Like ESXi it refuses a LUN
// whose VMFS is mounted somewhere, and (like ESXi) it does overwrite a
// VMFS nobody mounts: the portal then reports overwrote_vmfs.
func (s *HostDatastoreSystem) CreateVmfsDatastore(ctx *simulator.Context, req *types.CreateVmfsDatastore) soap.HasFault {
	body := &methods.CreateVmfsDatastoreBody{}
	h := s.state()
	spec := req.Spec
	name := spec.Vmfs.VolumeName
	l := h.visibleLun(spec.Vmfs.Extent.DiskName)
	var f types.BaseMethodFault
	switch {
	case l == nil:
		f = &types.NotFound{}
	case name == "":
		f = &types.InvalidArgument{InvalidProperty: "spec.vmfs.volumeName"}
	case spec.Vmfs.MajorVersion != 0 && spec.Vmfs.MajorVersion != 5 && spec.Vmfs.MajorVersion != 6:
		f = &types.InvalidArgument{InvalidProperty: "spec.vmfs.majorVersion"}
	case l.volume != nil && l.volume.anyMounted():
		f = &types.HostConfigFault{} // device busy
	}
	if f == nil {
		if e := datastoreByName(name); e != nil {
			f = &types.DuplicateName{Name: name, Object: *e}
		}
	}
	if f != nil {
		body.Fault_ = fault(f)
		return body
	}
	if old := l.volume; old != nil {
		l.overwrote = l.overwrote || old.foreign
		dropVolume(ctx, old)
	}
	l.formats++
	v := &vmfsVolume{
		uuid:   vmfsUUID(name + "/" + l.naa + "/" + h.name + "/" + strconv.Itoa(l.formats)),
		name:   name,
		naa:    l.naa,
		size:   l.size,
		mounts: map[types.ManagedObjectReference]bool{h.ref: true},
	}
	l.volume = v
	storage.volumes[v.uuid] = v
	if f := v.ensureDatastore(ctx, h); f != nil {
		delete(storage.volumes, v.uuid)
		l.volume = nil
		body.Fault_ = fault(f)
		return body
	}
	publishVolume(v)
	body.Res = &types.CreateVmfsDatastoreResponse{Returnval: *v.ds}
	return body
}

func datastoreByName(name string) *types.ManagedObjectReference {
	for _, e := range simulator.Map.All("Datastore") {
		if ds, ok := e.(*simulator.Datastore); ok && ds.Name == name {
			ref := ds.Self
			return &ref
		}
	}
	return nil
}

// dropVolume deletes a volume and its Datastore object everywhere.
func dropVolume(ctx *simulator.Context, v *vmfsVolume) types.BaseMethodFault {
	if v.ds != nil {
		if ds, ok := simulator.Map.Get(*v.ds).(*simulator.Datastore); ok {
			if len(ds.Vm) > 0 {
				return &types.ResourceInUse{Type: "Datastore", Name: v.name}
			}
			for ref := range v.mounts {
				hostRemoveDatastore(ref, ds.Self)
			}
			res := ds.DestroyTask(ctx, &types.Destroy_Task{This: ds.Self})
			t := simulator.Map.Get(res.(*methods.Destroy_TaskBody).Res.Returnval).(*simulator.Task)
			if t.Info.Error != nil {
				return t.Info.Error.Fault
			}
		}
		_ = os.RemoveAll(v.dir)
		v.ds = nil
	}
	hosts := v.mounts
	v.mounts = map[types.ManagedObjectReference]bool{}
	delete(storage.volumes, v.uuid)
	// A LUN that since changed identity keeps the content (the old device
	// is gone, so nothing could erase it).
	if l := storage.luns[v.naa]; l != nil && l.volume == v {
		l.volume = nil
	}
	for ref := range hosts {
		if h := storage.hosts[ref]; h != nil {
			h.publishHost()
		}
	}
	return nil
}

// RemoveDatastore deletes a VMFS datastore (its volume is gone for every
// host, as when vCenter deletes it) and unmounts an NFS one from this host.
func (s *HostDatastoreSystem) RemoveDatastore(ctx *simulator.Context, req *types.RemoveDatastore) soap.HasFault {
	body := &methods.RemoveDatastoreBody{}
	h := s.state()
	ds, ok := simulator.Map.Get(req.Datastore).(*simulator.Datastore)
	if !ok || simulator.FindReference(s.Host.Datastore, req.Datastore) == nil {
		body.Fault_ = fault(&types.NotFound{})
		return body
	}
	for _, v := range storage.volumes {
		if v.ds != nil && *v.ds == ds.Self {
			if f := dropVolume(ctx, v); f != nil {
				body.Fault_ = fault(f)
				return body
			}
			body.Res = &types.RemoveDatastoreResponse{}
			return body
		}
	}
	// Not one of our VMFS volumes: unmount from this host only.
	for _, vmRef := range ds.Vm {
		if vm := vmMO(simulator.Map.Get(vmRef)); vm != nil && vm.Runtime.Host != nil && *vm.Runtime.Host == h.ref {
			body.Fault_ = fault(&types.ResourceInUse{Type: "Datastore", Name: ds.Name})
			return body
		}
	}
	hostRemoveDatastore(h.ref, ds.Self)
	var mounts []types.DatastoreHostMount
	for _, m := range ds.Host {
		if m.Key != h.ref {
			mounts = append(mounts, m)
		}
	}
	if len(mounts) == 0 {
		res := ds.DestroyTask(ctx, &types.Destroy_Task{This: ds.Self})
		t := simulator.Map.Get(res.(*methods.Destroy_TaskBody).Res.Returnval).(*simulator.Task)
		if t.Info.Error != nil {
			body.Fault_ = fault(t.Info.Error.Fault)
			return body
		}
	} else {
		simulator.Map.WithLock(ds, func() {
			summary := ds.Summary
			summary.MultipleHostAccess = types.NewBool(len(mounts) > 1)
			simulator.Map.Update(ds, []types.PropertyChange{{Name: "host", Val: mounts}, {Name: "summary", Val: summary}})
		})
	}
	h.publishHost()
	body.Res = &types.RemoveDatastoreResponse{}
	return body
}
