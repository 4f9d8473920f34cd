package host

import (
	"errors"
	"io"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// busyReader reads a TCP connection by trying its non-blocking socket for up
// to spin before letting Go's netpoller park the goroutine. A parked reader
// pays a wake-up for every batch of responses (tens of microseconds on a
// VM), which at low queue depth is most of a command's round trip; polling
// spends the reader's CPU instead. It allocates nothing per read.
type busyReader struct {
	rc   syscall.RawConn
	spin time.Duration
	try  func(fd uintptr) bool // b.read, bound once

	// Per Read call, passed to and from try.
	buf []byte
	n   int
	err error
}

func newBusyReader(nc net.Conn, spin time.Duration) (*busyReader, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil, errors.New("host: busy polling needs a connection with a file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &busyReader{rc: rc, spin: spin}
	b.try = b.read
	return b, nil
}

func (b *busyReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b.buf, b.n, b.err = p, 0, nil
	// RawConn.Read calls try until it returns true, waiting in the netpoller
	// (and so honouring deadlines and Close) whenever it returns false.
	err := b.rc.Read(b.try)
	b.buf = nil // do not keep the caller's buffer
	if err != nil {
		return 0, err
	}
	return b.n, b.err
}

func (b *busyReader) read(fd uintptr) bool {
	var until time.Time
	for {
		n, err := unix.Read(int(fd), b.buf)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			now := time.Now()
			if until.IsZero() {
				until = now.Add(b.spin)
			} else if now.After(until) {
				return false
			}
			// Other goroutines (other queues' readers among them) share
			// this P: let them run between tries.
			runtime.Gosched()
			continue
		case err != nil:
			b.err = os.NewSyscallError("read", err)
		case n == 0:
			b.err = io.EOF
		default:
			b.n = n
		}
		return true
	}
}
