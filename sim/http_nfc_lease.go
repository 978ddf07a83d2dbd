package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/methods"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/soap"
	"github.com/vmware/govmomi/vim25/types"
)

// HttpNfcLease replaces vcsim 0.24.2's lease, which is ready at once,
// discards every upload, never times out and leaves the VM behind on abort.
// Ours behaves like vSphere's import lease:
//   - initializing, then ready once the VM exists (clients must wait);
//   - a PUT/POST of a streamOptimized VMDK to a disk's device URL
//     (/nfc/<lease>/<file>, carrying the importing session's cookie) is
//     decoded into that disk's flat extent on the datastore, so the file
//     that lands is the disk's real content;
//   - HttpNfcLeaseProgress keeps it alive; without one for leaseTimeout
//     seconds it expires (state error) like an abort;
//   - HttpNfcLeaseAbort (or expiry) sets state error and destroys the VM
//     being imported with its files: nothing half-made stays behind;
//   - HttpNfcLeaseComplete (state done) is refused while an upload runs or
//     after one failed.
type HttpNfcLease struct {
	mo.HttpNfcLease
	sync.Mutex // vcsim locks an object that is a sync.Locker with its own lock

	session   *simulator.Session // the importing session: its cookie may upload
	files     map[string]*nfcFile
	keepAlive time.Time
	done      chan struct{}
}

type nfcFile struct {
	datastorePath string
	flat          string
	state         string // "", "uploading", "uploaded", "failed"
	bytes         int64
}

var (
	// nfcLeaseTimeout is every new lease's info.leaseTimeout (vSphere: 300 s).
	nfcLeaseTimeout = 300 * time.Second
	nfcLeases       sync.Map // lease id -> *HttpNfcLease
	nfcSeq          int64
)

const nfcPath = "/nfc/"

func nextLeaseID() string {
	return fmt.Sprintf("lease-%d", atomic.AddInt64(&nfcSeq, 1))
}

// newImportLease registers a lease for importing vm; it turns ready after
// a short delay, as vSphere's does once the VM is created.
func newImportLease(ctx *simulator.Context, id string, vm *VirtualMachine, files map[string]*nfcFile, urls []types.HttpNfcLeaseDeviceUrl, capacityKB int64) *HttpNfcLease {
	l := &HttpNfcLease{session: ctx.Session, files: files, done: make(chan struct{})}
	l.Self = types.ManagedObjectReference{Type: "HttpNfcLease", Value: id}
	l.State = types.HttpNfcLeaseStateInitializing
	l.InitializeProgress = 0
	l.Info = &types.HttpNfcLeaseInfo{
		Lease:                 l.Self,
		Entity:                vm.Self,
		DeviceUrl:             urls,
		TotalDiskCapacityInKB: capacityKB,
		LeaseTimeout:          int32(nfcLeaseTimeout / time.Second),
	}
	ctx.Session.Put(l)
	nfcLeases.Store(id, l)
	go l.run()
	return l
}

// run makes the lease ready, then expires it when keep-alives stop.
func (l *HttpNfcLease) run() {
	time.Sleep(200 * time.Millisecond)
	l.Lock()
	if l.State == types.HttpNfcLeaseStateInitializing {
		l.State = types.HttpNfcLeaseStateReady
		l.InitializeProgress = 100
		l.keepAlive = time.Now()
	}
	l.Unlock()
	tick := time.NewTicker(nfcLeaseTimeout / 10)
	defer tick.Stop()
	for {
		select {
		case <-l.done:
			return
		case now := <-tick.C:
			l.Lock()
			if l.State == types.HttpNfcLeaseStateReady && now.Sub(l.keepAlive) > nfcLeaseTimeout {
				log.Printf("nfc %s: no progress for %s: lease expired", l.Self.Value, nfcLeaseTimeout)
				l.fail(&types.Timedout{}, "the lease timed out (no HttpNfcLeaseProgress)")
			}
			l.Unlock()
		}
	}
}

func (l *HttpNfcLease) finish() {
	select {
	case <-l.done:
	default:
		close(l.done)
	}
}

// fail sets state error and removes the half-made VM. The caller holds l's lock.
func (l *HttpNfcLease) fail(fault types.BaseMethodFault, msg string) {
	l.State = types.HttpNfcLeaseStateError
	l.Error = &types.LocalizedMethodFault{Fault: fault, LocalizedMessage: msg}
	l.finish()
	ref := l.Info.Entity
	ctx := &simulator.Context{Context: context.Background(), Map: simulator.Map, Session: l.session}
	simulator.Map.WithLock(ref, func() {
		vm, ok := simulator.Map.Get(ref).(*VirtualMachine)
		if !ok {
			return
		}
		res := vm.DestroyTask(ctx, &types.Destroy_Task{This: ref}).(*methods.Destroy_TaskBody)
		if f := innerFault(res.Res.Returnval); f != nil {
			log.Printf("nfc %s: removing %s: %T", l.Self.Value, vm.Name, f)
		}
	})
}

func (l *HttpNfcLease) faultBody(msg string) *soap.Fault {
	return simulator.Fault(msg, &types.InvalidState{})
}

func (l *HttpNfcLease) HttpNfcLeaseProgress(ctx *simulator.Context, req *types.HttpNfcLeaseProgress) soap.HasFault {
	body := &methods.HttpNfcLeaseProgressBody{}
	if l.State != types.HttpNfcLeaseStateReady {
		body.Fault_ = l.faultBody(fmt.Sprintf("lease is %s, not ready", l.State))
		return body
	}
	if req.Percent < 0 || req.Percent > 100 {
		body.Fault_ = simulator.Fault("", &types.InvalidArgument{InvalidProperty: "percent"})
		return body
	}
	l.TransferProgress = req.Percent
	l.keepAlive = time.Now()
	body.Res = &types.HttpNfcLeaseProgressResponse{}
	return body
}

func (l *HttpNfcLease) HttpNfcLeaseComplete(ctx *simulator.Context, req *types.HttpNfcLeaseComplete) soap.HasFault {
	body := &methods.HttpNfcLeaseCompleteBody{}
	if l.State != types.HttpNfcLeaseStateReady {
		body.Fault_ = l.faultBody(fmt.Sprintf("lease is %s, not ready", l.State))
		return body
	}
	for name, f := range l.files {
		if f.state == "uploading" || f.state == "failed" {
			body.Fault_ = l.faultBody(fmt.Sprintf("upload of %s %s", name, map[string]string{
				"uploading": "is still running", "failed": "failed"}[f.state]))
			return body
		}
	}
	l.State = types.HttpNfcLeaseStateDone
	l.TransferProgress = 100
	l.finish()
	body.Res = &types.HttpNfcLeaseCompleteResponse{}
	return body
}

func (l *HttpNfcLease) HttpNfcLeaseAbort(ctx *simulator.Context, req *types.HttpNfcLeaseAbort) soap.HasFault {
	body := &methods.HttpNfcLeaseAbortBody{}
	switch l.State {
	case types.HttpNfcLeaseStateDone:
		body.Fault_ = l.faultBody("lease is done")
		return body
	case types.HttpNfcLeaseStateError:
	default:
		l.fail(&types.RequestCanceled{}, "the import was aborted")
	}
	body.Res = &types.HttpNfcLeaseAbortResponse{}
	return body
}

// serveNFC receives a disk upload: PUT or POST /nfc/<lease>/<file>.
func serveNFC(w http.ResponseWriter, r *http.Request) {
	parts := strings.Split(strings.TrimPrefix(r.URL.Path, nfcPath), "/")
	if len(parts) != 2 {
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		http.Error(w, "only uploads are supported", http.StatusMethodNotAllowed)
		return
	}
	v, ok := nfcLeases.Load(parts[0])
	if !ok {
		http.NotFound(w, r)
		return
	}
	l := v.(*HttpNfcLease)
	cookie, err := r.Cookie(soap.SessionCookieName)
	if err != nil || cookie.Value != l.session.Key {
		log.Printf("nfc %s: upload without the importing session's cookie refused", l.Self.Value)
		http.Error(w, "not authenticated", http.StatusUnauthorized)
		return
	}
	l.Lock()
	f, ok := l.files[parts[1]]
	switch {
	case !ok:
		l.Unlock()
		http.NotFound(w, r)
		return
	case l.State != types.HttpNfcLeaseStateReady:
		state := l.State
		l.Unlock()
		http.Error(w, fmt.Sprintf("lease is %s", state), http.StatusConflict)
		return
	case f.state == "uploading" || f.state == "uploaded":
		l.Unlock()
		http.Error(w, "disk already "+f.state, http.StatusConflict)
		return
	}
	f.state = "uploading"
	l.Unlock()

	n, err := writeDisk(f.flat, r)
	l.Lock()
	f.bytes = n
	if err != nil {
		f.state = "failed"
	} else {
		f.state = "uploaded"
	}
	l.Unlock()
	if err != nil {
		log.Printf("nfc %s %s: %s after %d bytes", l.Self.Value, f.datastorePath, err, n)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	log.Printf("nfc %s %s: %d bytes", l.Self.Value, f.datastorePath, n)
	w.WriteHeader(http.StatusOK)
}

func writeDisk(flat string, r *http.Request) (int64, error) {
	out, err := os.OpenFile(flat, os.O_WRONLY, 0)
	if err != nil {
		return 0, err
	}
	res, err := writeStreamVMDK(r.Body, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return res.read, err
}

// nfcWrap serves /nfc/ with our leases; everything else goes to next.
func nfcWrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, nfcPath) {
			serveNFC(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}
