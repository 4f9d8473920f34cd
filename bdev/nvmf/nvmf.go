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
// admin queue is gone too), requests wait meanwhile, and each is bounded
// by the device's timeout (timeout=, 30 s by default, as Linux's
// io_timeout): on expiry the queue is reset and the request finishes
// StatusTimeout. Requests whose outcome the connection took with it
// finish StatusNotReady: a write's fate is then unknown, which is what a
// replicating layer above must be told.
package nvmf

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
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
	DefaultTimeout    = 30 * time.Second
	DefaultQueueDepth = 128
	connectTimeout    = 10 * time.Second
	keepAlive         = 10 * time.Second
	// maxQueues is how many I/O queues the device asks for: one per
	// reactor that opens a channel.
	maxQueues = 64
)

// Options configures Open.
type Options struct {
	NSID       uint32
	Timeout    time.Duration // per request; 0: DefaultTimeout
	QueueDepth int           // per channel; 0: DefaultQueueDepth
	HostNQN    string        // "": one made from a random host ID
}

// Device is a remote namespace.
type Device struct {
	bdev.Base
	addr, subNQN string
	opts         Options
	ctrl         *host.Controller
	maxBlocks    uint32 // per Read or Write command (MDTS)

	mu     sync.Mutex
	qids   map[uint16]bool // I/O queue IDs in use by channels
	closed bool

	// reconnect serializes bringing the controller back: the channels'
	// queues find it gone together.
	reconnect sync.Mutex
}

// FromURI opens nvmf://HOST:PORT/SUBNQN?ns=N&timeout=D&depth=N&hostnqn=NQN.
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
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%w: timeout=%q: want a positive duration (30s)", bdev.ErrBadURI, v)
			}
			opts.Timeout = d
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
			return nil, fmt.Errorf("%w: unknown option %q (want ns, timeout, depth, hostnqn)", bdev.ErrBadURI, k)
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
	if opts.QueueDepth == 0 {
		opts.QueueDepth = DefaultQueueDepth
	}
	ctrl, err := host.Connect(ctx, addr, subNQN, host.Config{
		HostNQN: opts.HostNQN, AdminOnly: true, IOQueues: maxQueues, KeepAlive: keepAlive,
	})
	if err != nil {
		return nil, fmt.Errorf("nvmf: %w", err)
	}
	d, err := newDevice(ctx, name, addr, subNQN, opts, ctrl)
	if err != nil {
		ctrl.Close()
		return nil, err
	}
	return d, nil
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
		maxBlocks: max(maxBlocks, 1), qids: map[uint16]bool{},
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
		if !d.qids[id] {
			qid = id
			break
		}
	}
	if qid == 0 {
		return nil, fmt.Errorf("nvmf: all %d I/O queues the controller granted are in use", d.ctrl.GrantedIOQueues())
	}
	d.qids[qid] = true
	b := newBackend(d, r, qid)
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
			return nil, err
		}
	}
	d.reconnect.Unlock()
	return d.ctrl.ConnectIOQueue(ctx, r, qid, d.opts.QueueDepth)
}

func (d *Device) releaseQID(qid uint16) {
	d.mu.Lock()
	delete(d.qids, qid)
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
	return d.ctrl.Close()
}
