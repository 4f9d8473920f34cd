// Package host is a Go NVMe/TCP host (initiator): it connects an admin
// queue and I/O queues to a controller, identifies it, and runs commands
// with many in flight per queue. Strata uses it to reach remote replicas,
// to drive the target in the load generator, and in tests.
//
// Each queue is one TCP connection with a reader goroutine that completes
// commands; Submit may be called from any goroutine. Requests are caller-
// owned; a request's Callback runs on the queue's reader goroutine.
package host

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/strata-storage/strata/nvmeof/nqn"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// Errors, matched with errors.Is.
var (
	ErrClosed    = errors.New("host: queue closed")
	ErrQueueFull = errors.New("host: queue full")
)

// Config configures a connection.
type Config struct {
	HostNQN      string   // default: a UUID-based NQN from HostID
	HostID       [16]byte // default: random
	HeaderDigest bool
	DataDigest   bool
	// KeepAlive is KATO; the host sends Keep Alive at half of it (0: none).
	KeepAlive  time.Duration
	IOQueues   int // default 1
	QueueDepth int // entries per I/O queue (default 128, at most the target's MQES+1)
	// AdminOnly connects the admin queue and negotiates IOQueues, but leaves
	// the I/O queues to the caller (tools, tests driving queues by hand).
	AdminOnly bool
	// DisableSQFlowControl asks the target to skip SQ head tracking, which
	// lets it answer reads with C2HData alone (SUCCESS flag).
	DisableSQFlowControl bool
}

func (c *Config) setDefaults() {
	if c.HostID == ([16]byte{}) {
		rand.Read(c.HostID[:])
	}
	if c.HostNQN == "" {
		c.HostNQN = nqn.FromUUID(c.HostID)
	}
	if c.IOQueues == 0 {
		c.IOQueues = 1
	}
	if c.QueueDepth == 0 {
		c.QueueDepth = 128
	}
}

// adminDepth is the admin queue size.
const adminDepth = 32

// Controller is a connected controller: admin queue plus I/O queues.
type Controller struct {
	cfg    Config
	addr   string
	subNQN string
	admin  *Queue
	ioqs   []*Queue
	cntlID uint16
	ident  nvme.IdentifyController

	stopKA chan struct{}
	kaDone sync.WaitGroup
}

// Connect connects to subsystem subNQN at addr ("host:port"): admin queue,
// controller enable, identify, then the I/O queues.
func Connect(ctx context.Context, addr, subNQN string, cfg Config) (*Controller, error) {
	cfg.setDefaults()
	c := &Controller{cfg: cfg, addr: addr, subNQN: subNQN, stopKA: make(chan struct{})}
	admin, cntlID, err := dialQueue(ctx, addr, subNQN, 0, adminDepth, 0xffff, &cfg)
	if err != nil {
		return nil, err
	}
	c.admin, c.cntlID = admin, cntlID
	if err := c.enable(ctx); err != nil {
		admin.Close()
		return nil, err
	}
	b, err := c.admin.Identify(ctx, nvme.CNSController, 0)
	id := nvme.IdentifyController(b)
	if err != nil {
		admin.Close()
		return nil, fmt.Errorf("host: identify controller: %w", err)
	}
	c.ident = id
	if subNQN == nqn.Discovery {
		c.startKeepAlive()
		return c, nil
	}
	granted, err := c.setQueueCount(ctx, cfg.IOQueues)
	if err != nil {
		admin.Close()
		return nil, err
	}
	depth := min(cfg.QueueDepth, int(id.MaxCmd()))
	if cfg.AdminOnly {
		granted = 0
	}
	for i := range min(cfg.IOQueues, granted) {
		q, _, err := dialQueue(ctx, addr, subNQN, uint16(i+1), depth, cntlID, &cfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("host: I/O queue %d: %w", i+1, err)
		}
		q.inCapsule = int(id.IOCCSZ())*16 - nvme.CommandSize
		c.ioqs = append(c.ioqs, q)
	}
	c.startKeepAlive()
	return c, nil
}

// Property offsets and CC for enabling (NVMe Base 2.0, 3.1.3).
const (
	propCAP  = 0x00
	propCC   = 0x14
	propCSTS = 0x1c
	ccEnable = 1 | 6<<16 | 4<<20 // EN, IOSQES 64 bytes, IOCQES 16 bytes
)

func (c *Controller) enable(ctx context.Context) error {
	capReg, err := c.admin.PropertyGet(ctx, propCAP, true)
	if err != nil {
		return fmt.Errorf("host: read CAP: %w", err)
	}
	if err := c.admin.PropertySet(ctx, propCC, ccEnable); err != nil {
		return fmt.Errorf("host: enable: %w", err)
	}
	timeout := time.Duration((capReg>>24)&0xff) * 500 * time.Millisecond
	deadline := time.Now().Add(max(timeout, time.Second))
	for {
		csts, err := c.admin.PropertyGet(ctx, propCSTS, false)
		if err != nil {
			return fmt.Errorf("host: read CSTS: %w", err)
		}
		if csts&2 != 0 {
			return errors.New("host: controller fatal status after enable")
		}
		if csts&1 != 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("host: controller did not become ready")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Controller) setQueueCount(ctx context.Context, n int) (int, error) {
	cmd := newCommand(nvme.AdminSetFeatures)
	cmd.SetCDW(10, nvme.FeatNumQueues)
	v := uint32(n - 1)
	cmd.SetCDW(11, v|v<<16)
	dw0, err := c.admin.Exec(ctx, cmd, nil, false)
	if err != nil {
		return 0, fmt.Errorf("host: set number of queues: %w", err)
	}
	return int(min(dw0&0xffff, dw0>>16)) + 1, nil
}

func (c *Controller) startKeepAlive() {
	if c.cfg.KeepAlive <= 0 {
		return
	}
	c.kaDone.Add(1)
	go func() {
		defer c.kaDone.Done()
		t := time.NewTicker(c.cfg.KeepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-c.stopKA:
				return
			case <-t.C:
				ctx, cancel := context.WithTimeout(context.Background(), c.cfg.KeepAlive)
				_, err := c.admin.Exec(ctx, newCommand(nvme.AdminKeepAlive), nil, false)
				cancel()
				if err != nil {
					return
				}
			}
		}
	}()
}

// ControllerID returns the controller ID the target assigned.
func (c *Controller) ControllerID() uint16 { return c.cntlID }

// Identify returns the Identify Controller data.
func (c *Controller) Identify() nvme.IdentifyController { return c.ident }

// Admin returns the admin queue.
func (c *Controller) Admin() *Queue { return c.admin }

// IOQueues returns the I/O queues.
func (c *Controller) IOQueues() []*Queue { return c.ioqs }

// Namespaces lists the active namespace IDs.
func (c *Controller) Namespaces(ctx context.Context) ([]uint32, error) {
	b, err := c.admin.Identify(ctx, nvme.CNSActiveNSList, 0)
	if err != nil {
		return nil, err
	}
	var ids []uint32
	for i := 0; i+4 <= len(b); i += 4 {
		id := binary.LittleEndian.Uint32(b[i:])
		if id == 0 {
			break
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// Namespace returns a namespace's Identify data.
func (c *Controller) Namespace(ctx context.Context, nsid uint32) (nvme.IdentifyNamespace, error) {
	b, err := c.admin.Identify(ctx, nvme.CNSNamespace, nsid)
	return nvme.IdentifyNamespace(b), err
}

// maxDiscoveryRecords bounds the discovery log a host reads (the page would
// be 256 KiB).
const maxDiscoveryRecords = 255

// DiscoveryLog reads the discovery log page (discovery controllers).
func (c *Controller) DiscoveryLog(ctx context.Context) ([]nvme.DiscoveryEntry, error) {
	hdr, err := c.admin.GetLogPage(ctx, nvme.LogDiscovery, nvme.DiscoveryHeaderSize, 0)
	if err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(hdr[8:]) // NUMREC
	if n > maxDiscoveryRecords {
		return nil, fmt.Errorf("host: discovery log claims %d records, more than %d", n, maxDiscoveryRecords)
	}
	full, err := c.admin.GetLogPage(ctx, nvme.LogDiscovery, uint32(nvme.DiscoveryHeaderSize+int(n)*nvme.DiscoveryEntrySize), 0)
	if err != nil {
		return nil, err
	}
	_, entries, err := nvme.DecodeDiscoveryLog(full)
	return entries, err
}

// Close disconnects: I/O queues first, then a controller shutdown and the
// admin queue.
func (c *Controller) Close() error {
	close(c.stopKA)
	c.kaDone.Wait()
	var errs []error
	for _, q := range c.ioqs {
		errs = append(errs, q.Close())
	}
	if c.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		c.admin.PropertySet(ctx, propCC, ccEnable|1<<14) // normal shutdown notification
		cancel()
		errs = append(errs, c.admin.Close())
	}
	return errors.Join(errs...)
}

// Discover connects to the discovery controller at addr and returns its log.
func Discover(ctx context.Context, addr string, cfg Config) ([]nvme.DiscoveryEntry, error) {
	c, err := Connect(ctx, addr, nqn.Discovery, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.DiscoveryLog(ctx)
}

func newCommand(op uint8) nvme.Command {
	cmd := nvme.Command(make([]byte, nvme.CommandSize))
	cmd.SetOpcode(op)
	cmd.SetFlags(nvme.FlagsSGL)
	return cmd
}
