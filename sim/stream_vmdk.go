package main

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// A streamOptimized VMDK (VMware's "Virtual Disk Format 5.0", the format
// of an OVA's disks and of what an NFC import lease accepts) read as a
// stream, the way ESXi writes it into the VM's disk: a 512-byte sparse
// header, the embedded descriptor, then sector-aligned markers up to the
// end-of-stream marker. A grain marker (size != 0) carries the LBA and the
// deflate-compressed grain; a metadata marker (size == 0) is followed by
// "val" sectors of grain tables, the grain directory or the footer, which a
// sequential reader does not need.

const (
	sector          = 512
	vmdkMagic       = 0x564d444b // "KDMV"
	vmdkCompressed  = 1 << 16
	vmdkMarkers     = 1 << 17
	markerEOS       = 0
	maxGrainSectors = 1 << 16
)

// streamResult is what an upload wrote: bytes read from the stream and the
// disk's capacity as its header states it.
type streamResult struct {
	read     int64
	capacity int64
}

// writeStreamVMDK decodes src into dst, a flat (raw) extent, writing only
// non-zero grains so the file stays sparse. It fails on anything that is not
// a complete streamOptimized VMDK (wrong magic, a grain past the disk's end,
// a stream cut before its end-of-stream marker).
func writeStreamVMDK(src io.Reader, dst *os.File) (streamResult, error) {
	counter := &countingReader{r: src}
	in := bufio.NewReaderSize(counter, 1<<20)
	var res streamResult
	head := make([]byte, sector)
	if _, err := io.ReadFull(in, head); err != nil {
		return res, fmt.Errorf("reading the VMDK header: %w", err)
	}
	le := binary.LittleEndian
	if le.Uint32(head[0:]) != vmdkMagic {
		return res, fmt.Errorf("not a VMDK (no KDMV magic)")
	}
	flags := le.Uint32(head[8:])
	if flags&vmdkCompressed == 0 || flags&vmdkMarkers == 0 {
		return res, fmt.Errorf("not a streamOptimized VMDK (flags %#x)", flags)
	}
	capacity := int64(le.Uint64(head[12:])) * sector
	grainSectors := int64(le.Uint64(head[20:]))
	overhead := int64(le.Uint64(head[64:]))
	if grainSectors <= 0 || grainSectors > maxGrainSectors || overhead < 1 {
		return res, fmt.Errorf("bad VMDK header (grain %d sectors, overhead %d)", grainSectors, overhead)
	}
	res.capacity = capacity
	if _, err := io.CopyN(io.Discard, in, (overhead-1)*sector); err != nil {
		return res, fmt.Errorf("reading the VMDK descriptor: %w", err)
	}
	grain := make([]byte, grainSectors*sector)
	zero := make([]byte, len(grain))
	marker := make([]byte, sector)
	var compressed bytes.Buffer
	var z io.ReadCloser // one inflater, reset per grain
	for {
		if _, err := io.ReadFull(in, marker[:12]); err != nil {
			res.read = counter.n
			return res, fmt.Errorf("stream ended before its end-of-stream marker: %w", err)
		}
		val, size := int64(le.Uint64(marker[0:])), int64(le.Uint32(marker[8:]))
		if size == 0 { // metadata marker: one sector, then val sectors of metadata
			if _, err := io.ReadFull(in, marker[12:]); err != nil {
				return res, fmt.Errorf("reading a metadata marker: %w", err)
			}
			if le.Uint32(marker[12:]) == markerEOS {
				res.read = counter.n - int64(in.Buffered())
				return res, nil
			}
			if _, err := io.CopyN(io.Discard, in, val*sector); err != nil {
				return res, fmt.Errorf("reading metadata: %w", err)
			}
			continue
		}
		if size > int64(len(grain))*2 {
			return res, fmt.Errorf("grain at sector %d: compressed size %d is not plausible", val, size)
		}
		compressed.Reset()
		if _, err := io.CopyN(&compressed, in, size); err != nil {
			return res, fmt.Errorf("grain at sector %d cut short: %w", val, err)
		}
		if pad := (12 + size) % sector; pad != 0 {
			if _, err := io.CopyN(io.Discard, in, sector-pad); err != nil {
				return res, fmt.Errorf("grain at sector %d cut short: %w", val, err)
			}
		}
		n, err := inflate(&z, compressed.Bytes(), grain)
		if err != nil {
			return res, fmt.Errorf("grain at sector %d: %w", val, err)
		}
		off := val * sector
		if off+int64(n) > capacity {
			return res, fmt.Errorf("grain at sector %d lies past the disk's end (%d bytes)", val, capacity)
		}
		if !bytes.Equal(grain[:n], zero[:n]) {
			if _, err := dst.WriteAt(grain[:n], off); err != nil {
				return res, err
			}
		}
	}
}

func inflate(z *io.ReadCloser, data, out []byte) (int, error) {
	src := bytes.NewReader(data)
	var err error
	if *z == nil {
		*z, err = zlib.NewReader(src)
	} else {
		err = (*z).(zlib.Resetter).Reset(src, nil)
	}
	if err != nil {
		return 0, err
	}
	n, err := io.ReadFull(*z, out)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil // the last grain may be shorter
	}
	return n, err
}

type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}
