package main

import (
	"bytes"
	"io/ioutil"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// Some vcsim types cannot be swapped for a wrapper in simulator.Map: vcsim
// type-asserts *simulator.ClusterComputeResource (hostParent, used by
// CreateVM, datastores, events) and *simulator.Folder (MoveIntoFolder,
// host Destroy) all over. For the few methods we override on those types,
// the /sdk middleware below retargets the request's _this to a proxy object
// ("VsaClusterComputeResource:domain-c7") registered under the same value;
// the proxy implements the method and works on the real object. vcsim still
// does the decoding, authentication, locking and response encoding.

// proxied maps "Method/Type" to the proxy type that implements it.
var proxied = map[string]string{
	"ReconfigureComputeResource_Task/ClusterComputeResource": "VsaClusterComputeResource",
	"MoveInto_Task/ClusterComputeResource":                   "VsaClusterComputeResource",
	"AddHost_Task/ClusterComputeResource":                    "VsaClusterComputeResource",
	"AddStandaloneHost_Task/Folder":                          "VsaFolder",
	"CreateClusterEx/Folder":                                 "VsaFolder",
	"CreateFolder/Folder":                                    "VsaFolder",
	"MoveIntoFolder_Task/Folder":                             "VsaFolder",
	"ImportVApp/ResourcePool":                                "VsaResourcePool",
}

// proxyFactories builds a proxy for a target object.
var proxyFactories = map[string]func(target types.ManagedObjectReference) mo.Reference{
	"VsaClusterComputeResource": func(t types.ManagedObjectReference) mo.Reference { return newClusterProxy(t) },
	"VsaFolder":                 func(t types.ManagedObjectReference) mo.Reference { return newFolderProxy(t) },
	"VsaResourcePool":           func(t types.ManagedObjectReference) mo.Reference { return newResourcePoolProxy(t) },
}

var thisRE = regexp.MustCompile(`<_this\b[^>]*?\btype="([A-Za-z]+)"[^>]*>([^<]*)</_this>`)

var proxyMu sync.Mutex

func proxyWrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/sdk") {
			body, err := ioutil.ReadAll(r.Body)
			_ = r.Body.Close()
			if err == nil {
				body = retarget(body)
			}
			r.Body = ioutil.NopCloser(bytes.NewReader(body))
		}
		next.ServeHTTP(w, r)
	})
}

// pyVmomi types a managed object in an xsd:anyType slot (for example
// ArrayUpdateSpec.removeKey) as xsi:type="ManagedObject", which vcsim's
// decoder does not know and turns into nil; vCenter reads it as a moref.
var (
	anyManagedObject = []byte(`xsi:type="ManagedObject"`)
	anyMoRef         = []byte(`xsi:type="ManagedObjectReference"`)
)

// retarget rewrites _this for proxied methods and makes sure the proxy
// exists; other requests pass unchanged.
func retarget(body []byte) []byte {
	body = bytes.ReplaceAll(body, anyManagedObject, anyMoRef)
	method := soapMethod(body)
	if method == "" {
		return body
	}
	m := thisRE.FindSubmatchIndex(body)
	if m == nil {
		return body
	}
	kind := string(body[m[2]:m[3]])
	proxyType, ok := proxied[method+"/"+kind]
	if !ok {
		return body
	}
	target := types.ManagedObjectReference{Type: kind, Value: strings.TrimSpace(string(body[m[4]:m[5]]))}
	if simulator.Map.Get(target) == nil {
		return body // let vcsim report ManagedObjectNotFound
	}
	ensureProxy(proxyType, target)
	out := make([]byte, 0, len(body)+8)
	out = append(out, body[:m[2]]...)
	out = append(out, proxyType...)
	out = append(out, body[m[3]:]...)
	return out
}

func ensureProxy(proxyType string, target types.ManagedObjectReference) {
	ref := types.ManagedObjectReference{Type: proxyType, Value: target.Value}
	proxyMu.Lock()
	defer proxyMu.Unlock()
	if simulator.Map.Get(ref) != nil {
		return
	}
	// Not Map.Put: the proxy is no managed object and views must not see it.
	replaceObject(ref, proxyFactories[proxyType](target))
}
