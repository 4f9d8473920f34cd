package lvol

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/reactor"
)

// modelVol is the reference model's volume: its bytes, and the store's
// device for it while open.
type modelVol struct {
	name string
	data []byte
	snap bool
	dev  *Volume
	ch   *bdev.Channel
	cl   *bdevtest.Client
}

// The store against a reference model as simple as can be (a volume is
// a byte slice): thousands of random creates, deletes, resizes both
// ways, snapshots (of open and closed volumes), clones, writes, Write
// Zeroes, unmaps and reads, with reopens of the store between; every read
// compared, the invariants checked as it goes.
func TestAgainstModel(t *testing.T) {
	steps := 4000
	if testing.Short() {
		steps = 1000
	}
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runModel(t, seed, steps) })
	}
}

func runModel(t *testing.T, seed uint64, steps int) {
	const bs = 512
	const cb = poolCluster / bs
	dev := mallocPool(t, 48<<20, bs)
	s, g := storeOn(t, dev)
	rng := rand.New(rand.NewPCG(seed, 99))
	var vols []*modelVol
	nextName := 0
	buf := bdevtest.Buffers(t, 64*bs)
	got := bdevtest.Buffers(t, 64*bs)
	r := g.Get(g.Len() - 1)

	open := func(v *modelVol) {
		if v.dev != nil {
			return
		}
		d, err := s.OpenVolume(v.name)
		require.NoError(t, err)
		ch, err := bdev.Open(d, r)
		require.NoError(t, err)
		v.dev, v.ch, v.cl = d, ch, &bdevtest.Client{Ch: ch}
	}
	closeVol := func(v *modelVol) {
		if v.dev == nil {
			return
		}
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return v.ch.Close() }))
		require.NoError(t, v.dev.Close())
		v.dev, v.ch, v.cl = nil, nil, nil
	}
	pick := func(ok func(*modelVol) bool) *modelVol {
		var c []*modelVol
		for _, v := range vols {
			if ok(v) {
				c = append(c, v)
			}
		}
		if len(c) == 0 {
			return nil
		}
		return c[rng.IntN(len(c))]
	}
	any := func(*modelVol) bool { return true }
	writable := func(v *modelVol) bool { return !v.snap }
	newName := func() string { nextName++; return fmt.Sprintf("v%d", nextName) }
	// A random range of a volume, at most 64 blocks, often across a
	// cluster boundary.
	span := func(v *modelVol) (uint64, uint32) {
		blocks := uint64(len(v.data)) / bs
		lba := rng.Uint64N(blocks)
		if rng.IntN(3) == 0 && blocks > cb {
			lba = (1+rng.Uint64N(blocks/cb))*cb - 1 - rng.Uint64N(8)
			lba = min(lba, blocks-1)
		}
		return lba, uint32(1 + rng.Uint64N(min(64, blocks-lba)))
	}

	var hist []string
	counts := map[string]int{}
	defer func() { t.Logf("steps: %v", counts) }()
	for step := range steps {
		what := ""
		switch op := rng.IntN(100); {
		case op < 6:
			if len(vols) >= 10 {
				continue
			}
			thin := rng.IntN(3) > 0
			size := (1+rng.Uint64N(16))*poolCluster - rng.Uint64N(4)*bs*uint64(rng.IntN(2))*37
			v := &modelVol{name: newName(), data: make([]byte, size)}
			what = fmt.Sprintf("create %s %d thin=%v", v.name, size, thin)
			_, err := s.CreateVolume(VolumeSpec{Name: v.name, Size: size, Thin: thin})
			require.NoError(t, err, what)
			vols = append(vols, v)
		case op < 9:
			v := pick(any)
			if v == nil {
				continue
			}
			what = "delete " + v.name
			closeVol(v)
			require.NoError(t, s.DeleteVolume(v.name), what)
			vols = slices.DeleteFunc(vols, func(x *modelVol) bool { return x == v })
		case op < 13:
			v := pick(writable)
			if v == nil {
				continue
			}
			size := (1+rng.Uint64N(16))*poolCluster - rng.Uint64N(64)*bs
			what = fmt.Sprintf("resize %s %d -> %d", v.name, len(v.data), size)
			if rng.IntN(2) == 0 {
				open(v)
			}
			err := s.ResizeVolume(context.Background(), v.name, size)
			require.NoError(t, err, what)
			if size < uint64(len(v.data)) {
				v.data = v.data[:size]
			} else {
				v.data = append(v.data, make([]byte, size-uint64(len(v.data)))...)
			}
		case op < 17:
			v := pick(writable)
			if v == nil || len(vols) >= 10 {
				continue
			}
			if rng.IntN(2) == 0 {
				open(v)
			}
			sn := &modelVol{name: newName(), data: bytes.Clone(v.data), snap: true}
			what = fmt.Sprintf("snapshot %s of %s", sn.name, v.name)
			_, _, err := s.Snapshot(context.Background(), v.name, sn.name)
			require.NoError(t, err, what)
			vols = append(vols, sn)
		case op < 20:
			sn := pick(func(v *modelVol) bool { return v.snap })
			if sn == nil || len(vols) >= 10 {
				continue
			}
			size := uint64(len(sn.data)) + rng.Uint64N(3)*poolCluster
			c := &modelVol{name: newName(), data: append(bytes.Clone(sn.data), make([]byte, size-uint64(len(sn.data)))...)}
			what = fmt.Sprintf("clone %s of %s, %d", c.name, sn.name, size)
			_, err := s.Clone(sn.name, VolumeSpec{Name: c.name, Size: size})
			require.NoError(t, err, what)
			vols = append(vols, c)
		case op < 21:
			what = "reopen"
			for _, v := range vols {
				closeVol(v)
			}
			require.NoError(t, s.Close())
			var err error
			s, err = Open(dev, g.Get(0))
			require.NoError(t, err)
		case op < 55:
			v := pick(any)
			if v == nil {
				continue
			}
			open(v)
			lba, n := span(v)
			b := buf[:n*bs]
			bdevtest.Fill(b, uint64(step))
			what = fmt.Sprintf("write %s %d+%d", v.name, lba, n)
			var st bdev.Status
			if rng.IntN(4) == 0 {
				st = v.cl.StartFUA(lba, n, b).Wait(t)
			} else {
				st = v.cl.Do(t, bdev.OpWrite, lba, n, b)
			}
			if v.snap {
				require.Equal(t, bdev.StatusInvalidRequest, st, what)
				break
			}
			require.Equal(t, bdev.StatusOK, st, what)
			copy(v.data[lba*bs:], b)
		case op < 65:
			v := pick(writable)
			if v == nil {
				continue
			}
			open(v)
			lba, n := span(v)
			o := bdev.OpWriteZeroes
			if rng.IntN(2) == 0 {
				o = bdev.OpUnmap
				if rng.IntN(2) == 0 && uint64(len(v.data)) >= 2*poolCluster {
					// Whole clusters: a thin volume gives them back.
					lba, n = rng.Uint64N(uint64(len(v.data))/poolCluster-1)*cb, uint32(cb*(1+rng.Uint64N(2)))
					n = min(n, uint32(uint64(len(v.data))/bs-lba))
				}
			}
			what = fmt.Sprintf("%v %s %d+%d", o, v.name, lba, n)
			require.Equal(t, bdev.StatusOK, v.cl.Do(t, o, lba, n, nil), what)
			clear(v.data[lba*bs : (lba+uint64(n))*bs])
		case op < 97:
			v := pick(any)
			if v == nil {
				continue
			}
			open(v)
			lba, n := span(v)
			what = fmt.Sprintf("read %s %d+%d", v.name, lba, n)
			require.Equal(t, bdev.StatusOK, v.cl.Do(t, bdev.OpRead, lba, n, got[:n*bs]), what)
			if want := v.data[lba*bs : (lba+uint64(n))*bs]; !bytes.Equal(want, got[:n*bs]) {
				for i := range n {
					if !bytes.Equal(want[i*bs:(i+1)*bs], got[i*bs:(i+1)*bs]) {
						for _, h := range hist {
							t.Log(h)
						}
						t.Fatalf("step %d: %s: block %d differs from the model (zero %v)", step, what, lba+uint64(i), bytes.Equal(got[i*bs:(i+1)*bs], make([]byte, bs)))
					}
				}
			}
		default:
			v := pick(func(v *modelVol) bool { return v.dev != nil })
			if v == nil {
				continue
			}
			what = "close " + v.name
			closeVol(v)
		}
		if what != "" {
			hist = append(hist, fmt.Sprintf("%d: %s", step, what))
			kind, _, _ := strings.Cut(what, " ")
			counts[kind]++
		}
		if step%100 == 0 || what == "reopen" {
			errs := s.Check()
			require.Empty(t, errs, "step %d after %s: %v", step, what, errs)
		}
	}
	// Every volume read whole against the model, after a last reopen.
	for _, v := range vols {
		closeVol(v)
	}
	require.NoError(t, s.Close())
	s, err := Open(dev, g.Get(0))
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	requireChecks(t, s)
	whole := bdevtest.Buffers(t, 17*poolCluster)
	for _, v := range vols {
		open(v)
		n := uint32(len(v.data) / bs)
		require.Equal(t, bdev.StatusOK, v.cl.Do(t, bdev.OpRead, 0, n, whole[:len(v.data)]))
		require.True(t, bytes.Equal(v.data, whole[:len(v.data)]), "volume %s", v.name)
		closeVol(v)
	}
}
