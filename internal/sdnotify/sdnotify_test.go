package sdnotify

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func listen(t *testing.T, name string) *net.UnixConn {
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	require.NoError(t, err)
	t.Cleanup(func() { conn.Close() })
	return conn
}

func recv(t *testing.T, c *net.UnixConn) string {
	buf := make([]byte, 256)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	n, err := c.Read(buf)
	require.NoError(t, err)
	return string(buf[:n])
}

func TestNotifyPathSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify")
	c := listen(t, path)
	t.Setenv("NOTIFY_SOCKET", path)
	sent, err := Notify(Ready)
	require.NoError(t, err)
	require.True(t, sent)
	require.Equal(t, "READY=1", recv(t, c))
	_, err = Notify(Stopping)
	require.NoError(t, err)
	require.Equal(t, "STOPPING=1", recv(t, c))
}

func TestNotifyAbstractSocket(t *testing.T) {
	name := "strata-test-" + strconv.Itoa(os.Getpid())
	c := listen(t, "\x00"+name)
	t.Setenv("NOTIFY_SOCKET", "@"+name)
	sent, err := Notify(Watchdog)
	require.NoError(t, err)
	require.True(t, sent)
	require.Equal(t, "WATCHDOG=1", recv(t, c))
}

func TestNotifyWithoutManager(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	sent, err := Notify(Ready)
	require.NoError(t, err)
	require.False(t, sent)
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	_, err = Notify(Ready)
	require.ErrorContains(t, err, "sdnotify: dial")
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_PID", "")
	t.Setenv("WATCHDOG_USEC", "")
	_, ok := WatchdogInterval()
	require.False(t, ok)
	t.Setenv("WATCHDOG_USEC", "30000000")
	d, ok := WatchdogInterval()
	require.True(t, ok)
	require.Equal(t, 15*time.Second, d)
	t.Setenv("WATCHDOG_PID", "1")
	_, ok = WatchdogInterval()
	require.False(t, ok, "the watchdog is for another process")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	_, ok = WatchdogInterval()
	require.True(t, ok)
}
