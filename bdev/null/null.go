// Package null is a device that stores nothing: writes are discarded and
// reads return zeroes. It measures the layers above a device.
package null

import (
	"fmt"
	"net/url"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Scheme is the URI scheme: null:///?size=1GiB&block_size=4096.
const Scheme = "null"

// Defaults for parameters left out of the URI.
const (
	DefaultSize      = 1 << 30
	DefaultBlockSize = 4096
)

// Device is a null device.
type Device struct{ bdev.Base }

// New returns a null device of size bytes (rounded down to whole blocks).
func New(name string, size uint64, blockSize uint32) (*Device, error) {
	if !bdev.ValidBlockSize(blockSize) {
		return nil, fmt.Errorf("null: block size %d: want a power of two from 512 to 65536", blockSize)
	}
	if size < uint64(blockSize) {
		return nil, fmt.Errorf("null: size %d is smaller than one block", size)
	}
	return &Device{bdev.NewBase(bdev.Info{
		Name: name, Product: Scheme, UUID: bdev.NewUUID(),
		BlockSize: blockSize, Blocks: size / uint64(blockSize), BufAlign: 1,
	})}, nil
}

// FromURI is the registry factory for Scheme.
func FromURI(name string, u *url.URL) (bdev.Device, error) {
	size, bs, err := bdev.QueryOptions(u)
	if err != nil {
		return nil, err
	}
	return New(name, orDefault(size, DefaultSize), uint32(orDefault(uint64(bs), DefaultBlockSize)))
}

func orDefault(v, def uint64) uint64 {
	if v == 0 {
		return def
	}
	return v
}

// OpenBackend implements bdev.Device.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) { return backend{r}, nil }

// Close implements bdev.Device.
func (d *Device) Close() error { return nil }

type backend struct{ r *reactor.Reactor }

func (b backend) Submit(req *bdev.Request) {
	if req.Op == bdev.OpRead {
		clear(req.Buf)
	}
	b.r.Defer(req)
}

func (b backend) Close() error { return nil }
