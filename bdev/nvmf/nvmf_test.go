package nvmf_test

import (
	"context"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/fault"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/nvmf"
	"github.com/strata-storage/strata/bdev/part"
	"github.com/strata-storage/strata/nvmeof/target"
)

const subNQN = "nqn.2024-01.io.strata:nvmf-test"

// export serves dev as namespace 1 of a target on addr ("127.0.0.1:0":
// any port) and returns the target and where it listens.
func export(t *testing.T, dev bdev.Device, addr string) (*target.Target, string) {
	t.Helper()
	tg := target.New(bdevtest.Reactors(t), target.Config{})
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
		NQN: subNQN, Serial: "NVMF1", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: dev, NGUID: [16]byte{1, 2, 3}}},
	}))
	a, err := tg.Listen(addr)
	require.NoError(t, err)
	t.Cleanup(func() { tg.Close() })
	return tg, a.String()
}

func ram(t *testing.T, size uint64) bdev.Device {
	t.Helper()
	d, err := malloc.New("ram", size, 512)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	return d
}

func open(t *testing.T, addr string, opts nvmf.Options) *nvmf.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := nvmf.Open(ctx, "remote", addr, subNQN, opts)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// A remote namespace is a device like any other: the conformance suite,
// from every reactor at once.
func TestConformance(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		_, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
		return open(t, addr, nvmf.Options{})
	}, true)
}

// Stacked: a window of a remote namespace.
func TestConformanceStacked(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		_, addr := export(t, ram(t, 64<<20), "127.0.0.1:0")
		d := open(t, addr, nvmf.Options{})
		p, err := part.New("window", d, 1024, 40960, bdev.NewUUID())
		require.NoError(t, err)
		t.Cleanup(func() { p.Close() })
		return p
	}, true)
}

func TestInfo(t *testing.T) {
	_, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{})
	in := d.Info()
	require.Equal(t, uint32(512), in.BlockSize)
	require.Equal(t, uint64(32<<20/512), in.Blocks)
	require.Equal(t, "nvmf", in.Product)
	require.Equal(t, bdev.UUID{1, 2, 3}, in.UUID, "the namespace's NGUID")
}

// The data path allocates nothing per I/O, host queue and transport
// included.
func TestNoAllocsPerIO(t *testing.T) {
	_, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	bdevtest.RequireNoAllocs(t, c, []bdev.Op{bdev.OpWrite, bdev.OpRead, bdev.OpFlush, bdev.OpWriteZeroes, bdev.OpUnmap},
		8, 4096, bdevtest.Buffers(t, 4096))
}

// Requests past what one command carries go as several in turn: a write
// and a read of 1 MiB through a target whose MDTS is 128 KiB, and a Write
// Zeroes of more blocks than NLB's 16 bits hold. The target sees the
// pieces (its device's statistics count them), and the data is whole.
func TestSplitsPastCommandLimits(t *testing.T) {
	base := ram(t, 64<<20)
	_, addr := export(t, base, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	const n = 1 << 20
	wbuf, rbuf := bdevtest.Buffers(t, n), bdevtest.Buffers(t, n)
	bdevtest.Fill(wbuf, 9)
	before := base.Stats()
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 100, n/512, wbuf))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 100, n/512, rbuf))
	require.Equal(t, wbuf, rbuf)
	after := base.Stats()
	require.Equal(t, uint64(n/(128<<10)), after.WriteOps-before.WriteOps, "eight 128 KiB writes")
	require.Equal(t, uint64(n/(128<<10)), after.ReadOps-before.ReadOps)

	blocks := uint32(d.Info().Blocks) // 131072: two Write Zeroes of 65536
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, 0, blocks, nil))
	require.Equal(t, uint64(2), base.Stats().ZeroOps-after.ZeroOps)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 100, n/512, rbuf))
	require.Equal(t, make([]byte, n), rbuf, "zeroed")
}

func TestFromURI(t *testing.T) {
	_, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
	for _, bad := range []string{
		"nvmf://" + addr + "/" + subNQN + "?ns=0",
		"nvmf://" + addr + "/" + subNQN + "?timeout=-1s",
		"nvmf://" + addr + "/" + subNQN + "?loss=0s",
		"nvmf://" + addr + "/" + subNQN + "?depth=1",
		"nvmf://" + addr + "/" + subNQN + "?colour=blue",
		"nvmf://" + addr + "/not-an-nqn",
		"nvmf://noport/" + subNQN,
	} {
		u, err := url.Parse(bad)
		require.NoError(t, err)
		_, err = nvmf.FromURI("r", u)
		require.ErrorIs(t, err, bdev.ErrBadURI, bad)
	}
	u, err := url.Parse("nvmf://" + addr + "/" + subNQN + "?ns=1&timeout=5s&loss=1m&depth=16")
	require.NoError(t, err)
	d, err := nvmf.FromURI("r", u)
	require.NoError(t, err)
	require.NoError(t, d.Close())
	u, _ = url.Parse("nvmf://" + addr + "/" + subNQN + "?ns=7")
	_, err = nvmf.FromURI("r", u)
	require.ErrorContains(t, err, "not active")
}

// The target goes away and comes back on the same address: requests made
// meanwhile wait, and finish once the channel's queue is connected again
// (with the controller, which the restart lost too).
func TestReconnectAfterTargetRestart(t *testing.T) {
	dev := ram(t, 32<<20)
	tg, addr := export(t, dev, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{Timeout: 20 * time.Second})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	bdevtest.Fill(buf, 3)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 8, buf))

	tg.Close()
	// A request made as the connection goes may find the queue ending
	// under it (not ready); one made after waits for the new queue.
	first := c.Start(bdev.OpRead, 0, 8, bdevtest.Buffers(t, 4096))
	time.Sleep(100 * time.Millisecond)
	got := bdevtest.Buffers(t, 4096)
	after := c.Start(bdev.OpRead, 0, 8, got)
	time.Sleep(300 * time.Millisecond)
	export(t, dev, addr)
	if st := first.Wait(t); st != bdev.StatusOK {
		require.Equal(t, bdev.StatusNotReady, st)
	}
	require.Equal(t, bdev.StatusOK, after.Wait(t))
	require.Equal(t, buf, got)
}

// A request the remote never answers times out: the queue is reset, the
// request finishes with a timeout, and once the remote lets go of the old
// queue the channel works again on a new one.
func TestTimeoutResetsQueue(t *testing.T) {
	hung := fault.New("hung", ram(t, 32<<20), fault.Options{})
	t.Cleanup(func() { hung.Close() })
	_, addr := export(t, hung, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{Timeout: 200 * time.Millisecond})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 8, buf))

	hung.Inject(fault.Rule{Ops: []bdev.Op{bdev.OpRead}, Hang: true, Count: 1})
	start := time.Now()
	require.Equal(t, bdev.StatusTimeout, c.Do(t, bdev.OpRead, 0, 8, buf))
	require.Less(t, time.Since(start), 5*time.Second)
	hung.Release()
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, buf), "a new queue")
}

// Nothing listening: Open fails with the reason, in bounded time.
func TestOpenRefused(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = nvmf.Open(ctx, "remote", addr, subNQN, nvmf.Options{})
	require.ErrorContains(t, err, "connection refused")
}

// With the target gone for good, a request waits for a queue that never
// comes, and its timeout ends the wait.
func TestTimeoutEndsWaitForQueue(t *testing.T) {
	tg, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{Timeout: 300 * time.Millisecond})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, buf))
	tg.Close()
	time.Sleep(100 * time.Millisecond) // the queue sees the connection go
	if st := c.Do(t, bdev.OpRead, 0, 8, buf); st != bdev.StatusTimeout {
		require.Equal(t, bdev.StatusNotReady, st, "found the queue ending under it")
	}
	start := time.Now()
	require.Equal(t, bdev.StatusTimeout, c.Do(t, bdev.OpRead, 0, 8, buf), "waited for a new queue")
	require.Less(t, time.Since(start), 5*time.Second)
}

// window is a part of 64 MiB of RAM, blocks of 512 bytes long, that a
// test resizes under a target.
func window(t *testing.T, blocks uint64) *part.Device {
	t.Helper()
	vol, err := part.New("vol", ram(t, 64<<20), 0, blocks, bdev.UUID{1})
	require.NoError(t, err)
	t.Cleanup(func() { vol.Close() })
	return vol
}

// events collects a device's events.
func events(t *testing.T, d *nvmf.Device) <-chan bdev.Event {
	ch := make(chan bdev.Event, 16)
	t.Cleanup(d.Subscribe(func(ev bdev.Event) { ch <- ev }))
	return ch
}

func nextEvent(t *testing.T, ch <-chan bdev.Event) bdev.Event {
	t.Helper()
	select {
	case ev := <-ch:
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no device event")
		return bdev.Event{}
	}
}

// The remote namespace grows: the controller's event reaches the device,
// which takes the new size (quiesced) and says so; a channel opened
// before reaches the new blocks.
func TestFollowsNamespaceResize(t *testing.T) {
	vol := window(t, 2048)
	_, addr := export(t, vol, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{})
	evs := events(t, d)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 512)
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, 4095, 1, buf))

	require.NoError(t, vol.Resize(context.Background(), 4096))
	ev := nextEvent(t, evs)
	require.Equal(t, bdev.EventResized, ev.Kind)
	require.EqualValues(t, 4096, ev.Info.Blocks)
	require.EqualValues(t, 4096, d.Info().Blocks)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 4095, 1, buf))

	require.NoError(t, vol.Resize(context.Background(), 3072))
	require.EqualValues(t, 3072, nextEvent(t, evs).Info.Blocks, "shrinks too")
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, 4095, 1, buf))
}

// A resize while the connection is down has no event to tell it; the
// device looks once it has reconnected.
func TestResizeSeenAfterReconnect(t *testing.T) {
	vol := window(t, 2048)
	tg, addr := export(t, vol, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{})
	evs := events(t, d)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 512)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 1, buf))

	tg.Close()
	require.NoError(t, vol.Resize(context.Background(), 8192))
	export(t, vol, addr)
	// I/O finds the queue gone and reconnects it, the controller first.
	require.Eventually(t, func() bool { return c.Do(t, bdev.OpRead, 0, 1, buf) == bdev.StatusOK },
		10*time.Second, 10*time.Millisecond)
	ev := nextEvent(t, evs)
	require.Equal(t, bdev.EventResized, ev.Kind)
	require.EqualValues(t, 8192, ev.Info.Blocks)
}

// A remote that stays unreachable past the loss timeout faults the
// device: consumers hear why, the request that waited for a connection
// and every later one finish not ready, and the device stays faulted when
// the remote comes back.
func TestFaultsAfterLossTimeout(t *testing.T) {
	dev := ram(t, 32<<20)
	tg, addr := export(t, dev, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{LossTimeout: 300 * time.Millisecond})
	evs := events(t, d)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 8, buf))

	tg.Close()
	start := time.Now()
	first := c.Start(bdev.OpRead, 0, 8, buf) // may find the old queue ending
	time.Sleep(50 * time.Millisecond)
	waiting := c.Start(bdev.OpRead, 0, 8, buf)
	ev := nextEvent(t, evs)
	require.Equal(t, bdev.EventFaulted, ev.Kind)
	require.ErrorContains(t, ev.Err, "unreachable")
	require.Error(t, d.Err())
	require.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond)
	require.Equal(t, bdev.StatusNotReady, first.Wait(t))
	require.Equal(t, bdev.StatusNotReady, waiting.Wait(t))

	export(t, dev, addr)
	require.Equal(t, bdev.StatusNotReady, c.Do(t, bdev.OpRead, 0, 8, buf), "faulted for good")
}

// A device with no channel, or channels with no I/O, still notices its
// remote is gone: its controller reconnects in the background, and the
// loss timeout faults it.
func TestIdleDeviceFaults(t *testing.T) {
	tg, addr := export(t, ram(t, 32<<20), "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{LossTimeout: 200 * time.Millisecond})
	evs := events(t, d)
	tg.Close()
	ev := nextEvent(t, evs)
	require.Equal(t, bdev.EventFaulted, ev.Kind)
	require.ErrorContains(t, ev.Err, "unreachable")
}

// A remote back within the loss timeout is reconnected with no I/O asking
// for it, and the device goes on.
func TestIdleDeviceReconnects(t *testing.T) {
	dev := ram(t, 32<<20)
	tg, addr := export(t, dev, "127.0.0.1:0")
	d := open(t, addr, nvmf.Options{LossTimeout: time.Minute})
	tg.Close()
	time.Sleep(100 * time.Millisecond)
	tg2, _ := export(t, dev, addr)
	require.Eventually(t, func() bool { return tg2.Controllers(subNQN) == 1 }, 10*time.Second, 5*time.Millisecond,
		"the controller is back before any I/O")
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 8, bdevtest.Buffers(t, 4096)))
	require.NoError(t, d.Err())
}
