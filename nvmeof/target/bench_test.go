package target_test

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/bench"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

// BenchmarkQD1Read4K is a 4 KiB read round trip over loopback through the
// Go host and the target on a RAM namespace: ns/op is the latency at queue
// depth 1, allocs/op the allocations of host and target together.
func BenchmarkQD1Read4K(b *testing.B) {
	c := connect(b, newFixture(b, nil), host.Config{})
	l := &looper{q: c.IOQueues()[0], done: make(chan struct{}, 1)}
	l.req.Callback = l.callback
	l.req.SetRead(1, 8, 8, make([]byte, 4096))
	b.ReportAllocs()
	b.ResetTimer()
	l.left = b.N
	l.q.Submit(&l.req)
	<-l.done
}

// BenchmarkRandRead4KQD32 drives 4 KiB random reads at queue depth 32 from
// the Go host to the target, one queue, on a null namespace and on a file
// (256 MiB, written in full, in the test's temporary directory): ns/op is
// the time per I/O, so 1e9/ns/op is IOPS with the generator and the target
// sharing this machine's cores. Profile it with -cpuprofile.
func BenchmarkRandRead4KQD32(b *testing.B) {
	b.Run("null", func(b *testing.B) {
		dev, _ := null.New("null", 1<<30, 512)
		randRead4KQD32(b, dev)
	})
	b.Run("file", func(b *testing.B) {
		// Written in 1 MiB pieces: a 256 MiB buffer would keep the GC busy
		// during the measurement.
		path := filepath.Join(b.TempDir(), "ns.img")
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		chunk := bytes.Repeat([]byte{0x5a}, 1<<20)
		for range 256 {
			if _, err := f.Write(chunk); err != nil {
				b.Fatal(err)
			}
		}
		if err := f.Close(); err != nil {
			b.Fatal(err)
		}
		dev, err := file.Open("file", file.Options{Path: path})
		if err != nil {
			b.Fatal(err)
		}
		defer dev.Close()
		randRead4KQD32(b, dev)
	})
}

func randRead4KQD32(b *testing.B, dev bdev.Device) {
	restoreProcs(b)
	g, err := reactor.StartGroup([]int{0}, reactor.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	// Quiet: the benchmark's output is parsed line by line.
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tg := target.New(g, target.Config{Logger: log})
	defer tg.Close()
	if err := tg.AddSubsystem(target.SubsystemConfig{NQN: testNQN, Serial: "B", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: dev}}}); err != nil {
		b.Fatal(err)
	}
	addr, err := tg.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	c, err := host.Connect(ctx(b), addr.String(), testNQN, host.Config{QueueDepth: 33})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	in := dev.Info()
	b.ReportAllocs()
	b.ResetTimer()
	res, err := bench.RunRemote(c.IOQueues(), bench.Namespace{ID: 1, BlockSize: in.BlockSize, Blocks: in.Blocks},
		bench.Job{Pattern: bench.RandRead, BlockSize: 4096, QueueDepth: 32, IOs: uint64(b.N)})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.IOPS, "IOPS")
	b.ReportMetric(res.LatP99Us, "p99-us")
}
