package bench

import (
	"errors"
	"runtime"
	"testing"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/reactor"
)

// The local bdev path per I/O: generator → channel → device → completion,
// all on one reactor, 4 KiB random reads at QD 32. ns/op is per I/O. The
// lvol cases put a volume of the volume store (bdev/lvol) on a malloc pool:
// their ns/op less malloc's is what the store's mapped path costs an I/O
// (thin: written whole first, so every cluster is allocated). Malloc and
// the lvol cases are written whole first: reads of memory never written
// would all hit the kernel's one zero page, cache-hot, and flatter a
// layer that adds cache misses of its own.
func BenchmarkLocalPath4KQD32(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func() (bdev.Device, error)
		thin bool // with lvol: a thin volume
		lvol bool
	}{
		{"null", func() (bdev.Device, error) { return null.New("null", 1<<30, 512) }, false, false},
		{"malloc", func() (bdev.Device, error) { return malloc.New("ram", 64<<20, 512) }, false, false},
		{"lvol-thick-on-malloc", func() (bdev.Device, error) { return malloc.New("ram", 160<<20, 512) }, false, true},
		{"lvol-thin-on-malloc", func() (bdev.Device, error) { return malloc.New("ram", 160<<20, 512) }, true, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			dev, err := tc.open()
			if err != nil {
				b.Fatal(err)
			}
			defer dev.Close()
			// Starting reactors raises GOMAXPROCS; put it back for the
			// benchmarks that follow.
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
			g, err := reactor.StartGroup([]int{-1}, reactor.Config{})
			if err != nil {
				b.Fatal(err)
			}
			defer g.Stop()
			r := g.Get(0)
			if tc.lvol {
				vol, done := lvolOn(b, dev, r, tc.thin)
				defer done()
				dev = vol
			}
			ch, err := bdev.Open(dev, r)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Call(func(*reactor.Reactor) error { return ch.Close() })
			if tc.name != "null" {
				writeWhole(b, ch, ch.Info().Size(), 0)
			}
			b.ReportAllocs()
			b.ResetTimer()
			res, err := RunLocal(ch, Job{Pattern: RandRead, BlockSize: 4096, QueueDepth: 32, IOs: uint64(b.N), Seed: 1})
			if err != nil || res.Errors > 0 {
				b.Fatal(err, res.Errors)
			}
		})
	}
}

// lvolOn formats pool as a volume store with r as its metadata reactor and
// returns a 64 MiB volume of it (the reactor is the I/O's too: as for a
// device stacked on another, one reactor) and what closes both.
func lvolOn(b *testing.B, pool bdev.Device, r *reactor.Reactor, thin bool) (*lvol.Volume, func()) {
	s, err := lvol.Create(pool, r, lvol.CreateOptions{})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.CreateVolume(lvol.VolumeSpec{Name: "v", Size: 64 << 20, Thin: thin}); err != nil {
		b.Fatal(err)
	}
	v, err := s.OpenVolume("v")
	if err != nil {
		b.Fatal(err)
	}
	return v, func() {
		if err := errors.Join(v.Close(), s.Close()); err != nil {
			b.Error(err)
		}
	}
}
