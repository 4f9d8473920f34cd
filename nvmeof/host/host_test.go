package host_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/part"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

const subNQN = "nqn.2024-01.io.strata:host-test"

// serve starts a target exporting dev on addr ("127.0.0.1:0" for any
// port) and returns it with the address it listens on.
func serve(t *testing.T, g *reactor.Group, dev bdev.Device, addr string) (*target.Target, string) {
	t.Helper()
	tg := target.New(g, target.Config{})
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
		NQN: subNQN, Serial: "H1", AllowAnyHost: true, Namespaces: []target.Namespace{{ID: 1, Device: dev}},
	}))
	a, err := tg.Listen(addr)
	require.NoError(t, err)
	t.Cleanup(func() { tg.Close() })
	return tg, a.String()
}

func fixture(t *testing.T) (*reactor.Group, bdev.Device) {
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	t.Cleanup(g.Stop)
	dev, err := malloc.New("ram", 8<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	return g, dev
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

func do(t *testing.T, q *host.Queue, req *host.Request) {
	t.Helper()
	done := make(chan struct{})
	req.Callback = func(*host.Request) { close(done) }
	q.Submit(req)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("request timed out")
	}
}

func TestFlushWriteZeroesDeallocate(t *testing.T) {
	g, dev := fixture(t)
	_, addr := serve(t, g, dev, "127.0.0.1:0")
	c, err := host.Connect(ctx(t), addr, subNQN, host.Config{})
	require.NoError(t, err)
	defer c.Close()
	q := c.IOQueues()[0]
	ones := bytes.Repeat([]byte{0xff}, 64*512)
	var req host.Request
	req.SetWrite(1, 0, 64, false, ones)
	do(t, q, &req)
	require.True(t, req.Status.OK(), req.Status)

	req.SetWriteZeroes(1, 8, 8)
	do(t, q, &req)
	require.True(t, req.Status.OK(), req.Status)
	rangeBuf := make([]byte, 2*host.DSMRangeSize)
	require.NoError(t, req.SetDeallocate(1, []host.Range{{LBA: 32, Blocks: 4}, {LBA: 40, Blocks: 8}}, rangeBuf))
	do(t, q, &req)
	require.True(t, req.Status.OK(), req.Status)
	req.SetFlush(1)
	do(t, q, &req)
	require.True(t, req.Status.OK(), req.Status)

	got := make([]byte, 64*512)
	req.SetRead(1, 0, 64, got)
	do(t, q, &req)
	require.True(t, req.Status.OK(), req.Status)
	want := bytes.Clone(ones)
	for _, z := range [][2]int{{8, 16}, {32, 36}, {40, 48}} {
		clear(want[z[0]*512 : z[1]*512])
	}
	require.Equal(t, want, got)

	require.Error(t, req.SetDeallocate(1, nil, rangeBuf), "no ranges")
	require.Error(t, req.SetDeallocate(1, make([]host.Range, 3), rangeBuf), "buffer too small")
	require.Error(t, req.SetDeallocate(1, make([]host.Range, 257), make([]byte, 257*host.DSMRangeSize)))
}

// After the target goes away and comes back on the same address, the
// host's queues have failed; Reconnect gives it new ones, same host
// identity, and I/O carries on.
func TestReconnectAfterTargetRestart(t *testing.T) {
	g, dev := fixture(t)
	tg, addr := serve(t, g, dev, "127.0.0.1:0")
	hostID := [16]byte{1, 2, 3}
	c, err := host.Connect(ctx(t), addr, subNQN, host.Config{HostID: hostID, IOQueues: 2})
	require.NoError(t, err)
	defer c.Close()
	old := c.IOQueues()[0]
	data := bytes.Repeat([]byte{0x5a}, 4096)
	var req host.Request
	req.SetWrite(1, 100, 8, false, data)
	do(t, old, &req)
	require.True(t, req.Status.OK())

	require.NoError(t, tg.Close())
	require.Eventually(t, func() bool { return old.Err() != nil }, 5*time.Second, 10*time.Millisecond)
	require.Error(t, c.Reconnect(ctx(t)), "nothing listens")

	_, addr2 := serve(t, g, dev, addr)
	require.Equal(t, addr, addr2)
	require.NoError(t, c.Reconnect(ctx(t)))
	require.Len(t, c.IOQueues(), 2)
	require.NotSame(t, old, c.IOQueues()[0])
	got := make([]byte, 4096)
	req.SetRead(1, 100, 8, got)
	do(t, c.IOQueues()[1], &req)
	require.NoError(t, req.Err)
	require.True(t, req.Status.OK())
	require.Equal(t, data, got)

	req.SetRead(1, 100, 8, got)
	do(t, old, &req)
	require.Error(t, req.Err, "the old association's queues stay closed")

	require.NoError(t, c.Close())
	require.ErrorIs(t, c.Close(), host.ErrClosed)
	require.ErrorIs(t, c.Reconnect(ctx(t)), host.ErrClosed)
}

// A controller whose reactor polls its sockets carries I/O as one whose
// reactor sleeps, and closes.
func TestBusyPollQueue(t *testing.T) {
	g, dev := fixture(t)
	_, addr := serve(t, g, dev, "127.0.0.1:0")
	c, err := host.Connect(ctx(t), addr, subNQN, host.Config{BusyPoll: 50 * time.Microsecond})
	require.NoError(t, err)
	q := c.IOQueues()[0]
	data := bytes.Repeat([]byte("strata!!"), 16*512/8)
	var req host.Request
	for lba := uint64(0); lba < 256; lba += 16 {
		req.SetWrite(1, lba, 16, false, data)
		do(t, q, &req)
		require.True(t, req.Status.OK(), req.Status)
		got := make([]byte, len(data))
		time.Sleep(time.Duration(lba) * time.Microsecond) // now and then past the spin
		req.SetRead(1, lba, 16, got)
		do(t, q, &req)
		require.True(t, req.Status.OK(), req.Status)
		require.Equal(t, data, got)
	}
	require.NoError(t, c.Close())
}

// On its reactor, Start never blocks: with three times the queue's depth
// started at once from one task, the ones beyond the depth wait for a
// command ID and go out in the order started. The host's queues share
// the target's reactors here, as a device on a reactor built on a remote
// namespace does.
func TestStartBeyondDepthOnReactor(t *testing.T) {
	g, dev := fixture(t)
	_, addr := serve(t, g, dev, "127.0.0.1:0")
	const depth = 4
	c, err := host.Connect(ctx(t), addr, subNQN, host.Config{QueueDepth: depth, Reactors: g.Reactors()})
	require.NoError(t, err)
	defer c.Close()
	q := c.IOQueues()[0]
	r := g.Get(0)

	const n = 3 * depth
	reqs := make([]host.Request, n)
	bufs := make([][]byte, n)
	var order []int // callbacks run on r: no lock
	done := make(chan struct{})
	run := func(prep func(i int)) {
		order = order[:0]
		for i := range reqs {
			prep(i)
			reqs[i].Tag = uint64(i)
			reqs[i].Callback = func(req *host.Request) {
				order = append(order, int(req.Tag))
				if len(order) == n {
					done <- struct{}{}
				}
			}
		}
		require.NoError(t, r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
			for i := range reqs {
				q.Start(&reqs[i])
			}
		})))
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("requests left unfinished")
		}
		for i := range reqs {
			require.NoError(t, reqs[i].Err)
			require.True(t, reqs[i].Status.OK(), reqs[i].Status)
		}
		// The last 2*depth waited, and were issued as IDs came free, in
		// the order started; a malloc namespace behind one connection
		// finishes commands in the order they come.
		want := make([]int, n)
		for i := range want {
			want[i] = i
		}
		require.Equal(t, want, order)
	}
	run(func(i int) {
		bufs[i] = bytes.Repeat([]byte{byte(i + 1)}, 4096)
		reqs[i].SetWrite(1, uint64(i*8), 8, false, bufs[i])
	})
	run(func(i int) {
		bufs[i] = make([]byte, 4096)
		reqs[i].SetRead(1, uint64(i*8), 8, bufs[i])
	})
	for i := range bufs {
		require.Equal(t, bytes.Repeat([]byte{byte(i + 1)}, 4096), bufs[i], "block %d", i)
	}
}

// A host that listens for asynchronous events hears each resize of a
// namespace, with the namespaces the change list names, before and after
// a reconnect; the events after the first prove it read the log (the
// target masks further notices until then) and asked again.
func TestAsyncEventsFollowResizes(t *testing.T) {
	g, base := fixture(t)
	vol, err := part.New("vol", base, 0, 1024, bdev.UUID{1})
	require.NoError(t, err)
	t.Cleanup(func() { vol.Close() })
	tg, addr := serve(t, g, vol, "127.0.0.1:0")
	events := make(chan host.AsyncEvent, 8)
	c, err := host.Connect(ctx(t), addr, subNQN, host.Config{AsyncEvents: func(ev host.AsyncEvent) { events <- ev }})
	require.NoError(t, err)
	defer c.Close()
	next := func() host.AsyncEvent {
		t.Helper()
		select {
		case ev := <-events:
			return ev
		case <-time.After(10 * time.Second):
			t.Fatal("no asynchronous event")
			return host.AsyncEvent{}
		}
	}
	for _, blocks := range []uint64{2048, 4096} {
		require.NoError(t, vol.Resize(ctx(t), blocks))
		ev := next()
		require.Equal(t, []uint32{1}, ev.ChangedNamespaces)
		require.True(t, ev.NamespaceChanged(1))
		require.False(t, ev.NamespaceChanged(2))
		ns, err := c.Namespace(ctx(t), 1)
		require.NoError(t, err)
		require.Equal(t, blocks, ns.Blocks())
	}

	require.NoError(t, tg.Close())
	require.Eventually(t, func() bool { return c.Admin().Err() != nil }, 5*time.Second, 10*time.Millisecond)
	serve(t, g, vol, addr)
	require.NoError(t, c.Reconnect(ctx(t)))
	require.NoError(t, vol.Resize(ctx(t), 8192))
	require.True(t, next().NamespaceChanged(1), "the new association listens too")
	select {
	case ev := <-events:
		t.Fatalf("an event nothing caused: %+v", ev)
	case <-time.After(50 * time.Millisecond):
	}
}
