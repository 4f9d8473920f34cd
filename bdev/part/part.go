// Package part is a device that is a window of another: blocks
// [Offset, Offset+Blocks) of a base device, seen as blocks [0, Blocks). The
// engine carves volumes out of pools with it.
//
// Forwarding: a channel of a part device opens a channel of the base device
// on the same reactor and passes each request down as a child request
// (bdev.Children) with its span moved by the window's offset; the child
// completes the caller's request. Nothing on the I/O path allocates once
// the stock of children has grown to the most requests in flight.
//
// Only requests that passed the part channel's validation (which checks the
// span against the window's size) reach the base, so I/O outside the window
// never touches the base device's other blocks.
//
// Ownership: the part device does not own its base. Close releases the part
// only; the base is closed by whoever opened it, after every part over it.
package part

import (
	"context"
	"errors"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Product is the Info.Product of part devices.
const Product = "part"

// ErrWindow reports a window that does not fit its base device.
var ErrWindow = errors.New("part: window outside the base device")

// Device is a window of a base device.
type Device struct {
	bdev.Base
	base         bdev.Device
	offsetBlocks uint64
}

// New returns a device named name over blocks [offsetBlocks,
// offsetBlocks+blocks) of base. Its block size, buffer alignment and cache
// are the base's; uuid identifies it (a zero uuid draws a random one).
func New(name string, base bdev.Device, offsetBlocks, blocks uint64, uuid bdev.UUID) (*Device, error) {
	if err := bdev.ValidName(name); err != nil {
		return nil, err
	}
	in := base.Info()
	if blocks == 0 || offsetBlocks >= in.Blocks || blocks > in.Blocks-offsetBlocks {
		return nil, fmt.Errorf("%w: blocks [%d, %d+%d) of %s, which has %d", ErrWindow, offsetBlocks, offsetBlocks, blocks, in.Name, in.Blocks)
	}
	if uuid == (bdev.UUID{}) {
		uuid = bdev.NewUUID()
	}
	return &Device{
		Base: bdev.NewBase(bdev.Info{
			Name: name, Product: Product, UUID: uuid,
			BlockSize: in.BlockSize, Blocks: blocks,
			BufAlign: in.BufAlign, VolatileCache: in.VolatileCache,
		}),
		base:         base,
		offsetBlocks: offsetBlocks,
	}, nil
}

// Resize moves the window's end so that it holds blocks blocks, in place:
// the start and the identifiers stay, I/O is quiesced around the change
// (requests held meanwhile are checked against the new size), and
// consumers get an EventResized. Shrinking cuts off access to the tail,
// not its data.
func (d *Device) Resize(ctx context.Context, blocks uint64) error {
	in := d.base.Info()
	if blocks == 0 || blocks > in.Blocks-d.offsetBlocks {
		return fmt.Errorf("%w: blocks [%d, %d+%d) of %s, which has %d", ErrWindow, d.offsetBlocks, d.offsetBlocks, blocks, in.Name, in.Blocks)
	}
	if blocks == d.Info().Blocks {
		return nil
	}
	if err := d.Quiesce(ctx); err != nil {
		return fmt.Errorf("part %s: resize: %w", d.Info().Name, err)
	}
	d.SetBlocks(blocks)
	d.Resume()
	d.Notify(bdev.Event{Kind: bdev.EventResized})
	return nil
}

// BaseDevice returns the device the window is cut from.
func (d *Device) BaseDevice() bdev.Device { return d.base }

// OffsetBlocks returns where the window starts on the base device.
func (d *Device) OffsetBlocks() uint64 { return d.offsetBlocks }

// OpenBackend opens a channel of the base device on r. Called on r.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	ch, err := bdev.OpenOnReactor(d.base, r)
	if err != nil {
		return nil, err
	}
	return &backend{ch: ch, offsetBlocks: d.offsetBlocks}, nil
}

// Close releases the device; its channels must be closed first. The base
// device stays open.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("part %s: %d channels still open", d.Info().Name, n)
	}
	return nil
}

// backend is one reactor's channel to the window. Reactor-owned.
type backend struct {
	ch           *bdev.Channel // the base device's channel on this reactor
	offsetBlocks uint64
	children     bdev.Children
}

func (b *backend) Submit(req *bdev.Request) {
	c := b.children.Get(req)
	c.Op, c.Blocks, c.Buf, c.FUA = req.Op, req.Blocks, req.Buf, req.FUA
	c.LBA = req.LBA + b.offsetBlocks
	if req.Op == bdev.OpFlush {
		c.LBA = 0 // a flush has no span
	}
	b.ch.Submit(c)
}

// Close closes the base channel; no request is in flight.
func (b *backend) Close() error { return b.ch.Close() }
