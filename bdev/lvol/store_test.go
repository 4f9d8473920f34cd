package lvol

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/fault"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/powerloss"
	"github.com/strata-storage/strata/reactor"
)

const poolCluster = 64 << 10

// storeOn formats dev as a store of poolCluster clusters on the first
// reactor of a group for the test, closed at its end (before dev).
func storeOn(t *testing.T, dev bdev.Device) (*Store, *reactor.Group) {
	t.Helper()
	g := bdevtest.Reactors(t)
	s, err := Create(dev, g.Get(0), CreateOptions{ClusterSize: poolCluster})
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, g
}

func mallocPool(t *testing.T, size uint64, bs uint32) bdev.Device {
	t.Helper()
	dev, err := malloc.New("pool", size, bs)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	return dev
}

// openVol opens volume name as a device, closed at the end of the test
// (before the store).
func openVol(t *testing.T, s *Store, name string) *Volume {
	t.Helper()
	v, err := s.OpenVolume(name)
	require.NoError(t, err)
	t.Cleanup(func() { v.Close() })
	return v
}

func requireChecks(t *testing.T, s *Store) {
	t.Helper()
	errs := s.Check()
	require.Empty(t, errs, "%v", errs)
}

// The conformance suite on thick and thin volumes of pools on RAM and on
// a file, with clusters small enough that its I/O spans many.
func TestConformance(t *testing.T) {
	for _, c := range []struct {
		name string
		thin bool
		pool func(t *testing.T) bdev.Device
	}{
		{"ThickOnMalloc", false, func(t *testing.T) bdev.Device { return mallocPool(t, 40<<20, 4096) }},
		{"ThinOnMalloc512", true, func(t *testing.T) bdev.Device { return mallocPool(t, 40<<20, 512) }},
		{"ThinOnFile", true, func(t *testing.T) bdev.Device {
			dev, err := file.Open("pool", file.Options{Path: filepath.Join(t.TempDir(), "pool.img"), Size: 40 << 20})
			require.NoError(t, err)
			t.Cleanup(func() { dev.Close() })
			return dev
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			bdevtest.Run(t, func(t *testing.T) bdev.Device {
				s, _ := storeOn(t, c.pool(t))
				_, err := s.CreateVolume(VolumeSpec{Name: "vol", Size: 16<<20 + 3*4096, Thin: c.thin})
				require.NoError(t, err)
				v := openVol(t, s, "vol")
				t.Cleanup(func() { requireChecks(t, s) })
				return v
			}, true)
		})
	}
}

// Volumes and their data come back from the device alone, after a clean
// close and after a power cut that keeps only what was flushed.
func TestReopen(t *testing.T) {
	dev, err := powerloss.New("pool", 64<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	s, g := storeOn(t, dev)
	r := g.Get(g.Len() - 1)
	thick, err := s.CreateVolume(VolumeSpec{Name: "thick", Size: 4 << 20})
	require.NoError(t, err)
	thin, err := s.CreateVolume(VolumeSpec{Name: "thin", Size: 64 << 20, Thin: true})
	require.NoError(t, err)
	require.Equal(t, uint64(4<<20), thick.Allocated)
	require.Zero(t, thin.Allocated)

	buf := bdevtest.Buffers(t, 200<<10)
	write := func(s *Store, name string, seed uint64, lba uint64) {
		v, err := s.OpenVolume(name)
		require.NoError(t, err)
		c, err := bdev.Open(v, r)
		require.NoError(t, err)
		cl := &bdevtest.Client{Ch: c}
		bdevtest.Fill(buf, seed)
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpWrite, lba, uint32(len(buf)/512), buf))
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpFlush, 0, 0, nil))
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return c.Close() }))
		require.NoError(t, v.Close())
	}
	check := func(s *Store, name string, seed uint64, lba uint64) {
		t.Helper()
		v, err := s.OpenVolume(name)
		require.NoError(t, err)
		c, err := bdev.Open(v, r)
		require.NoError(t, err)
		cl := &bdevtest.Client{Ch: c}
		got := bdevtest.Buffers(t, len(buf))
		require.Equal(t, bdev.StatusOK, cl.Do(t, bdev.OpRead, lba, uint32(len(got)/512), got))
		bdevtest.Fill(buf, seed)
		require.True(t, bytes.Equal(buf, got), "%s at %d", name, lba)
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return c.Close() }))
		require.NoError(t, v.Close())
	}
	write(s, "thick", 1, 77)
	write(s, "thin", 2, 1000)     // spans clusters, starts mid-cluster
	write(s, "thin", 3, 100000-7) // far away
	before := s.Volumes()
	require.NoError(t, s.Close())

	s, err = Open(dev, g.Get(0))
	require.NoError(t, err)
	require.Equal(t, before, s.Volumes())
	requireChecks(t, s)
	check(s, "thick", 1, 77)
	check(s, "thin", 2, 1000)
	check(s, "thin", 3, 100000-7)

	// A power cut: the store is not closed, the cache is lost.
	write(s, "thin", 4, 5000)
	crash(t, s)
	dev.PowerLoss(1, 0)
	s, err = Open(dev, g.Get(0))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	require.Equal(t, s.Volumes()[1].Name, "thin")
	requireChecks(t, s)
	check(s, "thin", 4, 5000)
	check(s, "thick", 1, 77)
}

// A FUA write in place into a cluster whose mapping record is not yet
// durable (the first write into it was not FUA, and nothing flushed
// since) survives a power cut: completing it makes the mapping durable
// too. Likewise on the metadata reactor's path, where a write waits
// behind the fill of its cluster and then goes in place.
func TestFUAInPlaceAfterFirstWrite(t *testing.T) {
	for _, concurrent := range []bool{false, true} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			dev, err := powerloss.New("pool", 16<<20, 4096)
			require.NoError(t, err)
			t.Cleanup(func() { dev.Close() })
			s, g := storeOn(t, dev)
			_, err = s.CreateVolume(VolumeSpec{Name: "v", Size: 1 << 20, Thin: true})
			require.NoError(t, err)
			v, err := s.OpenVolume("v")
			require.NoError(t, err)
			ch, err := bdev.Open(v, g.Get(g.Len()-1))
			require.NoError(t, err)
			c := &bdevtest.Client{Ch: ch}
			first, second := bdevtest.Buffers(t, 4096), bdevtest.Buffers(t, 4096)
			bdevtest.Fill(first, 1)
			bdevtest.Fill(second, 2)
			if concurrent {
				p1 := c.Start(bdev.OpWrite, 0, 1, first)
				p2 := c.StartFUA(1, 1, second)
				require.Equal(t, bdev.StatusOK, p1.Wait(t))
				require.Equal(t, bdev.StatusOK, p2.Wait(t))
			} else {
				require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 1, first))
				require.Equal(t, bdev.StatusOK, c.StartFUA(1, 1, second).Wait(t))
			}
			require.NoError(t, g.Get(g.Len()-1).Call(func(*reactor.Reactor) error { return ch.Close() }))
			require.NoError(t, v.Close())
			crash(t, s)
			dev.PowerLoss(1, 0)
			s, err = Open(dev, g.Get(0))
			require.NoError(t, err)
			t.Cleanup(func() { s.Close() })
			rc := bdevtest.Open(t, openVol(t, s, "v"), g.Get(0))
			got := bdevtest.Buffers(t, 4096)
			require.Equal(t, bdev.StatusOK, rc.Do(t, bdev.OpRead, 1, 1, got))
			require.True(t, bytes.Equal(second, got), "the FUA write is lost")
		})
	}
}

// oneClusterFree fills store s but one cluster with a thick volume and
// makes two thin ones, a and b, to contend for it.
func oneClusterFree(t *testing.T, s *Store) {
	t.Helper()
	free := s.Stats().Capacity / poolCluster
	_, err := s.CreateVolume(VolumeSpec{Name: "full", Size: (free - 1) * poolCluster})
	require.NoError(t, err)
	for _, name := range []string{"a", "b"} {
		_, err = s.CreateVolume(VolumeSpec{Name: name, Size: 1 << 20, Thin: true})
		require.NoError(t, err)
	}
}

// A cluster unmapped from one volume and reused by another's first write
// never shows the second volume's data in the first after a power cut,
// wherever the cut falls in the reuse: the unmap's record is durable
// before the cluster is given out again (the grace period's flush).
func TestFreedClusterReuseSurvivesPowerCut(t *testing.T) {
	const bs = 4096
	const cb = poolCluster / bs
	for seed := range uint64(12) {
		for dieAfter := 0; dieAfter < 4; dieAfter++ {
			dev, err := powerloss.New("pool", 8<<20, bs)
			require.NoError(t, err)
			s, g := storeOn(t, dev)
			r := g.Get(0)
			oneClusterFree(t, s)
			a, b := openVol(t, s, "a"), openVol(t, s, "b")
			ca, cbl := bdevtest.Open(t, a, r), bdevtest.Open(t, b, r)
			old, fresh := bdevtest.Buffers(t, bs), bdevtest.Buffers(t, bs)
			bdevtest.Fill(old, 1)
			bdevtest.Fill(fresh, 2)
			require.Equal(t, bdev.StatusOK, ca.StartFUA(0, 1, old).Wait(t))
			require.Equal(t, bdev.StatusOK, ca.Do(t, bdev.OpUnmap, 0, cb, nil))
			// b's first write takes the cluster once the grace period
			// gives it back; the device dies somewhere in its fill.
			dev.DieAfter(dieAfter)
			cbl.Do(t, bdev.OpWrite, 0, 1, fresh) // fails, or not, as the cut falls
			require.NoError(t, r.Call(func(*reactor.Reactor) error {
				return errors.Join(ca.Ch.Close(), cbl.Ch.Close())
			}))
			require.NoError(t, a.Close())
			require.NoError(t, b.Close())
			crash(t, s)
			dev.Revive()
			dev.PowerLoss(seed, 0.5)
			s2, err := Open(dev, r)
			require.NoError(t, err)
			requireChecks(t, s2)
			got := readBlocks(t, s2, r, "a", []uint64{0})[0]
			require.False(t, bytes.Equal(fresh, got), "seed %d, dead after %d: volume a shows volume b's data", seed, dieAfter)
			require.True(t, bytes.Equal(old, got) || bytes.Equal(make([]byte, bs), got), "seed %d, dead after %d: volume a reads neither its data nor zeroes (b's, torn)", seed, dieAfter)
			require.NoError(t, s2.Close())
		}
	}
}

// crash abandons an open store as a kill would: nothing more is started;
// what the device was already given (a grace period's flush, say) lands
// or fails as it would have without the process.
func crash(t *testing.T, s *Store) {
	t.Helper()
	require.NoError(t, s.r.Call(func(*reactor.Reactor) error {
		s.err, s.closed = fmt.Errorf("crashed"), true
		return nil
	}))
	require.Eventually(t, func() bool {
		n := 0
		s.r.Call(func(*reactor.Reactor) error { n = s.ch.Inflight(); return nil })
		return n == 0
	}, time.Minute, time.Millisecond, "the pool's requests never finished")
	require.NoError(t, s.r.Call(func(*reactor.Reactor) error {
		return errors.Join(s.j.Close(), s.meta.Unmap(), s.fills.close(), s.ch.Close())
	}))
}

// A first write that waits for a cluster a grace period holds back fails
// when the period's flush fails: the store faults and frees nothing, so
// the write has nothing left to wait for.
func TestWriteWaitingForHeldClusterFailsWithTheStore(t *testing.T) {
	const bs = 4096
	base, err := powerloss.New("base", 8<<20, bs)
	require.NoError(t, err)
	dev := fault.New("pool", base, fault.Options{Timeout: 500 * time.Millisecond})
	s, g := storeOn(t, dev)
	r := g.Get(0)
	oneClusterFree(t, s)
	ca, cb := bdevtest.Open(t, openVol(t, s, "a"), r), bdevtest.Open(t, openVol(t, s, "b"), r)
	buf := bdevtest.Buffers(t, bs)
	require.Equal(t, bdev.StatusOK, ca.Do(t, bdev.OpWrite, 0, 1, buf))
	// The grace period's flush hangs until the device gives it up.
	dev.Inject(fault.Rule{Ops: []bdev.Op{bdev.OpFlush}, Hang: true, Count: 1})
	require.Equal(t, bdev.StatusOK, ca.Do(t, bdev.OpUnmap, 0, poolCluster/bs, nil))
	st := cb.Do(t, bdev.OpWrite, 0, 1, buf)
	require.NotEqual(t, bdev.StatusOK, st, "a write succeeded on a store whose flush failed")
	require.Error(t, s.Err())
	require.Equal(t, 1, dev.Faults(), "the flush that hung was not the grace period's")
}

// A thin pool that runs out of clusters fails the write that needed one
// with StatusNoSpace, goes on serving reads, writes in place and other
// volumes, and writes work again once space is freed.
func TestThinPoolFull(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 8<<20, 4096))
	clusters := s.Layout().Clusters
	_, err := s.CreateVolume(VolumeSpec{Name: "a", Size: 64 << 20, Thin: true})
	require.NoError(t, err)
	_, err = s.CreateVolume(VolumeSpec{Name: "b", Size: 64 << 20, Thin: true})
	require.NoError(t, err)
	st := s.Stats()
	require.Equal(t, clusters*poolCluster, st.Capacity)
	require.Equal(t, uint64(128<<20), st.Committed)
	a := bdevtest.Open(t, openVol(t, s, "a"), g.Get(1%g.Len()))
	b := bdevtest.Open(t, openVol(t, s, "b"), g.Get(0))
	buf := bdevtest.Buffers(t, 4096)
	cb := uint64(poolCluster / 4096)
	var lc uint64
	for ; ; lc++ {
		bdevtest.Fill(buf, lc)
		st := a.Do(t, bdev.OpWrite, lc*cb+3, 1, buf)
		if st == bdev.StatusNoSpace {
			break
		}
		require.Equal(t, bdev.StatusOK, st, "cluster %d", lc)
	}
	require.Equal(t, clusters, lc, "every cluster mapped before the pool was full")
	require.Equal(t, clusters*poolCluster, s.Stats().Allocated)
	require.Equal(t, bdev.StatusNoSpace, b.Do(t, bdev.OpWrite, 0, 1, buf))
	// Reads and writes in place go on.
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpWrite, 5*cb, 1, buf))
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpRead, 2*cb+3, 1, buf))
	want := bdevtest.Buffers(t, 4096)
	bdevtest.Fill(want, 2)
	require.Equal(t, want, buf)
	requireChecks(t, s)

	// Unmapping whole clusters of a gives them back (after the grace
	// period): b writes again, without a restart.
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpUnmap, 0, uint32(4*cb), nil))
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpRead, 3, 1, buf))
	require.Equal(t, make([]byte, 4096), buf, "an unmapped cluster reads zeroes")
	require.Eventually(t, func() bool { return b.Do(t, bdev.OpWrite, 0, 1, buf) == bdev.StatusOK }, 5e9, 1e6)
	vi, err := s.Volume("a")
	require.NoError(t, err)
	require.Equal(t, (clusters-4)*poolCluster, vi.Allocated)
	requireChecks(t, s)
}

// A read across unmapped clusters that lie between two clusters adjacent
// on the pool reads zeroes there: the gathering of adjacent clusters into
// one child must not jump the gap in the buffer.
func TestReadAcrossHoleBetweenAdjacentClusters(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 8<<20, 4096))
	_, err := s.CreateVolume(VolumeSpec{Name: "v", Size: 1 << 20, Thin: true})
	require.NoError(t, err)
	v := openVol(t, s, "v")
	c := bdevtest.Open(t, v, g.Get(0))
	const cb = poolCluster / 4096
	one := bdevtest.Buffers(t, 4096)
	for _, lc := range []uint64{0, 3} {
		bdevtest.Fill(one, lc+1)
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lc*cb, 1, one))
	}
	require.Equal(t, v.m.Lookup(0)+1, v.m.Lookup(3), "clusters 0 and 3 adjacent on the pool")
	got := bdevtest.Buffers(t, 4*poolCluster)
	bdevtest.Fill(got, 99)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 4*cb, got))
	want := make([]byte, 4*poolCluster)
	bdevtest.Fill(want[:4096], 1)
	bdevtest.Fill(want[3*poolCluster:3*poolCluster+4096], 4)
	require.True(t, bytes.Equal(want, got))
}

// Many first writes into the same clusters at once, from two reactors:
// one cluster each, every write's data where it went.
func TestConcurrentFirstWrites(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 32<<20, 512))
	_, err := s.CreateVolume(VolumeSpec{Name: "v", Size: 16 << 20, Thin: true})
	require.NoError(t, err)
	v := openVol(t, s, "v")
	clients := []*bdevtest.Client{bdevtest.Open(t, v, g.Get(0)), bdevtest.Open(t, v, g.Get(1%g.Len()))}
	const per = poolCluster / 512 / 16 // 16 writes per cluster
	bufs := bdevtest.Buffers(t, 64*16*512*per)
	var pend []bdevtest.Pending
	for i := range 64 * 16 {
		b := bufs[i*512*per : (i+1)*512*per]
		bdevtest.Fill(b, uint64(i))
		lba := uint64(i%64)*(poolCluster/512) + uint64(i/64)*per
		pend = append(pend, clients[i%2].Start(bdev.OpWrite, lba, per, b))
	}
	for _, p := range pend {
		require.Equal(t, bdev.StatusOK, p.Wait(t))
	}
	vi, err := s.Volume("v")
	require.NoError(t, err)
	require.Equal(t, uint64(64*poolCluster), vi.Allocated)
	got := bdevtest.Buffers(t, 512*per)
	for i := range 64 * 16 {
		lba := uint64(i%64)*(poolCluster/512) + uint64(i/64)*per
		require.Equal(t, bdev.StatusOK, clients[0].Do(t, bdev.OpRead, lba, per, got))
		require.True(t, bytes.Equal(bufs[i*512*per:(i+1)*512*per], got), "write %d", i)
	}
	requireChecks(t, s)
}

// The journal laps its ring many times under a stream of mappings and
// unmappings: checkpoints keep it from filling, and what comes back from
// the device after a close and after a power cut is what was written.
func TestJournalLapsWithCheckpoints(t *testing.T) {
	dev, err := powerloss.New("pool", 16<<20, 4096)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	s, g := storeOn(t, dev)
	_, err = s.CreateVolume(VolumeSpec{Name: "v", Size: 64 << 20, Thin: true})
	require.NoError(t, err)
	v := openVol(t, s, "v")
	c := bdevtest.Open(t, v, g.Get(1%g.Len()))
	ring := s.ring().Blocks
	cb := uint32(poolCluster / 4096)
	buf := bdevtest.Buffers(t, 4096)
	rng := rand.New(rand.NewPCG(1, 2))
	model := map[uint64]uint64{} // cluster -> seed written at its block 0
	var pend []bdevtest.Pending
	// Each round maps or unmaps clusters, a record each, until the
	// journal has lapped its ring three times.
	lapped := func() bool {
		var seq uint64
		require.NoError(t, s.r.Call(func(*reactor.Reactor) error { _, seq = s.j.Pos(); return nil }))
		return seq > 3*ring
	}
	batch := bdevtest.Buffers(t, 32*4096)
	for !lapped() {
		used := map[uint64]bool{}
		for i := range 32 {
			lc := rng.Uint64N(128)
			if used[lc] {
				continue // one request per cluster at a time
			}
			used[lc] = true
			if _, ok := model[lc]; ok {
				pend = append(pend, c.Start(bdev.OpUnmap, lc*uint64(cb), cb, nil))
				delete(model, lc)
			} else {
				b := batch[i*4096 : (i+1)*4096]
				bdevtest.Fill(b, lc)
				pend = append(pend, c.Start(bdev.OpWrite, lc*uint64(cb), 1, b))
				model[lc] = lc
			}
		}
		for _, p := range pend {
			require.Equal(t, bdev.StatusOK, p.Wait(t))
		}
		pend = pend[:0]
	}
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	verify := func(s *Store, c *bdevtest.Client) {
		t.Helper()
		vi, err := s.Volume("v")
		require.NoError(t, err)
		require.Equal(t, uint64(len(model))*poolCluster, vi.Allocated)
		for lc := range uint64(128) {
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lc*uint64(cb), 1, buf))
			want := make([]byte, 4096)
			if seed, ok := model[lc]; ok {
				bdevtest.Fill(want, seed)
			}
			require.True(t, bytes.Equal(want, buf), "cluster %d", lc)
		}
		requireChecks(t, s)
	}
	verify(s, c)
	crash(t, s)
	dev.PowerLoss(3, 0)
	s, err = Open(dev, g.Get(0))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	v = openVol(t, s, "v")
	verify(s, bdevtest.Open(t, v, g.Get(0)))
}

// Thick volumes are whole from creation, grow and shrink; a thick volume
// that does not fit is refused, the pool as it was.
func TestThickResize(t *testing.T) {
	s, _ := storeOn(t, mallocPool(t, 16<<20, 4096))
	free := s.Stats().Capacity
	_, err := s.CreateVolume(VolumeSpec{Name: "big", Size: free + poolCluster})
	require.ErrorIs(t, err, ErrNoSpace)
	require.Zero(t, s.Stats().Allocated)
	_, err = s.CreateVolume(VolumeSpec{Name: "t", Size: 1 << 20})
	require.NoError(t, err)
	require.NoError(t, s.ResizeVolume(context.Background(), "t", 3<<20+4096))
	vi, err := s.Volume("t")
	require.NoError(t, err)
	require.Equal(t, uint64(3<<20+poolCluster), vi.Allocated)
	require.NoError(t, s.ResizeVolume(context.Background(), "t", 512<<10))
	vi, _ = s.Volume("t")
	require.Equal(t, uint64(512<<10), vi.Allocated)
	require.ErrorIs(t, s.ResizeVolume(context.Background(), "t", free*2), ErrNoSpace)
	require.Eventually(t, func() bool { return s.Stats().Allocated == 512<<10 }, 5e9, 1e6)
	requireChecks(t, s)
	require.NoError(t, s.DeleteVolume("t"))
	require.Eventually(t, func() bool { return s.Stats().Allocated == 0 }, 5e9, 1e6)
	_, err = s.Volume("t")
	require.ErrorIs(t, err, ErrNotFound)
}

// A shrink that ends inside a cluster, then a grow: the blocks past the
// old end read zeroes, on a thin and a thick volume.
func TestShrinkThenGrowReadsZeroes(t *testing.T) {
	for _, thin := range []bool{false, true} {
		t.Run(fmt.Sprintf("thin=%v", thin), func(t *testing.T) {
			s, g := storeOn(t, mallocPool(t, 16<<20, 512))
			_, err := s.CreateVolume(VolumeSpec{Name: "v", Size: 4 * poolCluster, Thin: thin})
			require.NoError(t, err)
			c := bdevtest.Open(t, openVol(t, s, "v"), g.Get(0))
			const cb = poolCluster / 512
			buf := bdevtest.Buffers(t, poolCluster)
			bdevtest.Fill(buf, 1)
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, cb, cb, buf))
			require.NoError(t, s.ResizeVolume(context.Background(), "v", poolCluster+7*512))
			require.NoError(t, s.ResizeVolume(context.Background(), "v", 4*poolCluster))
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, cb, cb, buf))
			want := bdevtest.Buffers(t, poolCluster)
			bdevtest.Fill(want, 1)
			clear(want[7*512:])
			require.True(t, bytes.Equal(want, buf))
			requireChecks(t, s)
		})
	}
}

// First writes that would map more than a checkpoint half holds fail
// with StatusNoSpace (Capacity Exceeded) while the pool still has free
// clusters; the store is not faulted, reads and writes in place go on,
// and deleting a volume makes room again. The halves are shrunk in the
// running store to reach the limit quickly (never reopened).
func TestMetadataFullFailsFirstWritesNotTheStore(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 64<<20, 4096))
	r := g.Get(0)
	const vols = 8
	for i := range vols {
		_, err := s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("v%d", i), Size: 16 << 20, Thin: true})
		require.NoError(t, err)
	}
	// A snapshot sharing clusters of its own, for unmaps to add
	// differences to its map.
	_, err := s.CreateVolume(VolumeSpec{Name: "shared", Size: 16 << 20, Thin: true})
	require.NoError(t, err)
	sv := openVol(t, s, "shared")
	sc := bdevtest.Open(t, sv, r)
	one := bdevtest.Buffers(t, 4096)
	for lc := uint64(0); lc < 256; lc += 2 {
		require.Equal(t, bdev.StatusOK, sc.Do(t, bdev.OpWrite, lc*poolCluster/4096, 1, one))
	}
	_, _, err = s.Snapshot(context.Background(), "shared", "snap")
	require.NoError(t, err)
	require.NoError(t, r.Call(func(*reactor.Reactor) error { s.halfBlocks = 3; return nil }))
	var cs []*bdevtest.Client
	var vs []*Volume
	for i := range vols {
		vs = append(vs, openVol(t, s, fmt.Sprintf("v%d", i)))
		cs = append(cs, bdevtest.Open(t, vs[i], r))
	}
	buf := bdevtest.Buffers(t, 4096)
	const cb = poolCluster / 4096
	type spot struct{ v, lba uint64 }
	var written []spot
	var st bdev.Status
	for lc := uint64(0); lc < 256 && st == bdev.StatusOK; lc += 2 {
		for v := range uint64(vols) {
			bdevtest.Fill(buf, v<<32|lc)
			if st = cs[v].Do(t, bdev.OpWrite, lc*cb, 1, buf); st != bdev.StatusOK {
				break
			}
			written = append(written, spot{v, lc * cb})
		}
	}
	require.Equal(t, bdev.StatusNoSpace, st, "the maps outgrew the metadata")
	require.Greater(t, len(written), 100)
	require.NoError(t, s.Err(), "the store is not faulted")
	require.Less(t, s.Stats().Allocated, s.Stats().Capacity, "clusters were left: the metadata was full")
	for _, w := range written[len(written)-20:] {
		bdevtest.Fill(buf, w.v<<32|w.lba/cb)
		got := bdevtest.Buffers(t, 4096)
		require.Equal(t, bdev.StatusOK, cs[w.v].Do(t, bdev.OpRead, w.lba, 1, got))
		require.True(t, bytes.Equal(buf, got))
		require.Equal(t, bdev.StatusOK, cs[w.v].Do(t, bdev.OpWrite, w.lba+1, 1, got), "in place")
	}
	// Unmapping shared clusters adds to the snapshot's differences: past
	// the room, it is refused too; unmapping what only the volume maps
	// frees.
	refused := 0
	for lc := uint64(0); lc < 256; lc += 2 {
		st := sc.Do(t, bdev.OpUnmap, lc*cb, cb, nil)
		if st == bdev.StatusNoSpace {
			refused++
			continue
		}
		require.Equal(t, bdev.StatusOK, st)
	}
	require.Positive(t, refused, "unmaps of shared clusters were never refused")
	require.NoError(t, s.Err(), "the store is not faulted")
	// A checkpoint of what was mapped fits its half.
	require.NoError(t, s.run(func(done func(error)) { s.checkpoint(done) }))
	require.NoError(t, s.Err())

	require.NoError(t, r.Call(func(*reactor.Reactor) error { return cs[vols-1].Ch.Close() }))
	require.NoError(t, vs[vols-1].Close())
	require.NoError(t, s.DeleteVolume(fmt.Sprintf("v%d", vols-1)))
	bdevtest.Fill(buf, 99)
	require.Equal(t, bdev.StatusOK, cs[0].Do(t, bdev.OpWrite, 255*cb, 1, buf), "room again after a delete")
	requireChecks(t, s)
}

// New volumes, snapshots and clones are refused once the checkpoint would
// outgrow its share of a metadata half (room is kept for maps to grow):
// the store goes on, its thin volumes still map clusters and it still
// checkpoints and reopens; deleting volumes makes room again.
func TestMetadataFullRefusesNewVolumes(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 8<<20, 4096))
	_, err := s.CreateVolume(VolumeSpec{Name: "data", Size: 4 << 20, Thin: true})
	require.NoError(t, err)
	n := 0
	for ; ; n++ {
		_, err = s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("v%d", n), Size: 1 << 30, Thin: true})
		if err != nil {
			break
		}
	}
	require.ErrorIs(t, err, ErrMetadataFull)
	require.Greater(t, n, 1000)
	_, _, err = s.Snapshot(context.Background(), "data", "snap")
	require.ErrorIs(t, err, ErrMetadataFull)

	dv, err := s.OpenVolume("data")
	require.NoError(t, err)
	ch, err := bdev.Open(dv, g.Get(0))
	require.NoError(t, err)
	c := &bdevtest.Client{Ch: ch}
	buf := bdevtest.Buffers(t, 4096)
	for lc := range uint64(8) {
		bdevtest.Fill(buf, lc)
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lc*poolCluster/4096, 1, buf), "a thin volume still maps clusters")
	}
	require.NoError(t, g.Get(0).Call(func(*reactor.Reactor) error { return ch.Close() }))
	require.NoError(t, dv.Close())
	require.NoError(t, s.Close(), "the checkpoint fits")
	s, err = Open(s.dev, g.Get(0))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	for i := range 10 {
		require.NoError(t, s.DeleteVolume(fmt.Sprintf("v%d", i)))
	}
	_, _, err = s.Snapshot(context.Background(), "data", "snap")
	require.NoError(t, err, "room again")
	requireChecks(t, s)
}

// The mapped path allocates nothing per I/O: a thick volume, and a thin
// one once its clusters are allocated.
func TestMappedPathAllocatesNothing(t *testing.T) {
	s, g := storeOn(t, mallocPool(t, 32<<20, 4096))
	for _, thin := range []bool{false, true} {
		name := fmt.Sprintf("thin-%v", thin)
		_, err := s.CreateVolume(VolumeSpec{Name: name, Size: 8 << 20, Thin: thin})
		require.NoError(t, err)
		c := bdevtest.Open(t, openVol(t, s, name), g.Get(0))
		buf := bdevtest.Buffers(t, 128<<10)
		if thin {
			for lba := uint64(0); lba < 2048; lba += 32 {
				require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lba, 32, buf))
			}
		}
		bdevtest.RequireNoAllocs(t, c, []bdev.Op{bdev.OpRead, bdev.OpWrite, bdev.OpFlush}, 32, 2048, buf)
	}
}

// crashModel is what each 512-byte block of a volume may read back after
// a power cut: its durable content (flushed, or written FUA) and what
// was written since (0 is zeroes, else the ID of a write's pattern).
type crashModel struct {
	blocks [][]uint64 // per block: the candidates, the durable one first
}

func newCrashModel(blocks uint64) *crashModel {
	m := &crashModel{blocks: make([][]uint64, blocks)}
	for i := range m.blocks {
		m.blocks[i] = []uint64{0}
	}
	return m
}

func (m *crashModel) wrote(lba, n uint64, id uint64, durable bool) {
	for b := lba; b < lba+n; b++ {
		if durable {
			m.blocks[b] = []uint64{id}
		} else {
			m.blocks[b] = append(m.blocks[b], id)
		}
	}
}

// flushed makes the newest content of every block durable.
func (m *crashModel) flushed() {
	for i, c := range m.blocks {
		m.blocks[i] = []uint64{c[len(c)-1]}
	}
}

// pattern fills a block with write id's content for block lba (0:
// zeroes).
func pattern(b []byte, id, lba uint64) {
	if id == 0 {
		clear(b)
		return
	}
	bdevtest.Fill(b, id<<24|lba)
}

// Power cuts in the middle of a stream of writes (some FUA), Write
// Zeroes, unmaps and flushes on a thin and a thick volume, with the
// cache keeping none or a random half of what was not flushed, torn by
// sectors: after each, the store opens from the device alone, its
// invariants hold, and every block reads back its durable content or
// something written to it since, never anything else (no other volume's
// data, no stale cluster, nothing flushed lost).
func TestPowerCuts(t *testing.T) { powerCuts(t, 10, false) }

// The same, with the cut while I/O runs: the device dies after a random
// number of requests in the middle of a batch (the store's journal,
// checkpoint and fill writes among them), every request after fails,
// and what the cut leaves is all the store opens from. Requests that
// failed may or may not have happened; those that succeeded are there.
func TestPowerCutsInFlight(t *testing.T) { powerCuts(t, 24, true) }

func powerCuts(t *testing.T, rounds int, inFlight bool) {
	dev, err := powerloss.New("pool", 32<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	s, g := storeOn(t, dev)
	vols := []struct {
		name string
		size uint64
		thin bool
	}{{"thin", 8 << 20, true}, {"thick", 2 << 20, false}}
	models := make([]*crashModel, len(vols))
	for i, v := range vols {
		_, err := s.CreateVolume(VolumeSpec{Name: v.name, Size: v.size, Thin: v.thin})
		require.NoError(t, err)
		models[i] = newCrashModel(v.size / 512)
	}
	rng := rand.New(rand.NewPCG(7, 7))
	const cb = poolCluster / 512
	bufs := bdevtest.Buffers(t, 16*16*512)
	id := uint64(0)
	failed := 0
	defer func() { t.Logf("%d requests failed across the cuts", failed) }()
	for round := range rounds {
		clients := make([]*bdevtest.Client, len(vols))
		var devs []*Volume
		var chans []*bdev.Channel
		for i, v := range vols {
			dv, err := s.OpenVolume(v.name)
			require.NoError(t, err)
			ch, err := bdev.Open(dv, g.Get(i%g.Len()))
			require.NoError(t, err)
			clients[i], devs, chans = &bdevtest.Client{Ch: ch}, append(devs, dv), append(chans, ch)
		}
		batches := 30
		if inFlight {
			batches = 1 + rng.IntN(6)
		}
		for batch := range batches {
			dying := inFlight && batch == batches-1
			if dying {
				dev.DieAfter(rng.IntN(80))
			}
			var pend []bdevtest.Pending
			type done struct {
				vol     int
				lba, n  uint64
				id      uint64
				durable bool
			}
			var dones []done
			used := map[[2]uint64]bool{}
			for k := range 16 {
				vi := rng.IntN(len(vols))
				clusters := vols[vi].size / poolCluster
				lc := rng.Uint64N(clusters)
				if used[[2]uint64{uint64(vi), lc}] {
					continue
				}
				used[[2]uint64{uint64(vi), lc}] = true
				c := clients[vi]
				switch op := rng.IntN(10); {
				case op < 6: // a write, FUA one time in three
					off := rng.Uint64N(cb)
					n := 1 + rng.Uint64N(min(16, cb-off))
					id++
					b := bufs[k*16*512 : k*16*512+int(n)*512]
					for j := range n {
						pattern(b[j*512:(j+1)*512], id, lc*cb+off+j)
					}
					fua := rng.IntN(3) == 0
					if fua {
						pend = append(pend, c.StartFUA(lc*cb+off, uint32(n), b))
					} else {
						pend = append(pend, c.Start(bdev.OpWrite, lc*cb+off, uint32(n), b))
					}
					dones = append(dones, done{vi, lc*cb + off, n, id, fua})
				case op < 8: // the whole cluster unmapped
					pend = append(pend, c.Start(bdev.OpUnmap, lc*cb, cb, nil))
					dones = append(dones, done{vi, lc * cb, cb, 0, false})
				default: // a part of it zeroed
					off := rng.Uint64N(cb)
					n := 1 + rng.Uint64N(cb-off)
					pend = append(pend, c.Start(bdev.OpWriteZeroes, lc*cb+off, uint32(n), nil))
					dones = append(dones, done{vi, lc*cb + off, n, 0, false})
				}
			}
			for i, p := range pend {
				select {
				case <-p.Done():
				case <-time.After(10 * time.Second):
					t.Fatalf("round %d: request %d never finished", round, i)
				}
				st := p.Wait(t)
				d := dones[i]
				if !dying {
					require.Equal(t, bdev.StatusOK, st, "op %d", i)
				}
				// Failed: it may have happened, in part or whole, or not.
				models[d.vol].wrote(d.lba, d.n, d.id, d.durable && st == bdev.StatusOK)
				if st != bdev.StatusOK {
					failed++
				}
			}
			if !dying && rng.IntN(4) == 0 {
				vi := rng.IntN(len(vols))
				require.Equal(t, bdev.StatusOK, clients[vi].Do(t, bdev.OpFlush, 0, 0, nil))
				for _, m := range models {
					m.flushed() // one flush of the pool covers every volume
				}
			}
		}
		for i := range vols {
			require.NoError(t, g.Get(i%g.Len()).Call(func(*reactor.Reactor) error { return chans[i].Close() }))
			require.NoError(t, devs[i].Close())
		}
		crash(t, s)
		dev.Revive()
		dev.PowerLoss(uint64(round), float64(round%2)/2) // nothing unflushed kept, or half
		s, err = Open(dev, g.Get(0))
		require.NoError(t, err, "round %d", round)
		requireChecks(t, s)
		for i, v := range vols {
			dv, err := s.OpenVolume(v.name)
			require.NoError(t, err)
			ch, err := bdev.Open(dv, g.Get(0))
			require.NoError(t, err)
			c := &bdevtest.Client{Ch: ch}
			got := bdevtest.Buffers(t, 1<<20)
			want := make([]byte, 512)
			for lba := uint64(0); lba < v.size/512; lba += 2048 {
				require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, 2048, got))
				for j := range uint64(2048) {
					blk := got[j*512 : (j+1)*512]
					found := false
					for _, cand := range models[i].blocks[lba+j] {
						pattern(want, cand, lba+j)
						if bytes.Equal(want, blk) {
							models[i].blocks[lba+j] = []uint64{cand} // what is there is durable now
							found = true
							break
						}
					}
					require.True(t, found, "round %d: %s block %d reads none of %v", round, v.name, lba+j, models[i].blocks[lba+j])
				}
			}
			require.NoError(t, g.Get(0).Call(func(*reactor.Reactor) error { return c.Ch.Close() }))
			require.NoError(t, dv.Close())
		}
	}
	t.Cleanup(func() { s.Close() })
}
