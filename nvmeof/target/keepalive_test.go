package target

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestKeepAliveExpiresOnce(t *testing.T) {
	var n atomic.Int32
	k := newKeepAlive(30*time.Millisecond, func() { n.Add(1) })
	require.Eventually(t, func() bool { return n.Load() == 1 }, 5*time.Second, time.Millisecond)
	time.Sleep(60 * time.Millisecond)
	require.EqualValues(t, 1, n.Load())
	require.False(t, k.reset(), "an expired timer cannot be revived")
}

func TestKeepAliveResetPostpones(t *testing.T) {
	var n atomic.Int32
	k := newKeepAlive(200*time.Millisecond, func() { n.Add(1) })
	defer k.stop()
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		require.True(t, k.reset())
	}
	require.Zero(t, n.Load(), "regular keep-alives hold off expiry")
}

func TestKeepAliveDisabledAndStopped(t *testing.T) {
	var n atomic.Int32
	k := newKeepAlive(0, func() { n.Add(1) })
	require.True(t, k.reset())
	k.setTimeout(20 * time.Millisecond)
	require.Eventually(t, func() bool { return n.Load() == 1 }, 5*time.Second, time.Millisecond)

	k2 := newKeepAlive(20*time.Millisecond, func() { n.Add(1) })
	k2.setTimeout(0)
	k3 := newKeepAlive(20*time.Millisecond, func() { n.Add(1) })
	k3.stop()
	time.Sleep(80 * time.Millisecond)
	require.EqualValues(t, 1, n.Load())
	require.Zero(t, k2.current())
}
