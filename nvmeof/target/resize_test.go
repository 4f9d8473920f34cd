package target_test

import (
	"encoding/binary"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/part"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
	"github.com/strata-storage/strata/nvmeof/target"
)

func newRAM(t *testing.T, size uint64) bdev.Device {
	dev, err := malloc.New("pool", size, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	return dev
}

// windowFixture serves a part device (a window of base) as namespace 1, as
// the engine serves a volume of a pool.
func windowFixture(t *testing.T, base bdev.Device, blocks uint64) (*fixture, *part.Device) {
	vol, err := part.New("vol", base, 8, blocks, bdev.UUID{1})
	require.NoError(t, err)
	t.Cleanup(func() { vol.Close() })
	f := newFixture(t, func(c *target.SubsystemConfig) { c.Namespaces[0].Device = vol })
	return f, vol
}

// A namespace's device grows in place under a stream of reads: none
// fails, the host is told (a Namespace Attribute Changed event naming it)
// and Identify shows the new size.
func TestResizeUnderIO(t *testing.T) {
	base := newRAM(t, 64<<20)
	f, vol := windowFixture(t, base, 16<<10)
	c := connect(t, f, host.Config{QueueDepth: 16})
	enableNamespaceEvents(t, c)
	aer := submitAER(c)
	q := c.IOQueues()[0]
	var stop atomic.Bool
	var failed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for !stop.Load() {
				var req host.Request
				req.SetRead(1, 64, 8, buf)
				do(q, &req)
				if req.Err != nil || !req.Status.OK() {
					failed.Add(1)
				}
			}
		}()
	}
	for _, blocks := range []uint64{32 << 10, 48 << 10, 64 << 10} {
		require.NoError(t, vol.Resize(ctx(t), blocks))
		time.Sleep(2 * time.Millisecond)
	}
	stop.Store(true)
	wg.Wait()
	require.Zero(t, failed.Load(), "reads failed across the resizes")
	select {
	case <-aer.done:
	case <-time.After(5 * time.Second):
		t.Fatal("no asynchronous event for the resize")
	}
	require.EqualValues(t, nvme.LogChangedNSList, aer.req.DW0>>16&0xff)
	log, err := c.Admin().GetLogPage(ctx(t), nvme.LogChangedNSList, 4096, 0)
	require.NoError(t, err)
	require.EqualValues(t, 1, binary.LittleEndian.Uint32(log))
	ns, err := c.Namespace(ctx(t), 1)
	require.NoError(t, err)
	require.EqualValues(t, 64<<10, ns.Blocks())
	var req host.Request
	req.SetRead(1, 64<<10-1, 1, make([]byte, 512))
	do(q, &req)
	require.True(t, req.Status.OK(), "the new last block: %v", req.Status)
}

// Shutdown notifications flush every namespace from a control path; a
// resize racing with them waits for their flushes like for commands.
func TestResizeDuringShutdownFlushes(t *testing.T) {
	// A file: its flushes take long enough to overlap the resizes.
	base, err := file.Open("pool", file.Options{Path: filepath.Join(t.TempDir(), "pool.img"), Size: 64 << 20})
	require.NoError(t, err)
	t.Cleanup(func() { base.Close() })
	f, vol := windowFixture(t, base, 1<<10)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				c := connect(t, f, host.Config{IOQueues: 1})
				require.NoError(t, c.Close()) // CC.SHN: the target flushes
			}
		}()
	}
	for i := range 20 {
		require.NoError(t, vol.Resize(ctx(t), uint64(2+i%2)<<10), "resize %d", i)
	}
	stop.Store(true)
	wg.Wait()
}

// An event that finds no Asynchronous Event Request outstanding is kept
// and answers the next one at once (NVMe Base 2.0, 5.2); once its log is
// read, the next request waits for a new event.
func TestEventRetainedUntilAnAER(t *testing.T) {
	f, vol := windowFixture(t, newRAM(t, 64<<20), 16<<10)
	c := connect(t, f, host.Config{})
	enableNamespaceEvents(t, c)
	require.NoError(t, vol.Resize(ctx(t), 32<<10))
	aer := submitAER(c)
	select {
	case <-aer.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the resize before any AER was not reported")
	}
	require.True(t, aer.req.Status.OK())
	require.EqualValues(t, nvme.AsyncEventNotice, aer.req.DW0&7)
	require.EqualValues(t, nvme.LogChangedNSList, aer.req.DW0>>16&0xff)
	log, err := c.Admin().GetLogPage(ctx(t), nvme.LogChangedNSList, nvme.ChangedNSListSize, 0)
	require.NoError(t, err)
	require.Equal(t, []uint32{1}, nvme.ChangedNamespaces(log))

	next := submitAER(c)
	select {
	case <-next.done:
		t.Fatalf("an AER answered with no new event: %#x", next.req.DW0)
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, vol.Resize(ctx(t), 48<<10))
	select {
	case <-next.done:
	case <-time.After(5 * time.Second):
		t.Fatal("the second resize was not reported")
	}
}
