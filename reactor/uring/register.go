package uring

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

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

// RegisterSparseFiles registers a table of n empty file slots, filled later
// with UpdateFiles, so that files can come and go without re-registering.
func (r *Ring) RegisterSparseFiles(n int) error {
	fds := make([]int32, n)
	for i := range fds {
		fds[i] = -1
	}
	return r.RegisterFiles(fds)
}

// UpdateFiles puts fds into the registered file table from slot off on
// (-1 empties a slot).
func (r *Ring) UpdateFiles(off uint32, fds []int32) error {
	if len(fds) == 0 {
		return nil
	}
	upd := filesUpdate{Offset: off, FDs: uint64(uintptr(unsafe.Pointer(&fds[0])))}
	err := r.register(registerFilesUpdate, unsafe.Pointer(&upd), uint32(len(fds)))
	runtime.KeepAlive(fds)
	if err != nil {
		return fmt.Errorf("uring: update files at %d: %w", off, err)
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
	r.fixed = r.fixed[:0]
	for _, b := range bufs {
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		r.fixed = append(r.fixed, memRange{start, start + uintptr(len(b))})
	}
	return nil
}

// FixedIndex returns the index of the registered buffer that holds all of
// b, for READ_FIXED/WRITE_FIXED.
func (r *Ring) FixedIndex(b []byte) (uint16, bool) {
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	end := start + uintptr(len(b))
	for i, m := range r.fixed {
		if start >= m.start && end <= m.end {
			return uint16(i), true
		}
	}
	return 0, false
}

type memRange struct{ start, end uintptr }

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
