package bench

import (
	"runtime"
	"testing"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/reactor"
)

// The local bdev path per I/O: generator → channel → device → completion,
// all on one reactor, 4 KiB random reads at QD 32. ns/op is per I/O.
func BenchmarkLocalPath4KQD32(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func() (bdev.Device, error)
	}{
		{"null", func() (bdev.Device, error) { return null.New("null", 1<<30, 512) }},
		{"malloc", func() (bdev.Device, error) { return malloc.New("ram", 64<<20, 512) }},
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
			ch, err := bdev.Open(dev, r)
			if err != nil {
				b.Fatal(err)
			}
			defer r.Call(func(*reactor.Reactor) error { return ch.Close() })
			b.ReportAllocs()
			b.ResetTimer()
			res, err := RunLocal(ch, Job{Pattern: RandRead, BlockSize: 4096, QueueDepth: 32, IOs: uint64(b.N), Seed: 1})
			if err != nil || res.Errors > 0 {
				b.Fatal(err, res.Errors)
			}
		})
	}
}
