package main

import (
	"reflect"
	"sync"
	"unsafe"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25"
	"github.com/vmware/govmomi/vim25/mo"
	"github.com/vmware/govmomi/vim25/types"
)

// installOverrides replaces vcsim singletons with our wrapper types and hooks
// the registry so every VM created later (CreateVM, clone, register) becomes
// our *VirtualMachine.
func installOverrides() {
	si := simulator.Map.Get(vim25.ServiceInstance).(*simulator.ServiceInstance)
	pc := simulator.Map.Get(si.Content.PropertyCollector).(*simulator.PropertyCollector)
	// A fresh wrapper, like vcsim's per-session copies; Map.Put is fine
	// here as no views or filters exist yet.
	wrapped := &PropertyCollector{}
	wrapped.Self = pc.Self
	simulator.Map.Put(wrapped)
	installOvfManager(*si.Content.OvfManager)

	simulator.Map.AddHandler(&vmWrapper{Self: types.ManagedObjectReference{Type: "VsaVmWrapper", Value: "vsa-vm-wrapper"}})
}

// vmWrapper is a registry handler. When a task finishes whose result is a
// plain vcsim VM (createVm, cloneVm, registerVm), the VM is swapped for our
// wrapper. Waiting for the task matters: vcsim puts the VM in the registry
// early and keeps building it through its own pointer until the task ends.
type vmWrapper struct {
	Self types.ManagedObjectReference
}

func (h *vmWrapper) Reference() types.ManagedObjectReference   { return h.Self }
func (h *vmWrapper) PutObject(mo.Reference)                    {}
func (h *vmWrapper) RemoveObject(types.ManagedObjectReference) {}

func (h *vmWrapper) UpdateObject(obj mo.Reference, _ []types.PropertyChange) {
	task, ok := obj.(*mo.Task)
	if !ok || task.Info.State != types.TaskInfoStateSuccess {
		return
	}
	if ref, ok := task.Info.Result.(types.ManagedObjectReference); ok && ref.Type == "VirtualMachine" {
		wrapVM(ref)
	}
}

// wrapVM swaps a plain vcsim VM for our wrapper and returns the wrapper.
func wrapVM(ref types.ManagedObjectReference) *VirtualMachine {
	var out *VirtualMachine
	simulator.Map.WithLock(ref, func() {
		switch vm := simulator.Map.Get(ref).(type) {
		case *VirtualMachine:
			out = vm
		case *simulator.VirtualMachine:
			out = &VirtualMachine{VirtualMachine: *vm}
			replaceObject(ref, out)
			out.syncDiskFiles()
		}
	})
	return out
}

// replaceObject swaps the object stored under ref without Map.Put, whose
// handlers would announce the object again (ContainerView would list the VM
// twice and WaitForUpdates would see a spurious "enter"). Registry exposes
// no such method in 0.24.2, so reach its unexported fields.
func replaceObject(ref types.ManagedObjectReference, obj mo.Reference) {
	r := reflect.ValueOf(simulator.Map).Elem()
	mu := (*sync.Mutex)(unsafe.Pointer(r.FieldByName("m").UnsafeAddr()))
	f := r.FieldByName("objects")
	objects := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(map[types.ManagedObjectReference]mo.Reference)
	mu.Lock()
	objects[ref] = obj
	mu.Unlock()
}
