package main

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// Unresolved (snapshot) VMFS volumes. A VMFS volume's signature names the
// device it was made on (vmfsVolume.naa). When a storage appliance presents
// the same LUN content under a new naa id (POST
// /portals/<address>/change-identity), the volume moves with the content
// to the new lun record but keeps its signature: ESXi then treats it as a
// snapshot. RescanVmfs does not mount it, QueryAvailableDisksForVmfs does
// not offer its disk, and QueryUnresolvedVmfsVolume lists it. Its old
// datastore stays mounted on the hosts, inaccessible once they rescan.

// unresolved says whether the LUN carries a VMFS volume whose signature
// names another device.
func (l *lun) unresolved() bool { return l.volume != nil && l.volume.naa != l.naa }

// changeIdentity handles POST /portals/<address>/change-identity
// {"naa":"naa.new..."}: the LUN behind the portal (and so every portal
// presenting the same naa) now presents its content under the new naa.
// The old naa stays known (without content) so hosts that have not
// rescanned keep their view of it until they do.
func changeIdentity(w http.ResponseWriter, r *http.Request, address string) {
	var req struct {
		NAA string `json:"naa"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	naa := strings.ToLower(req.NAA)
	if !strings.HasPrefix(naa, "naa.") || len(naa) < 8 {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "naa must look like naa.6001405..."})
		return
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	p, ok := storage.portals[address]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no portal " + address})
		return
	}
	oldNaa := p.NAA
	if naa == oldNaa {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "portal already presents " + naa})
		return
	}
	for _, other := range storage.portals {
		if other.NAA == naa {
			writeJSON(w, http.StatusConflict, map[string]string{"error": naa + " is presented by portal " + other.Address})
			return
		}
	}
	if l := storage.luns[naa]; l != nil && l.volume != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": naa + " already carries VMFS " + l.volume.name})
		return
	}
	old := storage.luns[oldNaa]
	n := &lun{
		naa:       naa,
		size:      old.size,
		vendor:    old.vendor,
		volume:    old.volume,
		formats:   old.formats,
		overwrote: old.overwrote,
	}
	storage.luns[naa] = n
	// The old identity no longer has the content; it stays in luns so hosts
	// that still hold paths to it render the disk until they rescan.
	old.volume = nil
	old.formats, old.overwrote = 0, false
	var moved []string
	for _, other := range storage.portals {
		if other.NAA == oldNaa {
			other.NAA = naa
			moved = append(moved, other.Address)
		}
	}
	out := portalJSON(p)
	out["previous_naa"] = oldNaa
	out["portals_moved"] = moved
	writeJSON(w, http.StatusOK, out)
}

// unresolvedVolumes lists the snapshot VMFS volumes on disks this host has
// a path to. Caller holds storage.mu.
func (h *hostStorage) unresolvedVolumes() []types.HostUnresolvedVmfsVolume {
	out := []types.HostUnresolvedVmfsVolume{}
	seen := map[string]bool{}
	for _, p := range h.paths {
		l := storage.luns[p.naa]
		if l == nil || seen[p.naa] || !l.unresolved() {
			continue
		}
		seen[p.naa] = true
		v := l.volume
		blocks := int32(v.capacity() >> 20) // 1 MB VMFS blocks
		out = append(out, types.HostUnresolvedVmfsVolume{
			Extent: []types.HostUnresolvedVmfsExtent{{
				Device:       types.HostScsiDiskPartition{DiskName: l.naa, Partition: 1},
				DevicePath:   "/vmfs/devices/disks/" + l.naa + ":1",
				VmfsUuid:     v.uuid,
				IsHeadExtent: true,
				Ordinal:      0,
				StartBlock:   0,
				EndBlock:     blocks - 1,
				Reason:       string(types.HostUnresolvedVmfsExtentUnresolvedReasonDiskIdMismatch),
			}},
			VmfsLabel:   v.name,
			VmfsUuid:    v.uuid,
			TotalBlocks: blocks,
			ResolveStatus: types.HostUnresolvedVmfsVolumeResolveStatus{
				Resolvable:        true,
				IncompleteExtents: types.NewBool(false),
				MultipleCopies:    types.NewBool(false),
			},
		})
	}
	return out
}

// QueryUnresolvedVmfsVolume (vcsim has no such method: without this it
// answers MethodNotFound).
func (s *HostStorageSystem) QueryUnresolvedVmfsVolume(ctx *simulator.Context, req *types.QueryUnresolvedVmfsVolume) soap.HasFault {
	return &methods.QueryUnresolvedVmfsVolumeBody{
		Res: &types.QueryUnresolvedVmfsVolumeResponse{Returnval: s.state().unresolvedVolumes()},
	}
}

// QueryUnresolvedVmfsVolumes is the HostDatastoreSystem twin of the above.
func (s *HostDatastoreSystem) QueryUnresolvedVmfsVolumes(ctx *simulator.Context, req *types.QueryUnresolvedVmfsVolumes) soap.HasFault {
	return &methods.QueryUnresolvedVmfsVolumesBody{
		Res: &types.QueryUnresolvedVmfsVolumesResponse{Returnval: s.state().unresolvedVolumes()},
	}
}
