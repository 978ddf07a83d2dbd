package main

import (
	"encoding/json"
	"fmt"
	"log"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// A lab VM's twin can die outside the simulator (its qemu killed or
// crashed). ESXi then shows the VM poweredOff, since its VMX process is
// gone, and so do we: the hook's power-on answers {"pid": N}, and a watcher
// polls that process. Once it is gone (or the pid belongs to another process
// now: its start time differs), the VM is powered off in the inventory,
// through Map.Update so every PropertyCollector sees it. Power operations
// that go through the simulator stop the watch first (unwatch), holding the
// VM's lock, so a watcher never races them.

const watchInterval = 500 * time.Millisecond

type twinWatch struct {
	pid   int
	start string // /proc/<pid>/stat starttime when the watch began
	done  chan struct{}
}

var twins = struct {
	sync.Mutex
	m map[types.ManagedObjectReference]*twinWatch
}{m: map[types.ManagedObjectReference]*twinWatch{}}

// powerOnAnswer is the hook's power-on stdout; an empty answer (an old or a
// stub hook) means nothing to watch.
type powerOnAnswer struct {
	Pid int `json:"pid"`
}

// procStart is the start time of a live (not zombie) process, or false.
func procStart(pid int) (string, bool) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", false
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	text := string(data)
	fields := strings.Fields(text[strings.LastIndexByte(text, ')')+1:])
	if len(fields) < 20 || fields[0] == "Z" || fields[0] == "X" {
		return "", false
	}
	return fields[19], true // field 22, starttime
}

// watchTwin starts watching the process the hook's power-on answered with.
// The caller holds the VM's lock.
func (vm *VirtualMachine) watchTwin(out []byte) {
	unwatch(vm.Self)
	var answer powerOnAnswer
	if len(strings.TrimSpace(string(out))) == 0 {
		return
	}
	if err := json.Unmarshal(out, &answer); err != nil || answer.Pid <= 0 {
		log.Printf("%s: lab hook power-on answered no pid (%q): its twin is not watched", vm.Name, out)
		return
	}
	w := &twinWatch{pid: answer.Pid, done: make(chan struct{})}
	w.start, _ = procStart(answer.Pid) // gone already: the first poll powers the VM off
	twins.Lock()
	twins.m[vm.Self] = w
	twins.Unlock()
	go watch(vm.Self, vm.Name, w)
}

// unwatch stops the VM's watch, if any. The caller holds the VM's lock.
func unwatch(ref types.ManagedObjectReference) {
	twins.Lock()
	defer twins.Unlock()
	if w, ok := twins.m[ref]; ok {
		close(w.done)
		delete(twins.m, ref)
	}
}

func (w *twinWatch) alive() bool {
	start, ok := procStart(w.pid)
	return ok && start == w.start
}

func watch(ref types.ManagedObjectReference, name string, w *twinWatch) {
	ticker := time.NewTicker(watchInterval)
	defer ticker.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-ticker.C:
		}
		if w.alive() {
			continue
		}
		simulator.Map.WithLock(ref, func() { twinGone(ref, name, w) })
		return
	}
}

// twinGone powers the VM off in the inventory, unless a power operation
// replaced or ended the watch meanwhile. The caller holds the VM's lock.
func twinGone(ref types.ManagedObjectReference, name string, w *twinWatch) {
	twins.Lock()
	current := twins.m[ref] == w
	if current {
		delete(twins.m, ref)
	}
	twins.Unlock()
	vm, ok := simulator.Map.Get(ref).(*VirtualMachine)
	if !current || !ok || vm.Runtime.PowerState != types.VirtualMachinePowerStatePoweredOn {
		return
	}
	log.Printf("%s: its qemu (pid %d) is gone: poweredOff, as ESXi shows a VM whose VMX died", name, w.pid)
	simulator.Map.Update(vm, []types.PropertyChange{
		{Name: "runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
		{Name: "summary.runtime.powerState", Val: types.VirtualMachinePowerStatePoweredOff},
		{Name: "summary.runtime.bootTime", Val: nil},
	})
}
