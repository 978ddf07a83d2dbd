package main

import (
	"bytes"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/object"
	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"
)

// vcsim creates each disk as two empty files, NAME.vmdk and NAME-flat.vmdk.
// We make the flat extent a sparse file of the disk's capacity and give the
// descriptor real content, so the files look like a monolithic-flat VMDK.

// localPath maps "[ds] dir/file.vmdk" to the file under the datastore's
// directory, looking the datastore up among the VM host's datastores.
func (vm *VirtualMachine) localPath(dsPath string) (string, bool) {
	var p object.DatastorePath
	if !p.FromString(dsPath) || vm.Runtime.Host == nil {
		return "", false
	}
	host, ok := simulator.Map.Get(*vm.Runtime.Host).(*simulator.HostSystem)
	if !ok {
		return "", false
	}
	ds, ok := simulator.Map.FindByName(p.Datastore, host.Datastore).(*simulator.Datastore)
	if !ok {
		return "", false
	}
	return filepath.Join(ds.Info.GetDatastoreInfo().Url, p.Path), true
}

func flatName(descriptor string) string {
	return strings.TrimSuffix(descriptor, ".vmdk") + "-flat.vmdk"
}

// syncDiskFiles grows each disk's flat file to its capacity and writes a
// descriptor where vcsim left an empty one.
func (vm *VirtualMachine) syncDiskFiles() {
	for _, dev := range vm.Config.Hardware.Device {
		disk, ok := dev.(*types.VirtualDisk)
		if !ok {
			continue
		}
		b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
		if !ok || b.FileName == "" {
			continue
		}
		desc, ok := vm.localPath(b.FileName)
		if !ok {
			continue
		}
		if err := ensureDisk(desc, diskBytes(disk)); err != nil {
			log.Printf("%s: disk %s: %s", vm.Name, b.FileName, err)
		}
	}
}

func ensureDisk(desc string, size int64) error {
	flat := flatName(desc)
	fi, err := os.Stat(flat)
	if err != nil {
		return err
	}
	if fi.Size() < size {
		if err := os.Truncate(flat, size); err != nil {
			return err
		}
	} else {
		size = fi.Size()
	}
	if cur, err := os.ReadFile(desc); err == nil && bytes.Contains(cur, []byte(extentLine(flat, size))) {
		return nil
	}
	return os.WriteFile(desc, []byte(descriptor(flat, size)), 0600)
}

func extentLine(flat string, size int64) string {
	return fmt.Sprintf("RW %d VMFS %q", size/512, filepath.Base(flat))
}

func descriptor(flat string, size int64) string {
	return fmt.Sprintf(`# Disk DescriptorFile
version=1
CID=fffffffe
parentCID=ffffffff
createType="vmfs"

# Extent description
%s

# The Disk Data Base
ddb.adapterType = "lsilogic"
ddb.virtualHWVersion = "13"
`, extentLine(flat, size))
}

// copySparse copies src to dst (which must exist), skipping zero blocks so
// holes stay holes, then sets dst's size to size.
func copySparse(src, dst string, size int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer out.Close()

	if fi, err := in.Stat(); err == nil {
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Blocks == 0 {
			return out.Truncate(size) // nothing allocated: nothing to copy
		}
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	var off int64
	for {
		n, err := in.Read(buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				return werr
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if off > size {
		size = off
	}
	return out.Truncate(size)
}

// capacityFromFile gives a disk attached from an existing file (no file
// operation) the capacity of that file, as ESXi reads it from the VMDK.
func (vm *VirtualMachine) capacityFromFile(disk *types.VirtualDisk) {
	b, ok := disk.Backing.(*types.VirtualDiskFlatVer2BackingInfo)
	if !ok || disk.CapacityInKB != 0 || disk.CapacityInBytes != 0 {
		return
	}
	desc, ok := vm.localPath(b.FileName)
	if !ok {
		return
	}
	if fi, err := os.Stat(flatName(desc)); err == nil {
		disk.CapacityInBytes = fi.Size()
		disk.CapacityInKB = fi.Size() / 1024
	}
}
