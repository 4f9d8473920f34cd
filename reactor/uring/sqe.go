package uring

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// The Prep methods fill an SQE returned by GetSQE. Memory they point the
// kernel at must stay valid until the operation's CQE is reaped (see the
// package doc).

// PrepNop prepares a no-op.
func (s *SQE) PrepNop() { s.Opcode = OpNop }

// PrepRead prepares a read of len(buf) bytes at off.
func (s *SQE) PrepRead(fd int32, buf []byte, off uint64) {
	s.prepRW(OpRead, fd, addrOf(buf), uint32(len(buf)), off)
}

// PrepWrite prepares a write of buf at off.
func (s *SQE) PrepWrite(fd int32, buf []byte, off uint64) {
	s.prepRW(OpWrite, fd, addrOf(buf), uint32(len(buf)), off)
}

// PrepReadFixed prepares a read into registered buffer bufIndex; buf must lie
// inside that buffer.
func (s *SQE) PrepReadFixed(fd int32, buf []byte, off uint64, bufIndex uint16) {
	s.prepRW(OpReadFixed, fd, addrOf(buf), uint32(len(buf)), off)
	s.BufIndex = bufIndex
}

// PrepWriteFixed prepares a write from registered buffer bufIndex.
func (s *SQE) PrepWriteFixed(fd int32, buf []byte, off uint64, bufIndex uint16) {
	s.prepRW(OpWriteFixed, fd, addrOf(buf), uint32(len(buf)), off)
	s.BufIndex = bufIndex
}

// PrepFsync prepares an fsync (flags: FsyncDatasync for fdatasync).
func (s *SQE) PrepFsync(fd int32, flags uint32) {
	s.Opcode = OpFsync
	s.FD = fd
	s.OpFlags = flags
}

// PrepFallocate prepares fallocate(fd, mode, off, length). The kernel takes
// the length from addr and the mode from len.
func (s *SQE) PrepFallocate(fd int32, mode uint32, off, length uint64) {
	s.Opcode = OpFallocate
	s.FD = fd
	s.Off = off
	s.Addr = length
	s.Len = mode
}

// PrepPollAdd prepares a one-shot poll for events (POLLIN...) on fd.
func (s *SQE) PrepPollAdd(fd int32, events uint32) {
	s.Opcode = OpPollAdd
	s.FD = fd
	s.OpFlags = events
}

// PrepSendmsg prepares sendmsg(fd, msg, flags). The msghdr, its iovec
// array and the data must stay valid until the completion. It waits for
// buffer space even on an O_NONBLOCK socket (the kernel arms a poll) unless
// flags has MSG_DONTWAIT, and may complete short.
func (s *SQE) PrepSendmsg(fd int32, msg *unix.Msghdr, flags uint32) {
	s.prepRW(OpSendmsg, fd, uint64(uintptr(unsafe.Pointer(msg))), 1, 0)
	s.OpFlags = flags
}

// PrepRecv prepares recv(fd, buf, flags): it completes with the bytes
// received, 0 at end of stream, or -errno. Like PrepSendmsg it waits for
// data on an O_NONBLOCK socket.
func (s *SQE) PrepRecv(fd int32, buf []byte, flags uint32) {
	s.prepRW(OpRecv, fd, addrOf(buf), uint32(len(buf)), 0)
	s.OpFlags = flags
}

// PrepCancel prepares the cancellation of the operation in flight whose
// user data is target (IORING_OP_ASYNC_CANCEL): it completes with 0 once
// that operation was cancelled (which then completes -ECANCELED),
// -ENOENT when none was found, -EALREADY when it is running and cannot
// be stopped (a disk read already issued completes on its own).
func (s *SQE) PrepCancel(target uint64) {
	s.prepRW(OpAsyncCancel, -1, target, 0, 0)
}

// SetRWFlags sets the per-operation RWF_* flags of a read or write
// (unix.RWF_DSYNC gives write-through for FUA).
func (s *SQE) SetRWFlags(flags uint32) { s.OpFlags = flags }

func (s *SQE) prepRW(op Op, fd int32, addr uint64, n uint32, off uint64) {
	s.Opcode = op
	s.FD = fd
	s.Addr = addr
	s.Len = n
	s.Off = off
}

func addrOf(b []byte) uint64 { return uint64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))) }
