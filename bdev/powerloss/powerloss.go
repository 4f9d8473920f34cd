// Package powerloss is a RAM device with a volatile write cache, for
// crash tests of what keeps data on a device (a volume store, a mirror):
// it models what a power cut does to a drive whose cache is not
// protected.
//
// Writes, Write Zeroes and Unmaps complete once they are in the cache.
// They reach the medium at a Flush (every write completed before the
// Flush was submitted), or at once when the write is FUA. Reads see the
// newest data, cached or not. PowerLoss is the cut: of what is still
// cached, each 512-byte sector of each write reaches the medium or not,
// at random and independently (a drive's cache gives no order and a
// multi-sector write may tear), then the cache is empty and the device
// goes on, as a drive powered up again: what was flushed is all there,
// the rest may or may not be.
//
// DieAfter models the moment of the cut while I/O runs: the device takes
// that many more requests, then fails every one (StatusNotReady) and
// changes nothing, as a drive whose power went; what it took stays in
// the cache for PowerLoss to keep or lose, and Revive brings it back.
//
// Everything runs under one mutex and completes on the reactor after
// Submit: this device is for tests, not speed. Its medium is sparse, so
// a large device costs only what is written.
package powerloss

import (
	"fmt"
	"math/rand/v2"
	"sync"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Product is the Info.Product of power-loss devices.
const Product = "powerloss"

// Sector is the unit a power cut keeps or loses whole: writes tear on
// sector boundaries.
const Sector = 512

// chunkSize is the granule of the sparse medium.
const chunkSize = 64 << 10

// Device is a RAM device with a volatile write cache.
type Device struct {
	bdev.Base
	bs uint64

	mu      sync.Mutex
	medium  map[uint64][]byte // chunk index -> bytes; absent: zeroes
	pending []write           // cached, oldest first
	cached  map[uint64]int    // block -> index in pending of its newest write
	left    int               // requests taken before it dies; < 0: alive
}

// write is one cached write: data nil means zeroes. gone marks the
// blocks a later FUA write put on the medium: older data there must not
// come back at a power cut.
type write struct {
	lba    uint64
	blocks uint32
	data   []byte
	gone   []bool
}

// block returns block i of w's data (nil: zeroes), and whether it still
// counts.
func (w *write) block(i, bs uint64) ([]byte, bool) {
	if w.gone != nil && w.gone[i] {
		return nil, false
	}
	if w.data == nil {
		return nil, true
	}
	return w.data[i*bs : (i+1)*bs], true
}

// New returns a zeroed device of size bytes (rounded down to whole
// blocks) with a volatile write cache.
func New(name string, size uint64, blockSize uint32) (*Device, error) {
	if !bdev.ValidBlockSize(blockSize) {
		return nil, fmt.Errorf("powerloss: block size %d: want a power of two from 512 to 65536", blockSize)
	}
	blocks := size / uint64(blockSize)
	if blocks == 0 {
		return nil, fmt.Errorf("powerloss: size %d is smaller than one block", size)
	}
	return &Device{
		Base: bdev.NewBase(bdev.Info{
			Name: name, Product: Product, UUID: bdev.NewUUID(),
			BlockSize: blockSize, Blocks: blocks, BufAlign: 1, VolatileCache: true,
		}),
		bs: uint64(blockSize), medium: map[uint64][]byte{}, cached: map[uint64]int{}, left: -1,
	}, nil
}

// OpenBackend implements bdev.Device.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	return &backend{d: d, r: r}, nil
}

// Close implements bdev.Device; no channel may be open.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("powerloss %s: %d channels still open", d.Info().Name, n)
	}
	return nil
}

// DieAfter makes the device take n more requests, then fail all.
func (d *Device) DieAfter(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.left = n
}

// Revive makes a device that died take requests again.
func (d *Device) Revive() { d.DieAfter(-1) }

// Cached returns how many writes are in the cache, not yet on the medium.
func (d *Device) Cached() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}

// PowerLoss cuts the power: each sector of each cached write reaches the
// medium with probability keep (0: the cache is lost whole; 1: it is
// all written, as a flush would), drawn from seed, in the order the writes
// came, so a later write a sector kept wins over an earlier one. The
// device then goes on with an empty cache. Requests in flight across the
// cut are the test's to avoid: call it with none.
func (d *Device) PowerLoss(seed uint64, keep float64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	for _, w := range d.pending {
		for i := range uint64(w.blocks) {
			b, ok := w.block(i, d.bs)
			for s := uint64(0); s < d.bs; s += Sector {
				if rng.Float64() >= keep || !ok {
					continue
				}
				var sec []byte
				if b != nil {
					sec = b[s : s+Sector]
				}
				d.store((w.lba+i)*d.bs+s, sec, Sector)
			}
		}
	}
	d.pending, d.cached = d.pending[:0], map[uint64]int{}
}

// flush writes the cache to the medium. Called with d.mu held.
func (d *Device) flush() {
	for _, w := range d.pending {
		for i := range uint64(w.blocks) {
			if b, ok := w.block(i, d.bs); ok {
				d.store((w.lba+i)*d.bs, b, d.bs)
			}
		}
	}
	d.pending, d.cached = d.pending[:0], map[uint64]int{}
}

// writeThrough puts a FUA write on the medium at once: the cached writes
// of its blocks, older, are superseded.
func (d *Device) writeThrough(lba uint64, blocks uint32, data []byte) {
	d.store(lba*d.bs, data, uint64(blocks)*d.bs)
	for i := range uint64(blocks) {
		for j, ok := d.cached[lba+i]; ok && j >= 0; j-- {
			w := &d.pending[j]
			if lba+i < w.lba || lba+i >= w.lba+uint64(w.blocks) {
				continue
			}
			if w.gone == nil {
				w.gone = make([]bool, w.blocks)
			}
			w.gone[lba+i-w.lba] = true
		}
		delete(d.cached, lba+i)
	}
}

// store writes n bytes of b (nil: zeroes) to the medium at byte off.
// Called with d.mu held.
func (d *Device) store(off uint64, b []byte, n uint64) {
	for n > 0 {
		ci, co := off/chunkSize, off%chunkSize
		k := min(n, chunkSize-co)
		c := d.medium[ci]
		if c == nil {
			if b == nil {
				off, n = off+k, n-k
				continue
			}
			c = make([]byte, chunkSize)
			d.medium[ci] = c
		}
		if b == nil {
			clear(c[co : co+k])
		} else {
			copy(c[co:co+k], b[:k])
			b = b[k:]
		}
		off, n = off+k, n-k
	}
}

// load reads n bytes of the medium at byte off into dst.
func (d *Device) load(dst []byte, off uint64) {
	for len(dst) > 0 {
		ci, co := off/chunkSize, off%chunkSize
		k := min(uint64(len(dst)), chunkSize-co)
		if c := d.medium[ci]; c != nil {
			copy(dst[:k], c[co:co+k])
		} else {
			clear(dst[:k])
		}
		dst, off = dst[k:], off+k
	}
}

// read fills req's buffer: the medium, then the newest cached data of
// each block over it. Called with d.mu held.
func (d *Device) read(req *bdev.Request) {
	d.load(req.Buf, req.LBA*d.bs)
	if len(d.cached) == 0 {
		return
	}
	for i := range uint64(req.Blocks) {
		j, ok := d.cached[req.LBA+i]
		if !ok {
			continue
		}
		w := &d.pending[j]
		dst := req.Buf[i*d.bs : (i+1)*d.bs]
		if b, _ := w.block(req.LBA+i-w.lba, d.bs); b == nil {
			clear(dst)
		} else {
			copy(dst, b)
		}
	}
}

// cache records a write (data nil: zeroes) as the newest of its blocks.
// Called with d.mu held.
func (d *Device) cache(lba uint64, blocks uint32, data []byte) {
	d.pending = append(d.pending, write{lba: lba, blocks: blocks, data: data})
	for i := range uint64(blocks) {
		d.cached[lba+i] = len(d.pending) - 1
	}
}

type backend struct {
	d *Device
	r *reactor.Reactor
}

func (b *backend) Submit(req *bdev.Request) {
	d := b.d
	d.mu.Lock()
	switch {
	case d.left == 0:
		req.Status = bdev.StatusNotReady
		d.mu.Unlock()
		b.r.Defer(req)
		return
	case d.left > 0:
		d.left--
	}
	switch req.Op {
	case bdev.OpRead:
		d.read(req)
	case bdev.OpWrite:
		if req.FUA {
			d.writeThrough(req.LBA, req.Blocks, req.Buf)
		} else {
			d.cache(req.LBA, req.Blocks, append([]byte(nil), req.Buf...))
		}
	case bdev.OpWriteZeroes, bdev.OpUnmap:
		d.cache(req.LBA, req.Blocks, nil)
	case bdev.OpFlush:
		d.flush()
	}
	d.mu.Unlock()
	b.r.Defer(req)
}

func (b *backend) Close() error { return nil }
