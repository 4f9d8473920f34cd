package host

import (
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	server, err = ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func TestBusyReader(t *testing.T) {
	c, s := tcpPair(t)
	b, err := newBusyReader(c, time.Millisecond)
	require.NoError(t, err)
	buf := make([]byte, 16)

	// Data already there.
	_, err = s.Write([]byte("abc"))
	require.NoError(t, err)
	n, err := io.ReadAtLeast(b, buf, 3)
	require.NoError(t, err)
	require.Equal(t, "abc", string(buf[:n]))

	// Data that comes after the spin is up: the reader parks and wakes.
	go func() {
		time.Sleep(30 * time.Millisecond)
		s.Write([]byte("late"))
	}()
	n, err = io.ReadAtLeast(b, buf, 4)
	require.NoError(t, err)
	require.Equal(t, "late", string(buf[:n]))

	// Deadlines hold while polling and parked.
	require.NoError(t, c.SetReadDeadline(time.Now().Add(20*time.Millisecond)))
	_, err = b.Read(buf)
	require.ErrorIs(t, err, os.ErrDeadlineExceeded)
	require.NoError(t, c.SetReadDeadline(time.Time{}))

	// No allocation per read.
	payload := make([]byte, 1000)
	_, err = s.Write(payload)
	require.NoError(t, err)
	got := 0
	allocs := testing.AllocsPerRun(100, func() {
		n, err := b.Read(buf[:1])
		require.NoError(t, err)
		got += n
	})
	require.Zero(t, allocs)
	require.Equal(t, 101, got) // AllocsPerRun runs once more to warm up

	// The peer's close reads as EOF.
	s.Close()
	io.Copy(io.Discard, io.LimitReader(b, int64(len(payload)-got)))
	_, err = b.Read(buf)
	require.ErrorIs(t, err, io.EOF)
}

func TestBusyReaderUnblocksOnClose(t *testing.T) {
	c, _ := tcpPair(t)
	// Close waits for a polling reader to finish its spin, so the spin is
	// long enough to be sure Close lands during one.
	b, err := newBusyReader(c, 50*time.Millisecond)
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		_, err := b.Read(make([]byte, 8))
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	c.Close()
	select {
	case err := <-done:
		require.ErrorIs(t, err, net.ErrClosed)
	case <-time.After(5 * time.Second):
		t.Fatal("a polling reader did not return after Close")
	}
}
