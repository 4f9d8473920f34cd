package part

import (
	"bytes"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/reactor"
)

// window returns a part device over the middle of base, closed (before
// base) at the end of the test.
func window(t *testing.T, base bdev.Device, offsetBlocks, blocks uint64) *Device {
	t.Helper()
	d, err := New("vol0", base, offsetBlocks, blocks, bdev.UUID{})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

func mallocBase(t *testing.T, size uint64, bs uint32) bdev.Device {
	t.Helper()
	base, err := malloc.New("pool0", size, bs)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, base.Close()) })
	return base
}

func fileBase(t *testing.T, size uint64) bdev.Device {
	t.Helper()
	base, err := file.Open("pool0", file.Options{Path: filepath.Join(t.TempDir(), "pool.img"), Size: size})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, base.Close()) })
	return base
}

func TestConformanceOnMalloc(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		base := mallocBase(t, 48<<20, 4096)
		return window(t, base, 1000, (16<<20)/4096+3) // an odd start and size
	}, true)
}

func TestConformanceOnMalloc512(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		base := mallocBase(t, 40<<20, 512)
		return window(t, base, 4097, (16<<20)/512)
	}, true)
}

// Stacks: the conformance suite over layers over layers, each passing
// requests down as children (split into several by Split).
func TestConformanceSplitOverPartOverFile(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		base := fileBase(t, 64<<20)
		return bdevtest.NewSplit("split", window(t, base, 2048, (20<<20)/4096), 3)
	}, true)
}

func TestConformanceSplitOverSplitOverPart(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		base := mallocBase(t, 48<<20, 512)
		return bdevtest.NewSplit("outer", bdevtest.NewSplit("inner", window(t, base, 77, (16<<20)/512), 2), 5)
	}, true)
}

func TestConformanceOnFile(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		base := fileBase(t, 64<<20)
		return window(t, base, 2048, (20<<20)/4096)
	}, true)
}

func TestInfo(t *testing.T) {
	base := fileBase(t, 16<<20)
	id := bdev.NewUUID()
	d, err := New("v", base, 10, 20, id)
	require.NoError(t, err)
	in := d.Info()
	require.Equal(t, bdev.Info{
		Name: "v", Product: Product, UUID: id, BlockSize: 4096, Blocks: 20,
		BufAlign: 4096, VolatileCache: true,
	}, in)
	require.Equal(t, uint64(10), d.OffsetBlocks())
	require.Equal(t, base, d.BaseDevice())
	require.NoError(t, d.Close())
}

func TestNewRejectsBadWindows(t *testing.T) {
	base := mallocBase(t, 1<<20, 4096) // 256 blocks
	for _, tc := range []struct{ off, blocks uint64 }{
		{0, 0}, {256, 1}, {255, 2}, {0, 257}, {1 << 63, 1 << 63}, {^uint64(0), 1},
	} {
		_, err := New("v", base, tc.off, tc.blocks, bdev.UUID{})
		require.ErrorIs(t, err, ErrWindow, "off=%d blocks=%d", tc.off, tc.blocks)
	}
	_, err := New("bad name", base, 0, 1, bdev.UUID{})
	require.ErrorContains(t, err, "invalid name")
	d, err := New("whole", base, 0, 256, bdev.UUID{})
	require.NoError(t, err)
	require.NotEqual(t, bdev.UUID{}, d.Info().UUID, "a zero UUID draws a random one")
}

// Data on the base just before and after the window survives everything
// done through the window, rejected requests included: only in-window I/O
// reaches the base, at the right place.
func TestIOOutsideWindowNeverReachesBase(t *testing.T) {
	for name, base := range map[string]func(t *testing.T) bdev.Device{
		"malloc": func(t *testing.T) bdev.Device { return mallocBase(t, 8<<20, 4096) },
		"file":   func(t *testing.T) bdev.Device { return fileBase(t, 8<<20) },
	} {
		t.Run(name, func(t *testing.T) {
			b := base(t)
			const off, blocks, guard = 512, 256, 64
			bs := int(b.Info().BlockSize)
			g := bdevtest.Reactors(t)
			onBase := bdevtest.Open(t, b, g.Get(0))
			before, after := bdevtest.Buffers(t, guard*bs), bdevtest.Buffers(t, guard*bs)
			bdevtest.Fill(before, 1)
			bdevtest.Fill(after, 2)
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpWrite, off-guard, guard, before))
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpWrite, off+blocks, guard, after))

			d := window(t, b, off, blocks)
			c := bdevtest.Open(t, d, g.Get(g.Len()-1))
			buf := bdevtest.Buffers(t, (blocks+1)*bs)
			bdevtest.Fill(buf, 3)
			// The whole window, then everything that spills over its end.
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, blocks, buf[:blocks*bs]))
			require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpWrite, 0, blocks+1, buf))
			require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpWrite, blocks, 1, buf[:bs]))
			require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpWrite, blocks-1, 2, buf[:2*bs]))
			for _, op := range []bdev.Op{bdev.OpWriteZeroes, bdev.OpUnmap} {
				require.Equal(t, bdev.StatusInvalidRange, c.Do(t, op, 0, blocks+1, nil), "%v", op)
				require.Equal(t, bdev.StatusInvalidRange, c.Do(t, op, blocks, guard, nil), "%v", op)
			}
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))

			// What the window wrote is at [off, off+blocks) on the base.
			got := bdevtest.Buffers(t, blocks*bs)
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpRead, off, blocks, got))
			require.True(t, bytes.Equal(buf[:blocks*bs], got), "window data at its offset on the base")
			// Zeroing the whole window leaves the guards.
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, 0, blocks, nil))
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, 0, blocks, nil))
			check := bdevtest.Buffers(t, guard*bs)
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpRead, off-guard, guard, check))
			require.True(t, bytes.Equal(before, check), "blocks before the window changed")
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpRead, off+blocks, guard, check))
			require.True(t, bytes.Equal(after, check), "blocks after the window changed")
			require.Equal(t, bdev.StatusOK, onBase.Do(t, bdev.OpRead, off, blocks, got))
			require.True(t, bytes.Equal(make([]byte, blocks*bs), got), "the window reads back zeroes")
		})
	}
}

// Many requests at once, more than a reactor's ring holds: the stock of
// children grows to them, every request completes with the right data,
// and each reaches the base once.
func TestManyInFlight(t *testing.T) {
	b := mallocBase(t, 16<<20, 512)
	const n = 3 * reactor.DefaultRingEntries
	d := window(t, b, 7, 4*n)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, n*512)
	bdevtest.Fill(buf, 9)
	var ps []bdevtest.Pending
	for i := range n {
		ps = append(ps, c.Start(bdev.OpWrite, uint64(i), 1, buf[i*512:(i+1)*512]))
	}
	for _, p := range ps {
		require.Equal(t, bdev.StatusOK, p.Wait(t))
	}
	got := bdevtest.Buffers(t, n*512)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, n, got))
	require.True(t, bytes.Equal(buf, got))
	s := d.Stats()
	require.Equal(t, uint64(n), s.WriteOps)
	require.Equal(t, uint64(n), b.Stats().WriteOps, "the base saw each write once")
	// The stack reads the clock once at each end: the part's latencies are
	// its base's.
	require.Equal(t, b.Stats().WriteLatencyNs, s.WriteLatencyNs)
	require.Equal(t, b.Stats().ReadLatencyNs, s.ReadLatencyNs)
	require.Equal(t, b.Stats().ReadLatency, s.ReadLatency)
}

func TestCloseWithOpenChannel(t *testing.T) {
	b := mallocBase(t, 1<<20, 4096)
	d, err := New("v", b, 0, 16, bdev.UUID{})
	require.NoError(t, err)
	r := bdevtest.Reactors(t).Get(0)
	ch, err := bdev.Open(d, r)
	require.NoError(t, err)
	require.ErrorContains(t, d.Close(), "1 channels still open")
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
	require.NoError(t, d.Close())
	require.Zero(t, b.(*malloc.Device).OpenChannels(), "closing the part channel closed its base channel")
}

func TestIOPathAllocatesNothing(t *testing.T) {
	b := fileBase(t, 16<<20)
	d := window(t, b, 256, 1024)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	bdevtest.RequireNoAllocs(t, c, []bdev.Op{bdev.OpWrite, bdev.OpRead, bdev.OpFlush, bdev.OpUnmap}, 1, 1024, bdevtest.Buffers(t, 4096))
}

// A window grows and shrinks in place under I/O: requests in flight finish,
// those submitted meanwhile are held and then checked against the new
// size, consumers hear of it, and data stays where it was.
func TestResizeInPlace(t *testing.T) {
	base := mallocBase(t, 16<<20, 512)
	d := window(t, base, 100, 1000)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 512)
	bdevtest.Fill(buf, 9)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 999, 1, buf))
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, 1000, 1, buf))
	var events []bdev.Event
	cancel := d.Subscribe(func(ev bdev.Event) { events = append(events, ev) })
	defer cancel()

	// A request submitted while quiesced waits, and meets the new size.
	require.NoError(t, d.Quiesce(t.Context()))
	held := c.Start(bdev.OpRead, 1500, 1, bdevtest.Buffers(t, 512))
	d.SetBlocks(2000)
	d.Resume()
	require.Equal(t, bdev.StatusOK, held.Wait(t), "checked against the size it resumed with")

	require.NoError(t, d.Resize(t.Context(), 3000))
	require.EqualValues(t, 3000, d.Info().Blocks)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 2999, 1, bdevtest.Buffers(t, 512)))
	got := bdevtest.Buffers(t, 512)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 999, 1, got))
	require.Equal(t, []byte(buf), []byte(got), "data stays where it was")
	require.NoError(t, d.Resize(t.Context(), 1000))
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, 1000, 1, got))
	require.Len(t, events, 2)
	require.Equal(t, bdev.EventResized, events[0].Kind)
	require.EqualValues(t, 3000, events[0].Info.Blocks)
	require.EqualValues(t, 1000, events[1].Info.Blocks)

	require.ErrorIs(t, d.Resize(t.Context(), 16<<20/512), ErrWindow, "past the base's end")
	require.ErrorIs(t, d.Resize(t.Context(), 0), ErrWindow)
}
