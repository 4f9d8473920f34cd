package uring

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/internal/iomem"
)

// newRing returns a single-issuer ring for the calling goroutine, which it
// locks to its OS thread for the rest of the test.
func newRing(t *testing.T, o Options) *Ring {
	t.Helper()
	runtime.LockOSThread()
	t.Cleanup(runtime.UnlockOSThread)
	r, err := New(o)
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

// run submits everything prepared and waits for want completions.
func run(t *testing.T, r *Ring, want int) []CQE {
	t.Helper()
	var out []CQE
	buf := make([]CQE, 64)
	for len(out) < want {
		_, err := r.SubmitAndWait(1)
		require.NoError(t, err)
		n := r.Reap(buf)
		out = append(out, buf[:n]...)
	}
	require.Len(t, out, want)
	return out
}

func TestSetupProbesFlagsAndFeatures(t *testing.T) {
	r := newRing(t, Options{Entries: 100, SingleIssuer: true})
	require.Equal(t, uint32(128), r.SQEntries(), "entries round up to a power of two")
	require.Equal(t, 2*r.SQEntries(), r.CQEntries())
	require.NotZero(t, r.Flags()&SetupSingleIssuer, "kernel 6.0+ has SINGLE_ISSUER")
	require.NotZero(t, r.Flags()&SetupDeferTaskrun, "kernel 6.1+ has DEFER_TASKRUN")
	require.NotZero(t, r.Flags()&SetupTaskrunFlag, "and TASKRUN_FLAG beside it")
	require.NotZero(t, r.Features()&FeatSingleMmap)
	require.NotZero(t, r.Features()&FeatNoDrop)
	require.Contains(t, r.String(), "sq=128")

	plain := newRing(t, Options{Entries: 8, CQEntries: 64})
	require.Zero(t, plain.Flags()&SetupSingleIssuer)
	require.Equal(t, uint32(64), plain.CQEntries())
}

func TestSetupErrors(t *testing.T) {
	_, err := New(Options{})
	require.Error(t, err)
	_, err = New(Options{Entries: 1 << 20}) // above IORING_MAX_ENTRIES
	require.Error(t, err)
}

func TestNopsInBatches(t *testing.T) {
	r := newRing(t, Options{Entries: 16, SingleIssuer: true})
	seen := map[uint64]bool{}
	for batch := range 10 {
		for i := range 16 {
			sqe := r.GetSQE()
			require.NotNil(t, sqe)
			sqe.PrepNop()
			sqe.UserData = uint64(batch*100 + i)
		}
		require.Nil(t, r.GetSQE(), "SQ is full")
		for _, c := range run(t, r, 16) {
			require.Zero(t, c.Res)
			require.False(t, seen[c.UserData])
			seen[c.UserData] = true
		}
	}
	require.Len(t, seen, 160)
}

func tempFile(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "data"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	require.NoError(t, f.Truncate(size))
	return f
}

func buffers(t *testing.T) [][]byte {
	t.Helper()
	p, err := iomem.NewPool(8192, 4)
	require.NoError(t, err)
	t.Cleanup(func() { p.Close() })
	out := make([][]byte, 4)
	for i := range out {
		out[i], _, _ = p.Get()
	}
	return out
}

func fill(b []byte, seed byte) {
	for i := range b {
		b[i] = seed + byte(i*7)
	}
}

func TestReadWriteFsyncFallocate(t *testing.T) {
	r := newRing(t, Options{Entries: 8, SingleIssuer: true})
	f := tempFile(t, 1<<20)
	fd := int32(f.Fd())
	b := buffers(t)
	fill(b[0], 1)

	sqe := r.GetSQE()
	sqe.PrepWrite(fd, b[0], 4096)
	c := run(t, r, 1)[0]
	require.EqualValues(t, 8192, c.Res)

	sqe = r.GetSQE()
	sqe.PrepFsync(fd, FsyncDatasync)
	require.Zero(t, run(t, r, 1)[0].Res)

	sqe = r.GetSQE()
	sqe.PrepRead(fd, b[1], 4096)
	require.EqualValues(t, 8192, run(t, r, 1)[0].Res)
	require.Equal(t, b[0], b[1])

	// Punch the first 4 KiB of the written range: it reads back as zeroes.
	sqe = r.GetSQE()
	sqe.PrepFallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 4096)
	require.Zero(t, run(t, r, 1)[0].Res)
	sqe = r.GetSQE()
	sqe.PrepRead(fd, b[2], 4096)
	require.EqualValues(t, 8192, run(t, r, 1)[0].Res)
	require.Equal(t, make([]byte, 4096), b[2][:4096])
	require.Equal(t, b[0][4096:], b[2][4096:])
}

// Registered files and buffers: writes and reads through fixed buffers,
// on a file named by its index.
func TestFixedFilesAndBuffers(t *testing.T) {
	r := newRing(t, Options{Entries: 8, SingleIssuer: true})
	f := tempFile(t, 1<<20)
	b := buffers(t)
	fill(b[0], 3)
	fill(b[1], 9)
	require.NoError(t, r.RegisterFiles([]int32{int32(f.Fd())}))
	require.NoError(t, r.RegisterBuffers(b))

	for i, off := range []uint64{0, 8192} {
		sqe := r.GetSQE()
		sqe.PrepWriteFixed(0, b[i], off, uint16(i))
		sqe.Flags |= SQEFixedFile
	}
	for _, c := range run(t, r, 2) {
		require.EqualValues(t, 8192, c.Res)
	}
	for i, off := range []uint64{0, 8192} {
		sqe := r.GetSQE()
		sqe.PrepReadFixed(0, b[2+i], off, uint16(2+i))
		sqe.Flags |= SQEFixedFile
	}
	for _, c := range run(t, r, 2) {
		require.EqualValues(t, 8192, c.Res)
	}
	require.Equal(t, b[0], b[2])
	require.Equal(t, b[1], b[3])
}

func TestShortReadAtEOF(t *testing.T) {
	r := newRing(t, Options{Entries: 4, SingleIssuer: true})
	f := tempFile(t, 1000)
	b := buffers(t)
	sqe := r.GetSQE()
	sqe.PrepRead(int32(f.Fd()), b[0], 0)
	require.EqualValues(t, 1000, run(t, r, 1)[0].Res, "a read across EOF is short")
	sqe = r.GetSQE()
	sqe.PrepRead(int32(f.Fd()), b[0], 4096)
	require.EqualValues(t, 0, run(t, r, 1)[0].Res, "a read past EOF returns 0")
}

func TestErrorsComeBackInCQE(t *testing.T) {
	r := newRing(t, Options{Entries: 4, SingleIssuer: true})
	b := buffers(t)

	// A RWF_NOWAIT read on an empty pipe completes with -EAGAIN: the
	// caller, not the ring, decides to retry.
	var p [2]int
	require.NoError(t, unix.Pipe2(p[:], unix.O_CLOEXEC))
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	sqe := r.GetSQE()
	sqe.PrepRead(int32(p[0]), b[0], 0)
	sqe.SetRWFlags(unix.RWF_NOWAIT)
	require.EqualValues(t, -int32(unix.EAGAIN), run(t, r, 1)[0].Res)

	sqe = r.GetSQE()
	sqe.PrepRead(12345, b[0], 0) // not an open fd
	require.EqualValues(t, -int32(unix.EBADF), run(t, r, 1)[0].Res)
}

func TestCQOverflowIsFlushedNotLost(t *testing.T) {
	r := newRing(t, Options{Entries: 4, CQEntries: 8, SingleIssuer: true})
	const total = 40
	for i := 0; i < total; i += 4 {
		for j := range 4 {
			sqe := r.GetSQE()
			sqe.PrepNop()
			sqe.UserData = uint64(i + j)
		}
		_, err := r.Submit()
		require.NoError(t, err)
	}
	require.True(t, r.NeedsEnter())
	seen := map[uint64]bool{}
	buf := make([]CQE, 3)
	for len(seen) < total {
		n := r.Reap(buf)
		for _, c := range buf[:n] {
			require.False(t, seen[c.UserData], "duplicate completion %d", c.UserData)
			seen[c.UserData] = true
		}
		if n == 0 {
			_, err := r.Submit() // flushes the kernel's overflow list
			require.NoError(t, err)
		}
	}
	require.NotZero(t, r.Stats().OverflowFlush)
}

// A wait in io_uring_enter interrupted by signals goes on waiting until the
// completion arrives. Go's own preemption signal (SIGURG) is the interrupter.
func TestWaitSurvivesSignals(t *testing.T) {
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC)
	require.NoError(t, err)
	defer unix.Close(efd)

	var tid atomic.Int32
	done := make(chan error, 1)
	var interrupted uint64
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		r, err := New(Options{Entries: 4, SingleIssuer: true})
		if err != nil {
			done <- err
			return
		}
		defer r.Close()
		p, _ := iomem.NewPool(iomem.Align, 1)
		defer p.Close()
		b, _, _ := p.Get()
		sqe := r.GetSQE()
		sqe.PrepRead(int32(efd), b[:8], 0)
		tid.Store(int32(unix.Gettid()))
		_, err = r.SubmitAndWait(1)
		cq := make([]CQE, 1)
		if err == nil && (r.Reap(cq) != 1 || cq[0].Res != 8) {
			err = fmt.Errorf("no eventfd completion after the wait: ready=%d res=%d stats=%+v", r.Ready(), cq[0].Res, r.Stats())
		}
		interrupted = r.Stats().Interrupted
		done <- err
	}()
	for tid.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond) // let it block
	for range 5 {
		require.NoError(t, unix.Tgkill(unix.Getpid(), int(tid.Load()), unix.SIGURG))
		time.Sleep(5 * time.Millisecond)
	}
	_, err = unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("wait did not end")
	}
	require.NotZero(t, interrupted, "the signals should have interrupted io_uring_enter")
}

func TestClosedRing(t *testing.T) {
	r, err := New(Options{Entries: 2})
	require.NoError(t, err)
	require.NoError(t, r.Close())
	require.ErrorIs(t, r.Close(), ErrClosed)
	_, err = r.Submit()
	require.ErrorIs(t, err, ErrClosed)
}

func TestSubmitReapAllocatesNothing(t *testing.T) {
	r := newRing(t, Options{Entries: 8, SingleIssuer: true})
	cq := make([]CQE, 8)
	allocs := testing.AllocsPerRun(1000, func() {
		sqe := r.GetSQE()
		sqe.PrepNop()
		if _, err := r.SubmitAndWait(1); err != nil {
			panic(err)
		}
		r.Reap(cq)
	})
	require.Zero(t, allocs)
}

func TestSparseFilesAndFixedIndex(t *testing.T) {
	r := newRing(t, Options{Entries: 4, SingleIssuer: true})
	f := tempFile(t, 1<<16)
	b := buffers(t)
	require.NoError(t, r.RegisterSparseFiles(8))
	require.NoError(t, r.UpdateFiles(5, []int32{int32(f.Fd())}))
	require.NoError(t, r.RegisterBuffers(b[:2]))
	idx, ok := r.FixedIndex(b[1][100:200])
	require.True(t, ok)
	require.EqualValues(t, 1, idx)
	_, ok = r.FixedIndex(b[2])
	require.False(t, ok)

	fill(b[0], 5)
	sqe := r.GetSQE()
	sqe.PrepWriteFixed(5, b[0], 0, 0)
	sqe.Flags |= SQEFixedFile
	require.EqualValues(t, len(b[0]), run(t, r, 1)[0].Res)
	got := make([]byte, len(b[0]))
	_, err := f.ReadAt(got, 0)
	require.NoError(t, err)
	require.Equal(t, b[0], got)

	require.NoError(t, r.UpdateFiles(5, []int32{-1}))
	sqe = r.GetSQE()
	sqe.PrepWriteFixed(5, b[0], 0, 0)
	sqe.Flags |= SQEFixedFile
	require.EqualValues(t, -int32(unix.EBADF), run(t, r, 1)[0].Res, "emptied slot")
}

// tcpPair returns the fds of both ends of a loopback TCP connection, in
// the O_NONBLOCK mode Go's net package leaves them in.
func tcpPair(t *testing.T) (a, b int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	ca, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	cb := <-accepted
	require.NotNil(t, cb)
	t.Cleanup(func() { ca.Close(); cb.Close() })
	fd := func(c net.Conn) (fd int) {
		rc, err := c.(*net.TCPConn).SyscallConn()
		require.NoError(t, err)
		require.NoError(t, rc.Control(func(f uintptr) { fd = int(f) }))
		return fd
	}
	return fd(ca), fd(cb)
}

// RECV and SENDMSG wait for data and buffer space on an O_NONBLOCK socket
// instead of failing with EAGAIN: the target's queues rely on it.
func TestSocketOpsWaitOnNonblockingSockets(t *testing.T) {
	r := newRing(t, Options{Entries: 8, SingleIssuer: true})
	a, b := tcpPair(t)

	buf := make([]byte, 64)
	sqe := r.GetSQE()
	sqe.PrepRecv(int32(a), buf, 0)
	sqe.UserData = 1
	_, err := r.Submit()
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	_, err = r.Submit() // run any task work: nothing may have completed
	require.NoError(t, err)
	require.Zero(t, r.Ready(), "RECV completed with no data sent")
	_, err = unix.Write(b, []byte("hello"))
	require.NoError(t, err)
	c := run(t, r, 1)[0]
	require.EqualValues(t, 5, c.Res)
	require.Equal(t, "hello", string(buf[:5]))

	// More than the socket buffers hold: the send waits for the reader.
	require.NoError(t, unix.SetsockoptInt(a, unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	require.NoError(t, unix.SetsockoptInt(b, unix.SOL_SOCKET, unix.SO_RCVBUF, 4096))
	data := make([]byte, 4<<20)
	for i := range data {
		data[i] = byte(i * 7)
	}
	iov := []unix.Iovec{{Base: &data[0]}}
	iov[0].SetLen(len(data))
	var msg unix.Msghdr
	msg.Iov = &iov[0]
	msg.SetIovlen(1)
	sqe = r.GetSQE()
	sqe.PrepSendmsg(int32(a), &msg, unix.MSG_NOSIGNAL)
	sqe.UserData = 2
	_, err = r.Submit()
	require.NoError(t, err)
	got := make(chan []byte)
	total := len(data)
	go func() {
		var all []byte
		p := make([]byte, 64<<10)
		for len(all) < total {
			n, err := unix.Read(b, p)
			if err == unix.EAGAIN {
				time.Sleep(time.Millisecond)
				continue
			}
			if err != nil || n == 0 {
				break
			}
			all = append(all, p[:n]...)
		}
		got <- all
	}()
	c = run(t, r, 1)[0]
	require.Positive(t, c.Res, "SENDMSG failed: %v", unix.Errno(-c.Res))
	sent := data[:c.Res]
	if len(sent) < len(data) { // a short send: the rest is the caller's to resend
		unix.Shutdown(a, unix.SHUT_WR)
	}
	require.Equal(t, sent, <-got)
	runtime.KeepAlive(msg)
}

// Task work deferred by a completion is flagged in the SQ ring, so a ring
// that spins can enter only when there is work; entering runs it and
// clears the flag.
func TestDeferredTaskWorkIsFlagged(t *testing.T) {
	r := newRing(t, Options{Entries: 8, SingleIssuer: true})
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 16)
	sqe := r.GetSQE()
	sqe.PrepRecv(int32(fds[0]), buf, 0)
	sqe.UserData = 7
	_, err = r.Submit() // nothing to receive: the kernel arms a poll
	require.NoError(t, err)
	require.False(t, r.NeedsEnter(), "no work before data arrives")
	_, err = unix.Write(fds[1], []byte("hello"))
	require.NoError(t, err)
	require.True(t, r.NeedsEnter(), "the data's task work is flagged")
	require.Zero(t, r.Ready(), "and waits for an enter")
	_, err = r.Submit()
	require.NoError(t, err)
	require.False(t, r.NeedsEnter())
	cqes := make([]CQE, 1)
	require.Equal(t, 1, r.Reap(cqes))
	require.EqualValues(t, 7, cqes[0].UserData)
	require.EqualValues(t, 5, cqes[0].Res)
}
