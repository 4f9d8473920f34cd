package uring

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ErrUnsupported reports a kernel without a usable io_uring (not built in,
// or disabled by the kernel.io_uring_disabled sysctl or a seccomp policy).
var ErrUnsupported = errors.New("uring: io_uring is not available on this kernel")

// ErrClosed reports use of a ring after Close.
var ErrClosed = errors.New("uring: ring is closed")

// Options selects how a ring is set up. Flags that the running kernel
// rejects are dropped in a fixed order (see New) and the flags in force are
// reported by Ring.Flags.
type Options struct {
	// Entries is the SQ size, rounded up to a power of two by the kernel.
	Entries uint32
	// CQEntries, when non-zero, asks for a CQ of that size (IORING_SETUP_CQSIZE);
	// otherwise the kernel makes it twice Entries.
	CQEntries uint32
	// SingleIssuer asks for IORING_SETUP_SINGLE_ISSUER and, where the kernel
	// has it, DEFER_TASKRUN with TASKRUN_FLAG; otherwise COOP_TASKRUN. The
	// ring must then be used only from the OS thread that created it.
	SingleIssuer bool
	// SQPoll asks for a kernel submission thread (IORING_SETUP_SQPOLL) that
	// idles after SQThreadIdleMs; SQThreadCPU >= 0 pins it.
	SQPoll         bool
	SQThreadIdleMs uint32
	SQThreadCPU    int
}

// Ring is one io_uring instance. It is not safe for concurrent use.
type Ring struct {
	fd       int
	flags    uint32 // setup flags in force
	features uint32

	sqRing []byte // mmap of the SQ ring (and the CQ ring with FeatSingleMmap)
	cqRing []byte // separate CQ mmap, nil with FeatSingleMmap
	sqeMem []byte // mmap of the SQE array

	// Shared with the kernel: access only through sync/atomic.
	sqHead  *uint32
	sqTail  *uint32
	sqFlags *uint32
	cqHead  *uint32
	cqTail  *uint32

	sqMask  uint32
	sqes    []SQE
	sqeTail uint32 // next SQE to hand out (local)
	sqeHead uint32 // first SQE not yet published to the kernel (local)

	cqMask uint32
	cqes   []CQE

	fixed []memRange // registered buffers, by index

	stats Stats
}

// Stats counts what a ring did; the reactor exports them as metrics.
type Stats struct {
	Enters        uint64 // io_uring_enter calls
	Interrupted   uint64 // enters retried after EINTR
	Busy          uint64 // submits refused with EAGAIN/EBUSY
	OverflowFlush uint64 // enters made to flush overflowed CQEs
}

// New sets up a ring. Flags the kernel rejects with EINVAL are dropped in
// this order, the least important first: TASKRUN_FLAG beside
// DEFER_TASKRUN, DEFER_TASKRUN (falling back to COOP_TASKRUN),
// COOP_TASKRUN, SINGLE_ISSUER. SQPOLL is never dropped: asking for it and
// not getting it is an error.
func New(o Options) (*Ring, error) {
	if o.Entries == 0 {
		return nil, errors.New("uring: Options.Entries must be > 0")
	}
	var tries []uint32
	var base uint32
	if o.CQEntries != 0 {
		base |= SetupCQSize
	}
	if o.SQPoll {
		base |= SetupSQPoll
		if o.SQThreadCPU >= 0 {
			base |= SetupSQAff
		}
	}
	if o.SingleIssuer {
		tries = append(tries,
			base|SetupSingleIssuer|SetupDeferTaskrun|SetupTaskrunFlag,
			base|SetupSingleIssuer|SetupDeferTaskrun,
			base|SetupSingleIssuer|SetupCoopTaskrun|SetupTaskrunFlag)
	}
	tries = append(tries, base|SetupCoopTaskrun|SetupTaskrunFlag, base)

	var err error
	for _, flags := range tries {
		p := params{Flags: flags, CQEntries: o.CQEntries}
		if o.SQPoll {
			p.SQThreadIdle = o.SQThreadIdleMs
			if o.SQThreadCPU >= 0 {
				p.SQThreadCPU = uint32(o.SQThreadCPU)
			}
		}
		var fd int
		fd, err = setup(o.Entries, &p)
		if err == nil {
			r, err := mapRing(fd, &p)
			if err != nil {
				unix.Close(fd)
				return nil, err
			}
			return r, nil
		}
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	switch {
	case errors.Is(err, unix.ENOSYS):
		return nil, fmt.Errorf("%w (io_uring_setup: %v)", ErrUnsupported, err)
	case errors.Is(err, unix.EPERM):
		return nil, fmt.Errorf("%w (io_uring_setup: %v; check the kernel.io_uring_disabled sysctl)", ErrUnsupported, err)
	}
	return nil, fmt.Errorf("uring: io_uring_setup(%d entries): %w", o.Entries, err)
}

func setup(entries uint32, p *params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	runtime.KeepAlive(p)
	if errno != 0 {
		return -1, errno
	}
	return int(fd), nil
}

// mapRing maps the rings described by p. With FeatSingleMmap the SQ and CQ
// rings share one mapping, sized for the larger of the two.
func mapRing(fd int, p *params) (*Ring, error) {
	r := &Ring{fd: fd, flags: p.Flags, features: p.Features}
	sqSize := uintptr(p.SQOff.Array) + uintptr(p.SQEntries)*4
	cqSize := uintptr(p.CQOff.CQEs) + uintptr(p.CQEntries)*unsafe.Sizeof(CQE{})
	single := p.Features&FeatSingleMmap != 0
	if single {
		sqSize = max(sqSize, cqSize)
	}
	var err error
	r.sqRing, err = mmap(fd, offSQRing, sqSize)
	if err != nil {
		return nil, fmt.Errorf("uring: mmap SQ ring: %w", err)
	}
	cq := r.sqRing
	if !single {
		if r.cqRing, err = mmap(fd, offCQRing, cqSize); err != nil {
			r.unmap()
			return nil, fmt.Errorf("uring: mmap CQ ring: %w", err)
		}
		cq = r.cqRing
	}
	if r.sqeMem, err = mmap(fd, offSQEs, uintptr(p.SQEntries)*unsafe.Sizeof(SQE{})); err != nil {
		r.unmap()
		return nil, fmt.Errorf("uring: mmap SQEs: %w", err)
	}

	r.sqHead = u32at(r.sqRing, p.SQOff.Head)
	r.sqTail = u32at(r.sqRing, p.SQOff.Tail)
	r.sqFlags = u32at(r.sqRing, p.SQOff.Flags)
	r.sqMask = *u32at(r.sqRing, p.SQOff.RingMask)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&r.sqeMem[0])), p.SQEntries)
	// The SQ array maps ring slots to SQE indices. Slot i always holds SQE i,
	// so it is filled once here and never written again.
	array := unsafe.Slice(u32at(r.sqRing, p.SQOff.Array), p.SQEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqeTail = atomic.LoadUint32(r.sqTail)
	r.sqeHead = r.sqeTail

	r.cqHead = u32at(cq, p.CQOff.Head)
	r.cqTail = u32at(cq, p.CQOff.Tail)
	r.cqMask = *u32at(cq, p.CQOff.RingMask)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&cq[p.CQOff.CQEs])), p.CQEntries)
	return r, nil
}

func mmap(fd int, off int64, size uintptr) ([]byte, error) {
	return unix.Mmap(fd, off, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
}

func u32at(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

func (r *Ring) unmap() {
	for _, m := range [][]byte{r.sqeMem, r.cqRing, r.sqRing} {
		if m != nil {
			unix.Munmap(m)
		}
	}
	r.sqeMem, r.cqRing, r.sqRing = nil, nil, nil
	r.sqes, r.cqes = nil, nil
}

// Close unmaps the rings and closes the ring fd. Operations still in flight
// are cancelled by the kernel; their buffers must not be reused until Close
// returns.
func (r *Ring) Close() error {
	if r.fd < 0 {
		return ErrClosed
	}
	r.unmap()
	err := unix.Close(r.fd)
	r.fd = -1
	if err != nil {
		return fmt.Errorf("uring: close: %w", err)
	}
	return nil
}

// FD returns the ring's file descriptor (for IORING_OP_MSG_RING targets).
func (r *Ring) FD() int { return r.fd }

// Flags returns the setup flags in force.
func (r *Ring) Flags() uint32 { return r.flags }

// Features returns the features the kernel reported.
func (r *Ring) Features() uint32 { return r.features }

// SQEntries returns the SQ size.
func (r *Ring) SQEntries() uint32 { return uint32(len(r.sqes)) }

// CQEntries returns the CQ size.
func (r *Ring) CQEntries() uint32 { return uint32(len(r.cqes)) }

// Stats returns the ring's counters.
func (r *Ring) Stats() Stats { return r.stats }

// String describes the ring for logs.
func (r *Ring) String() string {
	return fmt.Sprintf("io_uring(fd=%d sq=%d cq=%d flags=%#x features=%#x)", r.fd, len(r.sqes), len(r.cqes), r.flags, r.features)
}
