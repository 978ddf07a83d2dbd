package main

import (
	"strconv"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// PropertyCollector adds paging to RetrievePropertiesEx (vcsim 0.24.2
// ignores options.maxObjects). vcsim makes a per-session copy of the root
// collector with reflect.New of this type, so the zero value must work.
type PropertyCollector struct {
	simulator.PropertyCollector

	mu    sync.Mutex
	pages map[string][]types.ObjectContent
	seq   int
}

func (pc *PropertyCollector) RetrievePropertiesEx(ctx *simulator.Context, req *types.RetrievePropertiesEx) soap.HasFault {
	res := pc.PropertyCollector.RetrievePropertiesEx(ctx, req)
	body, ok := res.(*methods.RetrievePropertiesExBody)
	if !ok || body.Res == nil || body.Res.Returnval == nil {
		return res
	}
	max := int(req.Options.MaxObjects)
	objects := body.Res.Returnval.Objects
	if max <= 0 || len(objects) <= max {
		return res
	}
	body.Res.Returnval = pc.page(objects, max)
	return body
}

func (pc *PropertyCollector) ContinueRetrievePropertiesEx(ctx *simulator.Context, req *types.ContinueRetrievePropertiesEx) soap.HasFault {
	body := &methods.ContinueRetrievePropertiesExBody{}
	pc.mu.Lock()
	rest, ok := pc.pages[req.Token]
	delete(pc.pages, req.Token)
	pc.mu.Unlock()
	if !ok {
		body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "token"})
		return body
	}
	// Later pages keep the page size of the first call.
	max := len(rest)
	if n, ok := pc.pageSize(req.Token); ok {
		max = n
	}
	body.Res = &types.ContinueRetrievePropertiesExResponse{Returnval: *pc.page(rest, max)}
	return body
}

func (pc *PropertyCollector) CancelRetrievePropertiesEx(ctx *simulator.Context, req *types.CancelRetrievePropertiesEx) soap.HasFault {
	pc.mu.Lock()
	delete(pc.pages, req.Token)
	pc.mu.Unlock()
	return &methods.CancelRetrievePropertiesExBody{Res: &types.CancelRetrievePropertiesExResponse{}}
}

// page returns the first max objects and keeps the rest under a new token.
func (pc *PropertyCollector) page(objects []types.ObjectContent, max int) *types.RetrieveResult {
	if len(objects) <= max {
		return &types.RetrieveResult{Objects: objects}
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.pages == nil {
		pc.pages = map[string][]types.ObjectContent{}
	}
	pc.seq++
	token := strconv.Itoa(pc.seq) + ":" + strconv.Itoa(max)
	pc.pages[token] = objects[max:]
	return &types.RetrieveResult{Objects: objects[:max], Token: token}
}

// pageSize reads the page size encoded in a token ("seq:max").
func (pc *PropertyCollector) pageSize(token string) (int, bool) {
	for i := len(token) - 1; i >= 0; i-- {
		if token[i] == ':' {
			n, err := strconv.Atoi(token[i+1:])
			return n, err == nil && n > 0
		}
	}
	return 0, false
}
