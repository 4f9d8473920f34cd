package pcie

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/internal/mmio"
	"github.com/strata-storage/strata/internal/vfio"
)

// Scheme is the URI scheme of NVMe namespaces driven through VFIO:
// pcie://DOMAIN:BUS:DEV.FN[?ns=N].
const Scheme = "pcie"

// shutdownTimeout bounds the controller's normal shutdown on Close.
const shutdownTimeout = 10 * time.Second

// barRegisters is BAR0 mapped through VFIO. 64-bit registers are accessed
// as two 32-bit halves, low first (NVMe Base 2.0, 3.1.3: hosts may), which
// every controller and emulation takes.
type barRegisters struct{ bar []byte }

func (r barRegisters) Read32(off int) uint32     { return mmio.Load32(r.bar, off) }
func (r barRegisters) Write32(off int, v uint32) { mmio.Store32(r.bar, off, v) }

func (r barRegisters) Read64(off int) uint64 {
	return uint64(mmio.Load32(r.bar, off)) | uint64(mmio.Load32(r.bar, off+4))<<32
}

func (r barRegisters) Write64(off int, v uint64) {
	mmio.Store32(r.bar, off, uint32(v))
	mmio.Store32(r.bar, off+4, uint32(v>>32))
}

// dmaBase is the first IOVA handed out: low IOVAs are left unused, so a
// zero or small pointer from a bug never reaches real memory.
const dmaBase = 1 << 32

// vfioMemory allocates DMA memory in whole iomem chunks (2 MiB: a huge
// page where hugetlbfs has them, plain pages otherwise) and maps each for
// the device at the next free IOVA. Pieces are carved from the current
// chunk; nothing is freed before the device closes.
type vfioMemory struct {
	dev     *vfio.Device
	mu      sync.Mutex
	regions []*iomem.Region
	iovas   []uint64
	cur     DMA // the rest of the current chunk
	next    uint64
}

func (m *vfioMemory) Alloc(size int) (DMA, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	size = (size + pageSize - 1) &^ (pageSize - 1)
	if len(m.cur.Bytes) < size {
		r, err := iomem.Map(size)
		if err != nil {
			return DMA{}, err
		}
		b := r.Bytes()
		if err := m.dev.MapDMA(b, m.next); err != nil {
			r.Unmap()
			return DMA{}, err
		}
		m.regions, m.iovas = append(m.regions, r), append(m.iovas, m.next)
		m.cur = DMA{Bytes: b, IOVA: m.next}
		m.next += uint64(len(b))
	}
	d := m.cur.Slice(0, size)
	m.cur = m.cur.Slice(size, len(m.cur.Bytes)-size)
	return d, nil
}

func (m *vfioMemory) close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for i, r := range m.regions {
		errs = append(errs, m.dev.UnmapDMA(m.iovas[i], uint64(len(r.Bytes()))), r.Unmap())
	}
	m.regions, m.iovas = nil, nil
	return errors.Join(errs...)
}

// attachment is an open controller with what it holds.
type attachment struct {
	dev  *vfio.Device
	bar  []byte
	mem  *vfioMemory
	ctrl *Controller
}

// Open takes over the NVMe controller at bdf through VFIO and returns
// namespace nsid as a device; closing the device shuts the controller down
// and releases it. ioQueues bounds the channels (one queue pair each).
func Open(name, bdf string, nsid uint32, ioQueues int) (*Device, error) {
	dev, err := vfio.Open(bdf)
	if err != nil {
		return nil, err
	}
	a := &attachment{dev: dev, mem: &vfioMemory{dev: dev, next: dmaBase}}
	fail := func(err error) (*Device, error) {
		return nil, errors.Join(err, a.close())
	}
	if err := dev.EnableBusMaster(); err != nil {
		return fail(err)
	}
	if a.bar, err = dev.MapBAR(0); err != nil {
		return fail(err)
	}
	if a.ctrl, err = Init(barRegisters{a.bar}, a.mem, ioQueues); err != nil {
		return fail(fmt.Errorf("pcie %s: %w", bdf, err))
	}
	d, err := NewDevice(name, a.ctrl, nsid)
	if err != nil {
		return fail(fmt.Errorf("pcie %s: %w", bdf, err))
	}
	d.owned = a
	return d, nil
}

func (a *attachment) close() error {
	var errs []error
	if a.ctrl != nil {
		errs = append(errs, a.ctrl.Shutdown(shutdownTimeout))
	}
	if a.bar != nil {
		errs = append(errs, unix.Munmap(a.bar))
	}
	errs = append(errs, a.mem.close(), a.dev.Close())
	return errors.Join(errs...)
}

// FromURI opens pcie://BDF[?ns=N&queues=Q] (namespace 1 and 64 queue pairs
// by default: one per reactor that opens a channel).
func FromURI(name string, u *url.URL) (bdev.Device, error) {
	q := u.Query()
	nsid, queues := uint64(1), uint64(64)
	var err error
	for k := range q {
		switch k {
		case "ns":
			if nsid, err = strconv.ParseUint(q.Get(k), 10, 32); err != nil || nsid == 0 {
				return nil, fmt.Errorf("%w: ns=%q: want a namespace ID from 1", bdev.ErrBadURI, q.Get(k))
			}
		case "queues":
			if queues, err = strconv.ParseUint(q.Get(k), 10, 16); err != nil || queues == 0 {
				return nil, fmt.Errorf("%w: queues=%q: want 1 to 65535", bdev.ErrBadURI, q.Get(k))
			}
		default:
			return nil, fmt.Errorf("%w: unknown option %q (want ns, queues)", bdev.ErrBadURI, k)
		}
	}
	if u.Path != "" && u.Path != "/" {
		return nil, fmt.Errorf("%w: pcie://%s%s: want pcie://DOMAIN:BUS:DEV.FN", bdev.ErrBadURI, u.Host, u.Path)
	}
	if err := vfio.ValidBDF(u.Host); err != nil {
		return nil, fmt.Errorf("%w: %v", bdev.ErrBadURI, err)
	}
	return Open(name, u.Host, uint32(nsid), int(queues))
}
