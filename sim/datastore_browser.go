package main

import (
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HostDatastoreBrowser lists every file when the search spec has no
// matchPattern, as ESXi does (vcsim 0.24.2 then matches nothing).
type HostDatastoreBrowser struct {
	simulator.HostDatastoreBrowser
}

func (b *HostDatastoreBrowser) SearchDatastoreTask(req *types.SearchDatastore_Task) soap.HasFault {
	r := *req
	r.SearchSpec = defaultPattern(req.SearchSpec)
	return b.HostDatastoreBrowser.SearchDatastoreTask(&r)
}

func (b *HostDatastoreBrowser) SearchDatastoreSubFoldersTask(req *types.SearchDatastoreSubFolders_Task) soap.HasFault {
	r := *req
	r.SearchSpec = defaultPattern(req.SearchSpec)
	return b.HostDatastoreBrowser.SearchDatastoreSubFoldersTask(&r)
}

func defaultPattern(spec *types.HostDatastoreBrowserSearchSpec) *types.HostDatastoreBrowserSearchSpec {
	if spec == nil {
		return &types.HostDatastoreBrowserSearchSpec{MatchPattern: []string{"*"}}
	}
	if len(spec.MatchPattern) == 0 {
		s := *spec
		s.MatchPattern = []string{"*"}
		return &s
	}
	return spec
}
