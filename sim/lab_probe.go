package main

import (
	"encoding/json"
	"fmt"
	"log"
	"strings"

	"github.com/vmware/govmomi/vim25/types"
)

// In lab mode a rescan logs in for real to a send target that no test
// registered on /portals: the hook's probe verb (lab_hook.go) does the
// iSCSI discovery, login, INQUIRY (VPD 0x83) and READ CAPACITY(16) inside
// the lab namespace, with the CHAP the adapter holds. Its LUNs then join
// the same model registered portals feed (iscsi.go): a path per target and
// a lun per naa id, whose VMFS volume (vmfs.go) outlives the paths.

type probeChap struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

type probeRequest struct {
	Address   string     `json:"address"`
	Port      int32      `json:"port"`
	Initiator string     `json:"initiator"` // the adapter's IQN
	Chap      *probeChap `json:"chap"`
}

type probeLun struct {
	IQN           string `json:"iqn"`
	Lun           int    `json:"lun"`
	NAA           string `json:"naa"`
	CapacityBytes int64  `json:"capacity_bytes"`
	BlockSize     int64  `json:"block_size"`
}

// probe asks the hook which LUNs the send target serves to this host; on
// any failure the answer is none, with the reason in the log.
func (h *hostStorage) probe(st *sendTarget) []probeLun {
	req := probeRequest{Address: st.address, Port: st.port, Initiator: h.iqn}
	a := h.effectiveAuth(st)
	if a.ChapAuthenticationType != "" &&
		a.ChapAuthenticationType != string(types.HostInternetScsiHbaChapAuthenticationTypeChapProhibited) {
		req.Chap = &probeChap{Name: a.ChapName, Secret: a.ChapSecret}
	}
	out, err := hook.run("probe", req, hookProbeTimeout)
	if err != nil {
		log.Printf("%s: rescan %s:%d: no disk: %s", h.name, st.address, st.port, err)
		return nil
	}
	var res struct {
		Luns []probeLun `json:"luns"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		log.Printf("%s: rescan %s:%d: no disk: probe answered no JSON: %s", h.name, st.address, st.port, err)
		return nil
	}
	var good []probeLun
	for _, l := range res.Luns {
		if err := l.check(); err != nil {
			log.Printf("%s: rescan %s:%d: LUN ignored: %s", h.name, st.address, st.port, err)
			continue
		}
		l.NAA = strings.ToLower(l.NAA)
		good = append(good, l)
	}
	log.Printf("%s: rescan %s:%d: %d LUN(s)", h.name, st.address, st.port, len(good))
	return good
}

func (l probeLun) check() error {
	switch {
	case !strings.HasPrefix(l.IQN, "iqn.") && !strings.HasPrefix(l.IQN, "eui.") && !strings.HasPrefix(l.IQN, "naa."):
		return fmt.Errorf("bad target name %q", l.IQN)
	case l.Lun != 0:
		return fmt.Errorf("%s LUN %d: only LUN 0 is modelled", l.IQN, l.Lun)
	case !strings.HasPrefix(strings.ToLower(l.NAA), "naa.") || len(l.NAA) < 8:
		return fmt.Errorf("%s: bad naa %q", l.IQN, l.NAA)
	case l.CapacityBytes <= 0 || l.BlockSize <= 0 || l.CapacityBytes%l.BlockSize != 0:
		return fmt.Errorf("%s: bad capacity %d / block size %d", l.IQN, l.CapacityBytes, l.BlockSize)
	}
	return nil
}

// probedPaths turns a probe's LUNs into paths, registering each LUN (by
// naa) in the storage model. Caller holds storage.mu.
func (h *hostStorage) probedPaths(st *sendTarget) []path {
	var out []path
	for _, l := range h.probe(st) {
		lu, ok := storage.luns[l.NAA]
		if !ok {
			lu = &lun{naa: l.NAA, vendor: "LIO-ORG"}
			storage.luns[l.NAA] = lu
		}
		lu.size = l.CapacityBytes // a LUN may grow behind the same naa
		out = append(out, path{address: st.address, port: st.port, iqn: l.IQN, naa: l.NAA})
	}
	return out
}
