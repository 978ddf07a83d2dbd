package main

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// Control routes for the iSCSI data path model (iscsi.go):
//
//	GET    /portals                         list portals (secrets never shown)
//	POST   /portals                         register or replace a portal:
//	       {"address":"10.11.55.50","port":3260,"iqn":"iqn...",
//	        "lun_size_bytes":N,"naa":"naa.6001405...",
//	        "chap_secret":"optional","chap_name":"optional","vendor":"optional"}
//	DELETE /portals/<address>               take the portal down
//	POST   /portals/<address>/foreign-vmfs  put someone else's VMFS on its LUN:
//	       {"name":"optional volume name"}
//	POST   /portals/<address>/change-identity  present the LUN's content
//	       (VMFS included) under a new naa id, as a snapshot/replica would:
//	       {"naa":"naa.6001405..."}; every portal presenting the old naa
//	       moves with it (unresolved_vmfs.go)
//
// Hosts notice changes only when they rescan, as real ESXi hosts do.
func registerPortalRoutes(c *control) {
	c.mux.HandleFunc("/portals", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			storage.mu.Lock()
			defer storage.mu.Unlock()
			out := []map[string]interface{}{}
			var addrs []string
			for a := range storage.portals {
				addrs = append(addrs, a)
			}
			sort.Strings(addrs)
			for _, a := range addrs {
				out = append(out, portalJSON(storage.portals[a]))
			}
			writeJSON(w, http.StatusOK, out)
		case http.MethodPost:
			addPortal(w, r)
		default:
			w.Header().Set("Allow", "GET, POST")
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "method not allowed"})
		}
	})
	c.mux.HandleFunc("/portals/", func(w http.ResponseWriter, r *http.Request) {
		rest := strings.TrimPrefix(r.URL.Path, "/portals/")
		switch {
		case r.Method == http.MethodDelete && !strings.Contains(rest, "/"):
			storage.mu.Lock()
			defer storage.mu.Unlock()
			if _, ok := storage.portals[rest]; !ok {
				writeJSON(w, http.StatusNotFound, map[string]string{"error": "no portal " + rest})
				return
			}
			delete(storage.portals, rest)
			writeJSON(w, http.StatusOK, map[string]string{"removed": rest})
		case r.Method == http.MethodPost && strings.HasSuffix(rest, "/foreign-vmfs"):
			foreignVmfs(w, r, strings.TrimSuffix(rest, "/foreign-vmfs"))
		case r.Method == http.MethodPost && strings.HasSuffix(rest, "/change-identity"):
			changeIdentity(w, r, strings.TrimSuffix(rest, "/change-identity"))
		default:
			writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such route"})
		}
	})
}

func addPortal(w http.ResponseWriter, r *http.Request) {
	var p portal
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	if p.Port == 0 {
		p.Port = 3260
	}
	switch {
	case p.Address == "" || strings.Contains(p.Address, "/"):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "address required"})
		return
	case !strings.HasPrefix(p.IQN, "iqn."):
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "iqn must start with iqn."})
		return
	case !strings.HasPrefix(p.NAA, "naa.") || len(p.NAA) < 8:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "naa must look like naa.6001405..."})
		return
	case p.LunSize <= 0 || p.LunSize%512 != 0:
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "lun_size_bytes must be a positive multiple of 512"})
		return
	}
	p.NAA = strings.ToLower(p.NAA)
	storage.mu.Lock()
	defer storage.mu.Unlock()
	l, ok := storage.luns[p.NAA]
	if !ok {
		l = &lun{naa: p.NAA}
		storage.luns[p.NAA] = l
	}
	l.size = p.LunSize // a LUN may grow behind the same naa
	l.vendor = p.Vendor
	storage.portals[p.Address] = &p
	writeJSON(w, http.StatusCreated, portalJSON(&p))
}

func foreignVmfs(w http.ResponseWriter, r *http.Request, address string) {
	var req struct {
		Name string `json:"name"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	p, ok := storage.portals[address]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no portal " + address})
		return
	}
	l := storage.luns[p.NAA]
	if l.volume != nil {
		writeJSON(w, http.StatusConflict, map[string]string{"error": "LUN already carries VMFS " + l.volume.name})
		return
	}
	if req.Name == "" {
		req.Name = "foreign-vmfs"
	}
	v := &vmfsVolume{
		uuid:    vmfsUUID("foreign/" + req.Name + "/" + l.naa),
		name:    req.Name,
		naa:     l.naa,
		size:    l.size,
		foreign: true,
		mounts:  map[types.ManagedObjectReference]bool{},
	}
	l.volume = v
	storage.volumes[v.uuid] = v
	writeJSON(w, http.StatusCreated, portalJSON(p))
}

// portalJSON describes a portal, its LUN and who is logged in; caller
// holds storage.mu.
func portalJSON(p *portal) map[string]interface{} {
	out := map[string]interface{}{
		"address":        p.Address,
		"port":           p.Port,
		"iqn":            p.IQN,
		"naa":            p.NAA,
		"lun_size_bytes": p.LunSize,
		"chap":           p.ChapSecret != "",
		"chap_name":      p.ChapName,
		"vendor":         p.Vendor,
	}
	sessions := []string{}
	for _, h := range storage.hosts {
		for _, path := range h.paths {
			if path.address == p.Address && path.iqn == p.IQN {
				sessions = append(sessions, h.name)
			}
		}
	}
	sort.Strings(sessions)
	out["sessions"] = sessions
	if l := storage.luns[p.NAA]; l != nil {
		out["formats"] = l.formats
		out["overwrote_vmfs"] = l.overwrote
		if v := l.volume; v != nil {
			vol := map[string]interface{}{"name": v.name, "uuid": v.uuid, "foreign": v.foreign}
			mounted := []string{}
			for ref, m := range v.mounts {
				if m {
					if h := storage.hosts[ref]; h != nil {
						mounted = append(mounted, h.name)
					}
				}
			}
			sort.Strings(mounted)
			vol["mounted_on"] = mounted
			if v.ds != nil {
				vol["datastore"] = v.ds.Value
			}
			out["vmfs"] = vol
		} else {
			out["vmfs"] = nil
		}
	}
	return out
}

// installStorage swaps in our storage and datastore systems and the
// autostart manager for one host and publishes its storage state.
func installStorage(host *simulator.HostSystem) error {
	ss := simulator.Map.Get(*host.ConfigManager.StorageSystem).(*simulator.HostStorageSystem)
	replaceObject(ss.Self, &HostStorageSystem{HostStorageSystem: *ss})
	dss := simulator.Map.Get(*host.ConfigManager.DatastoreSystem).(*simulator.HostDatastoreSystem)
	replaceObject(dss.Self, &HostDatastoreSystem{HostDatastoreSystem: *dss})
	installAutoStartManager(host)

	h, err := newHostStorage(host)
	if err != nil {
		return err
	}
	storage.mu.Lock()
	defer storage.mu.Unlock()
	storage.hosts[host.Self] = h
	h.publishHost()
	return nil
}
