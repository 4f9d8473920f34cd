// Package fault is a device that injects faults into the I/O of a base
// device, for tests of what sits above it (a target, a mirror): requests
// that match a Rule fail with a status, wait, hang until released or
// aborted, come back with their data corrupted, or are dropped (completed
// as if done, never reaching the base: a lost write). Everything else
// passes through as a child request.
//
// A hanging device is one a consumer must be able to survive, so the
// device can give its channels a timeout (Options.Timeout): requests it
// has not finished in time are aborted (bdev.Aborter): hung and delayed
// ones at once, those passed down when the base finishes them.
//
// Rules are changed from any goroutine; each request is matched when it
// reaches the device, under a mutex: this device is for tests, not speed.
package fault

import (
	"fmt"
	"sync"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Product is the Info.Product of fault devices.
const Product = "fault"

// Rule says which requests to fault and how. A request matches when its
// operation is in Ops (every operation when empty) and its span overlaps
// [From, To) (any span when To is 0).
type Rule struct {
	Ops      []bdev.Op
	From, To uint64

	// What to do, the first set of these: fail the request with Fail; let
	// it hang until Release (or its abort); drop it (complete OK, never
	// reaching the base); delay it by Delay, then pass it down; pass it
	// down and flip the first byte of what a read returns (Corrupt).
	Fail    bdev.Status
	Hang    bool
	Drop    bool
	Delay   time.Duration
	Corrupt bool

	// Count is how many requests the rule takes before it expires; 0:
	// every one.
	Count int
}

func (r *Rule) matches(req *bdev.Request) bool {
	if len(r.Ops) > 0 {
		found := false
		for _, op := range r.Ops {
			found = found || op == req.Op
		}
		if !found {
			return false
		}
	}
	if r.To == 0 {
		return true
	}
	end := req.LBA + uint64(req.Blocks)
	return req.LBA < r.To && end > r.From
}

// Options configures a fault device.
type Options struct {
	// Timeout, when set, aborts requests the device has not finished within
	// it (their status: bdev.StatusTimeout).
	Timeout time.Duration
}

// Device injects faults into its base's I/O.
type Device struct {
	bdev.Base
	base bdev.Device
	opts Options

	mu       sync.Mutex
	rules    []*ruleState
	backends map[*backend]struct{}
	faults   int // requests a rule took
}

type ruleState struct {
	Rule
	left int // requests it may still take; -1: no limit
}

// New returns a fault device named name over base.
func New(name string, base bdev.Device, opts Options) *Device {
	in := base.Info()
	in.Name, in.Product, in.UUID = name, Product, bdev.NewUUID()
	return &Device{Base: bdev.NewBase(in), base: base, opts: opts, backends: map[*backend]struct{}{}}
}

// Inject adds a rule (rules added later are matched first) and returns the
// function that removes it.
func (d *Device) Inject(r Rule) (remove func()) {
	rs := &ruleState{Rule: r, left: -1}
	if r.Count > 0 {
		rs.left = r.Count
	}
	d.mu.Lock()
	d.rules = append([]*ruleState{rs}, d.rules...)
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		for i, o := range d.rules {
			if o == rs {
				d.rules = append(d.rules[:i:i], d.rules[i+1:]...)
				return
			}
		}
	}
}

// Faults returns how many requests rules have taken.
func (d *Device) Faults() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.faults
}

// rule returns the rule req falls under, if any, and counts it.
func (d *Device) rule(req *bdev.Request) (Rule, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i, r := range d.rules {
		if !r.matches(req) {
			continue
		}
		d.faults++
		if r.left > 0 {
			if r.left--; r.left == 0 {
				d.rules = append(d.rules[:i:i], d.rules[i+1:]...)
			}
		}
		return r.Rule, true
	}
	return Rule{}, false
}

// Release passes every hung request down to the base now, and returns how
// many there were.
func (d *Device) Release() int {
	d.mu.Lock()
	bs := make([]*backend, 0, len(d.backends))
	for b := range d.backends {
		bs = append(bs, b)
	}
	d.mu.Unlock()
	n := 0
	for _, b := range bs {
		b.r.Call(func(*reactor.Reactor) error {
			for req := b.hung.Pop(); req != nil; req = b.hung.Pop() {
				n++
				b.forward(req)
			}
			return nil
		})
	}
	return n
}

// OpenBackend opens the base's channel on r.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	ch, err := bdev.OpenOnReactor(d.base, r)
	if err != nil {
		return nil, err
	}
	b := &backend{d: d, r: r, ch: ch, delayed: map[*bdev.Request]*delay{}}
	b.children.OnDone = b.childDone
	d.mu.Lock()
	d.backends[b] = struct{}{}
	d.mu.Unlock()
	return b, nil
}

// Close releases the device; the base stays open.
func (d *Device) Close() error {
	if n := d.OpenChannels(); n > 0 {
		return fmt.Errorf("fault %s: %d channels still open", d.Info().Name, n)
	}
	return nil
}

// backend is one reactor's channel of the device. Reactor-owned.
type backend struct {
	d        *Device
	r        *reactor.Reactor
	ch       *bdev.Channel
	children bdev.Children
	hung     bdev.RequestQueue
	delayed  map[*bdev.Request]*delay // requests waiting out a Delay
	corrupt  map[*bdev.Request]bool   // children whose data to corrupt
}

// delay is one request waiting out a Delay; its timer holds it.
type delay struct {
	req     *bdev.Request
	aborted bool
}

func (b *backend) Submit(req *bdev.Request) {
	r, ok := b.d.rule(req)
	switch {
	case !ok:
		b.forward(req)
	case r.Fail != bdev.StatusOK:
		req.Status = r.Fail
		b.r.Defer(req)
	case r.Hang:
		b.hung.Push(req)
	case r.Drop:
		b.r.Defer(req) // as if done
	case r.Delay > 0:
		w := &delay{req: req}
		b.delayed[req] = w
		time.AfterFunc(r.Delay, func() {
			b.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
				if w.aborted {
					return // finished already; req may be the caller's again
				}
				delete(b.delayed, req)
				b.forward(req)
			}))
		})
	case r.Corrupt:
		c := b.forward(req)
		if b.corrupt == nil {
			b.corrupt = map[*bdev.Request]bool{}
		}
		b.corrupt[c] = true
	default:
		b.forward(req)
	}
}

// forward passes req down as a child and returns the child.
func (b *backend) forward(req *bdev.Request) *bdev.Request {
	c := b.children.Get(req)
	c.Op, c.LBA, c.Blocks, c.Buf, c.FUA = req.Op, req.LBA, req.Blocks, req.Buf, req.FUA
	b.ch.Submit(c)
	return c
}

func (b *backend) childDone(c *bdev.Request) {
	if b.corrupt[c] {
		delete(b.corrupt, c)
		if c.Op == bdev.OpRead && c.Status == bdev.StatusOK && len(c.Buf) > 0 {
			c.Buf[0] ^= 0xff
		}
	}
}

// Timeout implements bdev.Aborter.
func (b *backend) Timeout() time.Duration { return b.d.opts.Timeout }

// Abort implements bdev.Aborter: a hung or delayed request finishes
// aborted now; one passed down finishes when the base finishes it.
func (b *backend) Abort(req *bdev.Request) {
	if w, ok := b.delayed[req]; ok {
		w.aborted = true
		delete(b.delayed, req)
		req.Complete(bdev.StatusAborted)
		return
	}
	if b.hung.Remove(req) {
		req.Complete(bdev.StatusAborted)
	}
}

// Close closes the base's channel; nothing is in flight.
func (b *backend) Close() error {
	b.d.mu.Lock()
	delete(b.d.backends, b)
	b.d.mu.Unlock()
	return b.ch.Close()
}
