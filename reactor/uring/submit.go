package uring

import (
	"fmt"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// GetSQE returns the next free SQE, zeroed, or nil when every slot is taken
// by prepared or in-kernel entries (Submit, reap, then try again).
func (r *Ring) GetSQE() *SQE {
	head := atomic.LoadUint32(r.sqHead)
	if r.sqeTail-head >= uint32(len(r.sqes)) {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	*sqe = SQE{}
	r.sqeTail++
	return sqe
}

// Unsubmitted returns the number of SQEs prepared or published that the
// kernel has not consumed yet.
func (r *Ring) Unsubmitted() uint32 { return r.sqeTail - atomic.LoadUint32(r.sqHead) }

// publish makes the prepared SQEs visible to the kernel. The atomic store
// of the tail orders the SQE writes before it.
func (r *Ring) publish() {
	if r.sqeHead != r.sqeTail {
		atomic.StoreUint32(r.sqTail, r.sqeTail)
		r.sqeHead = r.sqeTail
	}
}

// NeedsEnter reports whether the kernel holds completions that only an
// io_uring_enter with GETEVENTS will post: overflowed CQEs, or pending task
// work, which TASKRUN_FLAG makes the kernel flag in the SQ ring (it sets
// the flag as work is queued and clears it as it runs it). Without that
// flag, deferred task work (DEFER_TASKRUN) cannot be seen and the answer
// is always true: a spinning reactor would enter on every turn.
func (r *Ring) NeedsEnter() bool {
	if r.flags&SetupDeferTaskrun != 0 && r.flags&SetupTaskrunFlag == 0 {
		return true
	}
	return atomic.LoadUint32(r.sqFlags)&(sqCQOverflow|sqTaskrun) != 0
}

// Submit publishes the prepared SQEs and enters the kernel if there is
// anything to submit or any completion to collect. It returns the number of
// SQEs the kernel consumed, which may be fewer than were prepared; the rest
// stay queued for the next call. Errors wrapping unix.EAGAIN or unix.EBUSY
// mean the kernel is short of resources or has a CQ backlog: reap, then call
// again.
func (r *Ring) Submit() (int, error) { return r.submit(0) }

// SubmitAndWait is Submit that also blocks until at least waitNr
// completions are ready to reap. Signals (EINTR) do not end the wait.
func (r *Ring) SubmitAndWait(waitNr uint32) (int, error) { return r.submit(waitNr) }

func (r *Ring) submit(waitNr uint32) (int, error) {
	if r.fd < 0 {
		return 0, ErrClosed
	}
	r.publish()
	submitted := 0
	for {
		toSubmit := r.Unsubmitted()
		var flags uint32
		// An enter that submits collects too when task work is deferred:
		// the kernel runs it only when asked, and asking costs nothing more.
		deferred := r.flags&SetupDeferTaskrun != 0 && toSubmit > 0
		if waitNr > 0 || deferred || r.NeedsEnter() {
			flags |= enterGetEvents
			if atomic.LoadUint32(r.sqFlags)&sqCQOverflow != 0 {
				r.stats.OverflowFlush++
			}
		}
		if r.flags&SetupSQPoll != 0 {
			// The kernel thread consumes the SQ; enter only to wake it or to wait.
			if atomic.LoadUint32(r.sqFlags)&sqNeedWakeup != 0 {
				flags |= enterSQWakeup
			}
			toSubmit = 0
		}
		if toSubmit == 0 && flags == 0 {
			return submitted, nil
		}
		r.stats.Enters++
		n, errno := enter(r.fd, toSubmit, waitNr, flags)
		switch errno {
		case 0:
			// A signal can cut the wait short after a successful submit: the
			// kernel then returns the submitted count, not EINTR.
			submitted += int(n)
			if waitNr == 0 || r.Ready() >= waitNr {
				return submitted, nil
			}
			r.stats.Interrupted++
		case unix.EINTR:
			// Nothing was submitted by this call; the wait starts over.
			r.stats.Interrupted++
		case unix.EAGAIN, unix.EBUSY:
			r.stats.Busy++
			return submitted, fmt.Errorf("uring: io_uring_enter: %w", errno)
		default:
			return submitted, fmt.Errorf("uring: io_uring_enter(submit=%d wait=%d flags=%#x): %w", toSubmit, waitNr, flags, errno)
		}
	}
}

// Ready returns the number of CQEs waiting to be reaped.
func (r *Ring) Ready() uint32 {
	return atomic.LoadUint32(r.cqTail) - atomic.LoadUint32(r.cqHead)
}

// Reap copies up to len(dst) completions into dst, gives their slots back
// to the kernel and returns how many it copied. It never blocks and never
// enters the kernel; call Submit when NeedsEnter reports completions held
// back by the kernel.
func (r *Ring) Reap(dst []CQE) int {
	head := atomic.LoadUint32(r.cqHead)
	n := min(atomic.LoadUint32(r.cqTail)-head, uint32(len(dst)))
	for i := range n {
		dst[i] = r.cqes[(head+i)&r.cqMask]
	}
	atomic.StoreUint32(r.cqHead, head+n)
	return int(n)
}

// enter calls io_uring_enter. One that does not wait returns within the
// time the kernel takes to issue and complete what is ready, and is made
// raw: the Go scheduler does not see it, so its monitor thread does not
// take the P away from a reactor that enters on every turn of its spin
// (waking, on a one-core process, for every one of them). One that waits
// tells the scheduler, which then lets other goroutines have the P.
func enter(fd int, toSubmit, waitNr, flags uint32) (uintptr, unix.Errno) {
	if waitNr == 0 {
		n, _, errno := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), 0, uintptr(flags), 0, 0)
		return n, errno
	}
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(fd), uintptr(toSubmit), uintptr(waitNr), uintptr(flags), 0, 0)
	return n, errno
}
