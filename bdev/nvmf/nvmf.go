// Package nvmf is a block device on a namespace of a remote NVMe-oF/TCP
// controller: nvmf://HOST:PORT/SUBNQN?ns=1. It is an ordinary bdev on the
// reactors: each channel has an I/O queue of its own on the channel's
// reactor (nvmeof/host, whose queues are reactor-owned), so a request
// goes from Submit to the socket and back without leaving the reactor's
// thread. The admin queue (identify, keep-alive) runs on a reactor of the
// device's own.
//
// A lost connection does not lose the device: the channel's queue
// reconnects in the background (and the controller with it when the
// admin queue is gone too; a controller whose admin queue ends, by the
// target's restart or a failed keep-alive, is reconnected whether any
// I/O asks or not), requests wait meanwhile, and each is bounded
// by the device's timeout (timeout=, 30 s by default, as Linux's
// io_timeout): on expiry the queue is reset and the request finishes
// StatusTimeout. Requests whose outcome the connection took with it
// finish StatusNotReady: a write's fate is then unknown, which is what a
// replicating layer above must be told. A device that cannot reconnect
// for its loss timeout (loss=, 10 minutes by default, as Linux's
// ctrl_loss_tmo), or whose namespace goes away, is faulted: it raises
// bdev.EventFaulted and fails every request, waiting or new, with
// StatusNotReady, for good.
//
// The device follows its namespace's size: the controller's Namespace
// Attribute Changed events, and a look after every reconnect, quiesce
// the device, take the new size and raise bdev.EventResized.
package nvmf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/reactor"
)

// Scheme is the URI scheme of remote namespaces.
const Scheme = "nvmf"

// Defaults of the URI's options.
const (
	DefaultTimeout     = 30 * time.Second
	DefaultLossTimeout = 10 * time.Minute
	DefaultQueueDepth  = 128
	connectTimeout     = 10 * time.Second
	keepAlive          = 10 * time.Second
	// maxQueues is how many I/O queues the device asks for: one per
	// reactor that opens a channel.
	maxQueues = 64
)

// Options configures Open.
type Options struct {
	NSID        uint32
	Timeout     time.Duration // per request; 0: DefaultTimeout
	LossTimeout time.Duration // without a connection, then faulted; 0: DefaultLossTimeout
	QueueDepth  int           // per channel; 0: DefaultQueueDepth
	HostNQN     string        // "": one made from a random host ID
}

// Device is a remote namespace.
type Device struct {
	bdev.Base
	addr, subNQN string
	opts         Options
	ctrl         *host.Controller
	maxBlocks    uint32 // per Read or Write command (MDTS)

	mu        sync.Mutex
	backends  map[uint16]*backend // the channels', by I/O queue ID
	closed    bool
	downSince time.Time // the first failed connect since the last that worked

	// reconnect serializes bringing the controller back: the channels'
	// queues find it gone together.
	reconnect sync.Mutex

	faultErr  atomic.Pointer[error] // why the device is faulted; nil: it is not
	sizeCheck chan struct{}         // a look at the namespace's size is due
	watchCtx  context.Context       // the watcher's, ended by Close
	endWatch  context.CancelFunc
	watcher   sync.WaitGroup
}

// FromURI opens nvmf://HOST:PORT/SUBNQN?ns=N&timeout=D&loss=D&depth=N&hostnqn=NQN.
func FromURI(name string, u *url.URL) (bdev.Device, error) {
	opts := Options{NSID: 1}
	q := u.Query()
	for k := range q {
		v := q.Get(k)
		switch k {
		case "ns":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil || n == 0 || n == 0xffffffff {
				return nil, fmt.Errorf("%w: ns=%q: want a namespace ID from 1", bdev.ErrBadURI, v)
			}
			opts.NSID = uint32(n)
		case "timeout", "loss":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%w: %s=%q: want a positive duration (30s)", bdev.ErrBadURI, k, v)
			}
			if k == "timeout" {
				opts.Timeout = d
			} else {
				opts.LossTimeout = d
			}
		case "depth":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n < 2 {
				return nil, fmt.Errorf("%w: depth=%q: want 2 to 65535", bdev.ErrBadURI, v)
			}
			opts.QueueDepth = int(n)
		case "hostnqn":
			if err := nqn.Validate(v); err != nil {
				return nil, fmt.Errorf("%w: hostnqn: %v", bdev.ErrBadURI, err)
			}
			opts.HostNQN = v
		default:
			return nil, fmt.Errorf("%w: unknown option %q (want ns, timeout, loss, depth, hostnqn)", bdev.ErrBadURI, k)
		}
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return nil, fmt.Errorf("%w: nvmf://%s: want nvmf://HOST:PORT/SUBNQN: %v", bdev.ErrBadURI, u.Host, err)
	}
	sub := u.Path
	if len(sub) > 0 && sub[0] == '/' {
		sub = sub[1:]
	}
	if err := nqn.Validate(sub); err != nil {
		return nil, fmt.Errorf("%w: subsystem NQN: %v", bdev.ErrBadURI, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	return Open(ctx, name, u.Host, sub, opts)
}

// Open connects to subsystem subNQN at addr and opens namespace
// opts.NSID as a device called name.
func Open(ctx context.Context, name, addr, subNQN string, opts Options) (*Device, error) {
	if opts.NSID == 0 {
		opts.NSID = 1
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.LossTimeout == 0 {
		opts.LossTimeout = DefaultLossTimeout
	}
	if opts.QueueDepth == 0 {
		opts.QueueDepth = DefaultQueueDepth
	}
	sizeCheck := make(chan struct{}, 1)
	ctrl, err := host.Connect(ctx, addr, subNQN, host.Config{
		HostNQN: opts.HostNQN, AdminOnly: true, IOQueues: maxQueues, KeepAlive: keepAlive,
		AsyncEvents: func(ev host.AsyncEvent) {
			if ev.NamespaceChanged(opts.NSID) {
				askOnce(sizeCheck)
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("nvmf: %w", err)
	}
	d, err := newDevice(ctx, name, addr, subNQN, opts, ctrl)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	d.sizeCheck = sizeCheck
	d.watchCtx, d.endWatch = context.WithCancel(context.Background())
	d.watcher.Add(1)
	go d.watch()
	return d, nil
}

// askOnce signals c unless a signal is pending already.
func askOnce(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

func newDevice(ctx context.Context, name, addr, subNQN string, opts Options, ctrl *host.Controller) (*Device, error) {
	ns, err := ctrl.Namespace(ctx, opts.NSID)
	if err != nil {
		return nil, fmt.Errorf("nvmf: identify namespace %d: %w", opts.NSID, err)
	}
	bs := ns.BlockSize()
	if ns.Blocks() == 0 {
		return nil, fmt.Errorf("nvmf: namespace %d of %s is not active", opts.NSID, subNQN)
	}
	if !bdev.ValidBlockSize(bs) {
		return nil, fmt.Errorf("nvmf: namespace %d reports %d-byte blocks", opts.NSID, bs)
	}
	if ctrl.GrantedIOQueues() == 0 {
		return nil, fmt.Errorf("nvmf: %s granted no I/O queues", subNQN)
	}
	id := ctrl.Identify()
	// MDTS is in units of the minimum memory page size (4 KiB here); a
	// Read or Write also carries at most 65536 blocks (NLB is 16 bits).
	maxBlocks := uint32(1 << 16)
	if m := id.MDTS(); m != 0 && m < 32 {
		maxBlocks = min(maxBlocks, uint32((uint64(4096)<<m)/uint64(bs)))
	}
	uuid := bdev.UUID(ns.NGUID())
	if uuid == (bdev.UUID{}) {
		uuid = bdev.NewUUID()
	}
	info := bdev.Info{
		Name: name, Product: Scheme, UUID: uuid, BlockSize: bs, Blocks: ns.Blocks(),
		BufAlign: 1, VolatileCache: id.VolatileCache(),
	}
	return &Device{
		Base: bdev.NewBase(info), addr: addr, subNQN: subNQN, opts: opts, ctrl: ctrl,
		maxBlocks: max(maxBlocks, 1), backends: map[uint16]*backend{},
	}, nil
}

// OpenBackend returns a channel's backend on r, with an I/O queue of its
// own being connected in the background: requests wait until it is.
func (d *Device) OpenBackend(r *reactor.Reactor) (bdev.Backend, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, errors.New("nvmf: device closed")
	}
	qid := uint16(0)
	for id := uint16(1); int(id) <= d.ctrl.GrantedIOQueues(); id++ {
		if d.backends[id] == nil {
			qid = id
			break
		}
	}
	if qid == 0 {
		return nil, fmt.Errorf("nvmf: all %d I/O queues the controller granted are in use", d.ctrl.GrantedIOQueues())
	}
	b := newBackend(d, r, qid)
	d.backends[qid] = b
	go b.connect()
	return b, nil
}

// connectQueue connects I/O queue qid on r, and the controller again
// first if its admin queue is gone (the target restarted, or dropped the
// association on a keep-alive timeout).
func (d *Device) connectQueue(ctx context.Context, r *reactor.Reactor, qid uint16) (*host.Queue, error) {
	d.mu.Lock()
	closed := d.closed
	d.mu.Unlock()
	if closed {
		return nil, errors.New("nvmf: device closed")
	}
	d.reconnect.Lock()
	if d.ctrl.Admin().Err() != nil {
		if err := d.ctrl.Reconnect(ctx); err != nil {
			d.reconnect.Unlock()
			d.connectFailed(err)
			return nil, err
		}
		// Events of the namespace were lost with the association.
		askOnce(d.sizeCheck)
	}
	d.reconnect.Unlock()
	q, err := d.ctrl.ConnectIOQueue(ctx, r, qid, d.opts.QueueDepth)
	if err != nil {
		d.connectFailed(err)
		return nil, err
	}
	d.connected()
	return q, nil
}

// connected resets the loss timeout's clock.
func (d *Device) connected() {
	d.mu.Lock()
	d.downSince = time.Time{}
	d.mu.Unlock()
}

// connectFailed faults the device once connecting has failed for its loss
// timeout.
func (d *Device) connectFailed(err error) {
	now := time.Now()
	d.mu.Lock()
	if d.downSince.IsZero() {
		d.downSince = now
	}
	down := now.Sub(d.downSince)
	d.mu.Unlock()
	if down >= d.opts.LossTimeout {
		d.fault(fmt.Errorf("nvmf: %s at %s unreachable for %v: %w", d.subNQN, d.addr, down.Round(time.Millisecond), err))
	}
}

// Err returns why the device is faulted, or nil.
func (d *Device) Err() error {
	if e := d.faultErr.Load(); e != nil {
		return *e
	}
	return nil
}

// fault ends the device's I/O for good: every channel fails what waits
// and whatever comes, and consumers hear bdev.EventFaulted.
func (d *Device) fault(err error) {
	if !d.faultErr.CompareAndSwap(nil, &err) {
		return
	}
	d.mu.Lock()
	bs := make([]*backend, 0, len(d.backends))
	for _, b := range d.backends {
		bs = append(bs, b)
	}
	d.mu.Unlock()
	for _, b := range bs {
		b.r.Post(&b.faulted)
	}
	d.Notify(bdev.Event{Kind: bdev.EventFaulted, Err: err})
}

// watch looks at the namespace's size whenever asked, and brings the
// controller back whenever its admin queue ends, idle channels or not
// (so a remote that is gone is noticed, and faults the device in its loss
// timeout, with no I/O to find out), until Close or a fault.
func (d *Device) watch() {
	defer d.watcher.Done()
	for d.Err() == nil {
		select {
		case <-d.watchCtx.Done():
			return
		case <-d.sizeCheck:
			d.checkSize()
		case <-d.ctrl.Admin().Closed():
			d.recover()
		}
	}
}

// recover reconnects the controller, with backoff, until it works (or a
// channel's reconnect did it first), the device faults or closes.
func (d *Device) recover() {
	delay := reconnectMin
	for {
		d.reconnect.Lock()
		if d.ctrl.Admin().Err() == nil {
			d.reconnect.Unlock()
			return
		}
		ctx, cancel := context.WithTimeout(d.watchCtx, connectTimeout)
		err := d.ctrl.Reconnect(ctx)
		cancel()
		d.reconnect.Unlock()
		switch {
		case err == nil:
			d.connected()
			askOnce(d.sizeCheck) // events were lost with the association
			return
		case d.watchCtx.Err() != nil:
			return
		}
		d.connectFailed(err)
		if d.Err() != nil {
			return
		}
		select {
		case <-d.watchCtx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, reconnectMax)
	}
}

// sizeRetry is how soon a size change that could not be applied (the
// device busy with another quiesce, or I/O that would not drain) is tried
// again.
const sizeRetry = time.Second

// checkSize takes the namespace's size as it is now: a new size is
// applied with the device quiesced, and told; a namespace gone, or whose
// block size changed, faults the device.
func (d *Device) checkSize() {
	if d.Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(d.watchCtx, connectTimeout)
	defer cancel()
	ns, err := d.ctrl.Namespace(ctx, d.opts.NSID)
	if err != nil {
		return // the association is down: the reconnect asks again
	}
	info := d.Info()
	switch {
	case ns.Blocks() == 0:
		d.fault(fmt.Errorf("nvmf: namespace %d of %s is no longer active", d.opts.NSID, d.subNQN))
	case ns.BlockSize() != info.BlockSize:
		d.fault(fmt.Errorf("nvmf: namespace %d of %s now has %d-byte blocks, not %d", d.opts.NSID, d.subNQN, ns.BlockSize(), info.BlockSize))
	case ns.Blocks() != info.Blocks:
		if err := d.Quiesce(ctx); err != nil {
			time.AfterFunc(sizeRetry, func() { askOnce(d.sizeCheck) })
			return
		}
		d.SetBlocks(ns.Blocks())
		d.Resume()
		d.Notify(bdev.Event{Kind: bdev.EventResized})
	}
}

func (d *Device) releaseQID(qid uint16) {
	d.mu.Lock()
	delete(d.backends, qid)
	d.mu.Unlock()
}

// Close disconnects from the controller; channels must be closed first.
func (d *Device) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.endWatch()
	d.watcher.Wait()
	return d.ctrl.Close()
}
