// Package malloc is a RAM device: its blocks live in anonymous memory
// outside the Go heap, lost when the process ends.
package malloc

import (
	"fmt"
	"net/url"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// Scheme is the URI scheme: malloc:///?size=64MiB&block_size=4096.
const Scheme = "malloc"

// DefaultBlockSize is the block size when the URI names none.
const DefaultBlockSize = 4096

// Device is a RAM device. Reactors read and write its memory directly;
// like a disk it gives no ordering between concurrent requests to
// overlapping blocks.
type Device struct {
	bdev.Base
	mem *iomem.Region
	buf []byte // the device's bytes, a prefix of mem
}

// New returns a zeroed RAM device of size bytes (rounded down to whole
// blocks).
func New(name string, size uint64, blockSize uint32) (*Device, error) {
	if !bdev.ValidBlockSize(blockSize) {
		return nil, fmt.Errorf("malloc: block size %d: want a power of two from 512 to 65536", blockSize)
	}
	blocks := size / uint64(blockSize)
	if blocks == 0 {
		return nil, fmt.Errorf("malloc: size %d is smaller than one block", size)
	}
	mem, err := iomem.Map(int(blocks * uint64(blockSize)))
	if err != nil {
		return nil, fmt.Errorf("malloc: %w", err)
	}
	return &Device{
		Base: bdev.NewBase(bdev.Info{
			Name: name, Product: Scheme, UUID: bdev.NewUUID(),
			BlockSize: blockSize, Blocks: blocks, BufAlign: 1,
		}),
		mem: mem,
		buf: mem.Bytes()[:blocks*uint64(blockSize)],
	}, nil
}

// FromURI is the registry factory for Scheme; size is required.
func FromURI(name string, u *url.URL) (bdev.Device, error) {
	size, bs, err := bdev.QueryOptions(u)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("malloc: the URI needs a size, e.g. malloc:///?size=64MiB")
	}
	if bs == 0 {
		bs = DefaultBlockSize
	}
	return New(name, size, bs)
}

// OpenBackend implements bdev.Device.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	return &backend{d: d, r: r, bs: uint64(d.Info().BlockSize)}, nil
}

// Close frees the device's memory; no channel may be open.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("malloc %s: %d channels still open", d.Info().Name, n)
	}
	return d.mem.Unmap()
}

type backend struct {
	d  *Device
	r  *reactor.Reactor
	bs uint64
}

func (b *backend) Submit(req *bdev.Request) {
	if req.Op != bdev.OpFlush { // a flush has no span to touch
		span := b.d.buf[req.LBA*b.bs : (req.LBA+uint64(req.Blocks))*b.bs]
		switch req.Op {
		case bdev.OpRead:
			copy(req.Buf, span)
		case bdev.OpWrite:
			copy(span, req.Buf)
		case bdev.OpWriteZeroes, bdev.OpUnmap:
			clear(span)
		}
	}
	b.r.Defer(req)
}

func (b *backend) Close() error { return nil }
