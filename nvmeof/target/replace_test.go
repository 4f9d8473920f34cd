package target_test

import (
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/target"
)

// A namespace's device is replaced (a volume grown in place) under a
// stream of reads: none fails, the new size shows, the old device's
// channels are closed (it can be closed itself).
func TestReplaceNamespaceUnderIO(t *testing.T) {
	f := newFixture(t, nil)
	c := connect(t, f, host.Config{QueueDepth: 16})
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
	bigger, err := malloc.New("bigger", 128<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { bigger.Close() })
	require.NoError(t, f.t.ReplaceNamespace(ctx(t), testNQN, target.Namespace{ID: 1, Device: bigger, UUID: [16]byte{1}, NGUID: [16]byte{2}}))
	stop.Store(true)
	wg.Wait()
	require.Zero(t, failed.Load())
	require.NoError(t, f.dev.Close(), "the old device has no open channel left")
	ns, err := c.Namespace(ctx(t), 1)
	require.NoError(t, err)
	require.EqualValues(t, (128<<20)/512, ns.Blocks())
	require.Equal(t, 2, f.t.Connections(testNQN))
}

// Shutdown notifications flush every namespace from a control path; a
// replacement racing with them waits for their flushes like for commands,
// so the devices it retires close with no channel left open.
func TestReplaceNamespaceDuringShutdownFlushes(t *testing.T) {
	f := newFixture(t, nil)
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
	var old bdev.Device = f.dev
	for i := range 5 {
		// A file: its flushes take long enough to overlap the replacement.
		dev, err := file.Open("next", file.Options{Path: filepath.Join(t.TempDir(), "ns.img"), Size: 64 << 20})
		require.NoError(t, err)
		t.Cleanup(func() { dev.Close() })
		require.NoError(t, f.t.ReplaceNamespace(ctx(t), testNQN, target.Namespace{ID: 1, Device: dev, UUID: [16]byte{1}, NGUID: [16]byte{2}}))
		require.NoError(t, old.Close(), "replacement %d left a channel open on the old device", i)
		old = dev
	}
	stop.Store(true)
	wg.Wait()
}
