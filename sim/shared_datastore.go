package main

import (
	"context"
	"os"
	"path/filepath"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

const sharedDatastoreName = "shared-ds"

// addSharedDatastore makes one NFS datastore, backed by DIR/datastores/
// shared-ds, mounted on every host: the "datastore not local" case.
// vcsim 0.24.2 would make a separate object per CreateNasDatastore call,
// so it is created through the first host and mounted on the others.
func addSharedDatastore(ctx context.Context, hosts []labHost, dsRoot string) (string, error) {
	dir := filepath.Join(dsRoot, sharedDatastoreName)
	if err := os.MkdirAll(dir, 0700); err != nil {
		return "", err
	}
	dss, err := hosts[0].host.ConfigManager().DatastoreSystem(ctx)
	if err != nil {
		return "", err
	}
	ref, err := dss.CreateNasDatastore(ctx, types.HostNasVolumeSpec{
		RemoteHost: "nfs.lab.local",
		RemotePath: "/export/" + sharedDatastoreName,
		LocalPath:  dir,
		AccessMode: string(types.HostMountModeReadWrite),
		Type:       string(types.HostFileSystemVolumeFileSystemTypeNFS),
	})
	if err != nil {
		return "", err
	}
	ds := simulator.Map.Get(ref.Reference()).(*simulator.Datastore)
	wrapBrowser(ds)

	mountShared(ds.Self, hosts)
	return ds.Name, nil
}

// mountShared mounts the shared datastore on hosts (in addition to the
// hosts already mounting it) and republishes every host's storage.
func mountShared(ref types.ManagedObjectReference, hosts []labHost) {
	ds := simulator.Map.Get(ref).(*simulator.Datastore)
	var mounts []types.DatastoreHostMount
	simulator.Map.WithLock(ds, func() {
		for _, m := range ds.Host {
			keep := true
			for _, h := range hosts {
				keep = keep && m.Key != h.host.Reference()
			}
			if keep {
				mounts = append(mounts, m)
			}
		}
	})
	for _, h := range hosts {
		hostAddDatastore(h.host.Reference(), ds.Self)
		mounts = append(mounts, types.DatastoreHostMount{
			Key: h.host.Reference(),
			MountInfo: types.HostMountInfo{
				Path:       "/vmfs/volumes/" + vmfsUUID(ds.Name)[:17],
				AccessMode: string(types.HostMountModeReadWrite),
				Mounted:    types.NewBool(true),
				Accessible: types.NewBool(true),
			},
		})
	}
	simulator.Map.WithLock(ds, func() {
		summary := ds.Summary
		summary.MultipleHostAccess = types.NewBool(true)
		simulator.Map.Update(ds, []types.PropertyChange{{Name: "host", Val: mounts}, {Name: "summary", Val: summary}})
	})

	storage.mu.Lock()
	defer storage.mu.Unlock()
	for _, h := range storage.hosts {
		h.publishHost()
	}
}
