package fault

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/part"
)

func ram(t *testing.T) bdev.Device {
	t.Helper()
	d, err := malloc.New("ram", 32<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

func faulty(t *testing.T, base bdev.Device, opts Options) *Device {
	t.Helper()
	d := New("faulty", base, opts)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// With no rule, the device is its base.
func TestConformance(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		return faulty(t, ram(t), Options{Timeout: time.Minute})
	}, true)
}

func TestRules(t *testing.T) {
	d := faulty(t, ram(t), Options{})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	bdevtest.Fill(buf, 1)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 8, buf))

	remove := d.Inject(Rule{Ops: []bdev.Op{bdev.OpWrite}, From: 10, To: 20, Fail: bdev.StatusWriteFault})
	require.Equal(t, bdev.StatusWriteFault, c.Do(t, bdev.OpWrite, 16, 8, buf), "overlaps the range")
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 20, 8, buf), "after it")
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 16, 8, buf), "another operation")
	remove()
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 16, 8, buf))

	// Count: the rule takes two requests, then expires.
	d.Inject(Rule{Fail: bdev.StatusReadError, Count: 2})
	require.Equal(t, bdev.StatusReadError, c.Do(t, bdev.OpRead, 0, 8, buf))
	require.Equal(t, bdev.StatusReadError, c.Do(t, bdev.OpRead, 0, 8, buf))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, buf))

	// Drop: the write completes and is lost.
	want := bdevtest.Buffers(t, 4096)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, want))
	other := bdevtest.Buffers(t, 4096)
	bdevtest.Fill(other, 2)
	d.Inject(Rule{Ops: []bdev.Op{bdev.OpWrite}, Drop: true, Count: 1})
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 8, other))
	got := bdevtest.Buffers(t, 4096)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, got))
	require.Equal(t, []byte(want), []byte(got), "the dropped write never reached the base")

	// Corrupt: the read succeeds with a damaged first byte.
	d.Inject(Rule{Ops: []bdev.Op{bdev.OpRead}, Corrupt: true, Count: 1})
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, got))
	require.Equal(t, want[0]^0xff, got[0])
	require.Equal(t, []byte(want[1:]), []byte(got[1:]))

	// Delay.
	d.Inject(Rule{Delay: 30 * time.Millisecond, Count: 1})
	start := time.Now()
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, got))
	require.GreaterOrEqual(t, time.Since(start), 30*time.Millisecond)

	// Hang until released.
	d.Inject(Rule{Hang: true, Count: 1})
	p := c.Start(bdev.OpRead, 0, 8, got)
	require.Eventually(t, func() bool { return d.Release() == 1 }, 5*time.Second, time.Millisecond)
	require.Equal(t, bdev.StatusOK, p.Wait(t))
	require.Equal(t, 7, d.Faults())
}

// A device that hangs: its requests time out, the channel goes on serving,
// a layer above sees the child's timeout, and a quiesce gives up at its
// deadline rather than wait forever.
func TestTimeoutsAbortHungRequests(t *testing.T) {
	const timeout = 50 * time.Millisecond
	d := faulty(t, ram(t), Options{Timeout: timeout})
	r := bdevtest.Reactors(t).Get(0)
	c := bdevtest.Open(t, d, r)
	buf := bdevtest.Buffers(t, 4096)

	d.Inject(Rule{Ops: []bdev.Op{bdev.OpRead}, Hang: true, Count: 1})
	start := time.Now()
	require.Equal(t, bdev.StatusTimeout, c.Do(t, bdev.OpRead, 0, 8, buf))
	took := time.Since(start)
	require.GreaterOrEqual(t, took, timeout)
	require.Less(t, took, 20*timeout, "aborted soon after its timeout")
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, buf), "the channel goes on")
	require.Zero(t, d.Release(), "the aborted request left the hung list")

	d.Inject(Rule{Delay: time.Hour, Count: 1})
	require.Equal(t, bdev.StatusTimeout, c.Do(t, bdev.OpRead, 0, 8, buf), "a delay is aborted too")

	// A window over the hanging device: the child's timeout fails the
	// window's request.
	w, err := part.New("vol", d, 100, 1000, bdev.UUID{})
	require.NoError(t, err)
	t.Cleanup(func() { w.Close() })
	wc := bdevtest.Open(t, w, r)
	d.Inject(Rule{Hang: true, Count: 1})
	require.Equal(t, bdev.StatusTimeout, wc.Do(t, bdev.OpWrite, 0, 8, buf))

	// A quiesce waits for what is in flight; given a deadline, it gives up
	// and lets I/O resume.
	d.Inject(Rule{Hang: true, Count: 1})
	noTimeout := faulty(t, d, Options{})
	nc := bdevtest.Open(t, noTimeout, r)
	hung := nc.Start(bdev.OpRead, 0, 8, buf)
	require.Eventually(t, func() bool { return d.Faults() == 4 }, 5*time.Second, time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	err = noTimeout.Quiesce(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Equal(t, bdev.StatusTimeout, hung.Wait(t), "the device below timed it out")
	require.Equal(t, bdev.StatusOK, nc.Do(t, bdev.OpRead, 0, 8, buf), "resumed after the failed quiesce")
}
