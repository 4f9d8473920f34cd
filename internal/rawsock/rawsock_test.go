package rawsock

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestRecv(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	defer unix.Close(fds[0])
	b := make([]byte, 8)
	_, errno := Recv(fds[0], b)
	require.Equal(t, unix.EAGAIN, errno, "nothing yet: it does not wait")
	_, err = unix.Write(fds[1], []byte("hello"))
	require.NoError(t, err)
	n, errno := Recv(fds[0], b)
	require.Zero(t, errno)
	require.Equal(t, "hello", string(b[:n]))
	unix.Close(fds[1])
	n, errno = Recv(fds[0], b)
	require.Zero(t, errno)
	require.Zero(t, n, "the peer closed")
	_, errno = Recv(-1, b)
	require.Equal(t, unix.EBADF, errno)
}
