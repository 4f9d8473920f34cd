package uring

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// maxProbeOps bounds the opcode probe; opcodes are one byte.
const maxProbeOps = 256

// Probe records which opcodes the kernel supports.
type Probe struct {
	LastOp    Op
	supported [maxProbeOps]bool
}

// Supports reports whether op is supported.
func (p *Probe) Supports(op Op) bool { return p.supported[op] }

// Probe asks the kernel which opcodes it supports (IORING_REGISTER_PROBE).
func (r *Ring) Probe() (*Probe, error) {
	var buf struct {
		hdr probeHeader
		ops [maxProbeOps]probeOp
	}
	if err := r.register(registerProbe, unsafe.Pointer(&buf), maxProbeOps); err != nil {
		return nil, fmt.Errorf("uring: probe: %w", err)
	}
	p := &Probe{LastOp: Op(buf.hdr.LastOp)}
	for _, op := range buf.ops[:buf.hdr.OpsLen] {
		if op.Flags&probeOpSupported != 0 {
			p.supported[op.Op] = true
		}
	}
	return p, nil
}

// RegisterFiles registers fds; SQEs then name a file by its index in fds
// with the SQEFixedFile flag, saving the kernel a file lookup per I/O.
func (r *Ring) RegisterFiles(fds []int32) error {
	if len(fds) == 0 {
		return nil
	}
	err := r.register(registerFiles, unsafe.Pointer(&fds[0]), uint32(len(fds)))
	runtime.KeepAlive(fds)
	if err != nil {
		return fmt.Errorf("uring: register %d files: %w", len(fds), err)
	}
	return nil
}

// UnregisterFiles drops the registered files.
func (r *Ring) UnregisterFiles() error {
	if err := r.register(unregisterFiles, nil, 0); err != nil {
		return fmt.Errorf("uring: unregister files: %w", err)
	}
	return nil
}

// RegisterBuffers registers bufs as fixed buffers: the kernel pins their
// pages once, and READ_FIXED/WRITE_FIXED name them by index. They must be
// memory outside the Go heap that outlives the registration.
func (r *Ring) RegisterBuffers(bufs [][]byte) error {
	if len(bufs) == 0 {
		return nil
	}
	iov := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iov[i].Base = unsafe.SliceData(b)
		iov[i].SetLen(len(b))
	}
	err := r.register(registerBuffers, unsafe.Pointer(&iov[0]), uint32(len(iov)))
	runtime.KeepAlive(iov)
	if err != nil {
		return fmt.Errorf("uring: register %d buffers: %w", len(bufs), err)
	}
	return nil
}

// UnregisterBuffers drops the registered buffers.
func (r *Ring) UnregisterBuffers() error {
	if err := r.register(unregisterBuffers, nil, 0); err != nil {
		return fmt.Errorf("uring: unregister buffers: %w", err)
	}
	return nil
}

func (r *Ring) register(op uintptr, arg unsafe.Pointer, n uint32) error {
	if r.fd < 0 {
		return ErrClosed
	}
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), uintptr(n), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}
