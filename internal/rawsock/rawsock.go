// Package rawsock receives from sockets with raw system calls, for
// reactors that poll their connections while they spin. A raw call is
// invisible to the Go scheduler: it neither hands the thread's P to the
// scheduler's monitor nor costs the entersyscall/exitsyscall pair, which
// matters for a loop that makes one per turn. It is only for calls that
// return at once: the receives here never wait (MSG_DONTWAIT).
//
// Invariants of the unsafe code: the buffer's address is taken in the
// call expression itself, so the buffer stays alive and in place for the
// call (Go's heap does not move objects; off-heap buffers are the
// caller's to keep mapped), and an empty buffer is never passed.
package rawsock

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// Recv receives into b without waiting and returns the bytes received (0:
// the peer closed), or the errno: unix.EAGAIN when nothing has arrived.
// b must not be empty.
func Recv(fd int, b []byte) (int, unix.Errno) {
	n, _, errno := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), unix.MSG_DONTWAIT, 0, 0)
	return int(n), errno
}
