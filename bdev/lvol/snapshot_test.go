package lvol

import (
	"bytes"
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/powerloss"
	"github.com/strata-storage/strata/reactor"
)

// readBlocks reads blocks lbas of the volume named name.
func readBlocks(t *testing.T, s *Store, r *reactor.Reactor, name string, lbas []uint64) [][]byte {
	t.Helper()
	v, err := s.OpenVolume(name)
	require.NoError(t, err)
	ch, err := bdev.Open(v, r)
	require.NoError(t, err)
	c := &bdevtest.Client{Ch: ch}
	var out [][]byte
	all := bdevtest.Buffers(t, 4096*len(lbas))
	for i, lba := range lbas {
		b := all[i*4096 : (i+1)*4096]
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, 1, b))
		out = append(out, b)
	}
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
	require.NoError(t, v.Close())
	return out
}

// A chain of 120 snapshots, a write between each: every snapshot reads
// what the volume held when it was taken, after a reopen and after a
// power cut too, and deleting every other one leaves the rest, the
// volume and a clone of a deleted one whole.
func TestSnapshotChain(t *testing.T) {
	dev, err := powerloss.New("pool", 32<<20, 4096)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	s, g := storeOn(t, dev)
	r := g.Get(g.Len() - 1)
	const clusters, chain = 16, 120
	const cb = poolCluster / 4096
	_, err = s.CreateVolume(VolumeSpec{Name: "v", Size: clusters * poolCluster, Thin: true})
	require.NoError(t, err)
	lbas := make([]uint64, 0, 2*clusters)
	for lc := range uint64(clusters) {
		lbas = append(lbas, lc*cb, lc*cb+1)
	}
	// model[i] is what snapshot i holds at lbas: the seed of the write,
	// 0 for zeroes.
	cur := make([]uint64, len(lbas))
	var model [][]uint64
	vol := openVol(t, s, "v")
	c := bdevtest.Open(t, vol, r)
	buf := bdevtest.Buffers(t, 4096)
	for i := range chain {
		k := (i * 7) % len(lbas)
		bdevtest.Fill(buf, uint64(i+1))
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lbas[k], 1, buf))
		cur[k] = uint64(i + 1)
		_, _, err := s.Snapshot(context.Background(), "v", fmt.Sprintf("s%d", i))
		require.NoError(t, err)
		model = append(model, append([]uint64(nil), cur...))
	}
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return c.Ch.Close() }))
	require.NoError(t, vol.Close())
	_, err = s.Clone("s10", VolumeSpec{Name: "c10"})
	require.NoError(t, err)

	want := func(seed uint64) []byte {
		b := make([]byte, 4096)
		if seed != 0 {
			bdevtest.Fill(b, seed)
		}
		return b
	}
	verify := func(s *Store, only func(i int) bool) {
		t.Helper()
		for i := range chain {
			if !only(i) {
				continue
			}
			got := readBlocks(t, s, r, fmt.Sprintf("s%d", i), lbas)
			for k := range lbas {
				require.True(t, bytes.Equal(want(model[i][k]), got[k]), "snapshot %d block %d", i, lbas[k])
			}
		}
		for name, m := range map[string][]uint64{"v": cur, "c10": model[10]} {
			got := readBlocks(t, s, r, name, lbas)
			for k := range lbas {
				require.True(t, bytes.Equal(want(m[k]), got[k]), "%s block %d", name, lbas[k])
			}
		}
		requireChecks(t, s)
	}
	all := func(int) bool { return true }
	verify(s, all)
	require.NoError(t, s.Close())
	s, err = Open(dev, g.Get(0))
	require.NoError(t, err)
	verify(s, all)

	for i := 0; i < chain; i += 2 {
		require.NoError(t, s.DeleteVolume(fmt.Sprintf("s%d", i)))
	}
	odd := func(i int) bool { return i%2 == 1 }
	verify(s, odd)
	crash(t, s)
	dev.PowerLoss(5, 0)
	s, err = Open(dev, g.Get(0))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	verify(s, odd)
	vi, err := s.Volume("c10")
	require.NoError(t, err)
	require.Empty(t, vi.Parent, "the clone's snapshot is gone")
}

// A snapshot taken while a writer runs holds exactly a prefix of its
// writes (one block each, in order, one at a time): every write
// acknowledged before the call, none begun after it returned. The pause
// is logged; `make bench` measures it.
func TestSnapshotUnderLoad(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 32<<20, 4096))
	const blocks = 2048
	_, err := s.CreateVolume(VolumeSpec{Name: "v", Size: blocks * 4096, Thin: true})
	require.NoError(t, err)
	c := bdevtest.Open(t, openVol(t, s, "v"), g.Get(g.Len()-1))
	var acked, started atomic.Uint64
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4096)
		for i := uint64(0); i < blocks; i++ {
			select {
			case <-stop:
				done <- nil
				return
			default:
			}
			bdevtest.Fill(buf, i+1)
			started.Store(i + 1)
			if st := c.Start(bdev.OpWrite, i, 1, buf).Wait(t); st != bdev.StatusOK {
				done <- fmt.Errorf("write %d: %v", i, st)
				return
			}
			acked.Store(i + 1)
		}
		done <- nil
	}()
	for acked.Load() < 200 {
		runtime.Gosched()
	}
	before := acked.Load()
	_, paused, err := s.Snapshot(context.Background(), "v", "snap")
	require.NoError(t, err)
	after := started.Load()
	close(stop)
	require.NoError(t, <-done)
	t.Logf("snapshot after %d writes: I/O paused %v", before, paused)

	lbas := make([]uint64, blocks)
	for i := range lbas {
		lbas[i] = uint64(i)
	}
	got := readBlocks(t, s, g.Get(0), "snap", lbas)
	n := uint64(0)
	for n < blocks && !bytes.Equal(got[n], make([]byte, 4096)) {
		w := make([]byte, 4096)
		bdevtest.Fill(w, n+1)
		require.True(t, bytes.Equal(w, got[n]), "block %d", n)
		n++
	}
	for i := n; i < blocks; i++ {
		require.True(t, bytes.Equal(got[i], make([]byte, 4096)), "block %d after the prefix of %d", i, n)
	}
	require.GreaterOrEqual(t, n, before, "acknowledged before the snapshot")
	require.LessOrEqual(t, n, after, "begun after it")
	requireChecks(t, s)
}
