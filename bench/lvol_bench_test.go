package bench

// The volume store's benchmarks (bdev/lvol), run by make bench
// (scripts/bench.sh) with -benchtime 1x -v: each one logs the rows of its
// table in docs/benchmarks.md ("| ... |" lines) and reports its headline
// figures as metrics. Pools are files driven through io_uring (the uring
// device, bdev/file), one in tmpfs, where the device costs almost nothing
// and a ratio is the store's software cost, and one on the disk.
//
// Env (each has a default that keeps the whole set within about two
// minutes on a 2-core machine): LVOL_SECS per measured run (1), LVOL_ROUNDS
// interleaved rounds, medians taken (5), LVOL_FIRST_ROUNDS for the first-write
// table (3), LVOL_TMPFS_DIR (/dev/shm), LVOL_DISK_DIR ($BENCH_DIR, else
// .cache/bench), LVOL_VOLUME bytes of each volume compared with the pool (1 GiB),
// LVOL_SNAPSHOTS (20), CORE for the I/O reactor (0) and GEN_CORE for the
// store's metadata reactor (1).

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/lvol"
	"github.com/strata-storage/strata/bdev/lvol/clmap"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// lvolQD is the queue depth of the in-place comparisons and of the load
// behind snapshots.
const lvolQD = 32

// lvolPoolSlack is what a pool file holds beyond its volumes: superblocks,
// journal (1/256 of the device, at most 64 MiB) and metadata region.
const lvolPoolSlack = 256 << 20

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func envCore(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v >= 0 {
		return v
	}
	return def
}

func envBytes(name string, def uint64) uint64 {
	if s := os.Getenv(name); s != "" {
		if v, err := bdev.ParseSize(s); err == nil && v > 0 {
			return v
		}
	}
	return def
}

func lvolSecs() time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv("LVOL_SECS"), 64); err == nil && v > 0 {
		return time.Duration(v * float64(time.Second))
	}
	return time.Second
}

// lvolStore is a place for pool files.
type lvolStore struct{ name, dir string }

// lvolStores returns tmpfs and the disk, each a fresh directory removed at
// the end of the benchmark.
func lvolStores(b *testing.B) []lvolStore {
	disk := os.Getenv("LVOL_DISK_DIR")
	if disk == "" {
		disk = os.Getenv("BENCH_DIR")
	}
	if disk == "" {
		disk = "../.cache/bench"
	}
	tmpfs := os.Getenv("LVOL_TMPFS_DIR")
	if tmpfs == "" {
		tmpfs = "/dev/shm"
	}
	var out []lvolStore
	for _, st := range []lvolStore{{"tmpfs", tmpfs}, {"disk", disk}} {
		if err := os.MkdirAll(st.dir, 0o755); err != nil {
			b.Fatal(err)
		}
		dir, err := os.MkdirTemp(st.dir, "lvol-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(dir) })
		out = append(out, lvolStore{st.name, dir})
	}
	return out
}

// lvolReactors starts the I/O reactor (CORE) and the store's metadata
// reactor (GEN_CORE), unpinned where the process may not use those cores.
func lvolReactors(b *testing.B) (io, meta *reactor.Reactor) {
	allowed, err := reactor.AllowedCores()
	if err != nil {
		b.Fatal(err)
	}
	cores := []int{envCore("CORE", 0), envCore("GEN_CORE", 1)}
	for i, c := range cores {
		if !slices.Contains(allowed, c) {
			cores[i] = -1
		}
	}
	// Starting reactors raises GOMAXPROCS; put it back for the benchmarks
	// that follow.
	procs := runtime.GOMAXPROCS(0)
	g, err := reactor.StartGroup(cores, reactor.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Stop(); runtime.GOMAXPROCS(procs) })
	return g.Get(0), g.Get(1)
}

// lvolPool is a pool file formatted as a volume store.
type lvolPool struct {
	path string
	dev  *file.Device
	s    *lvol.Store
	vols []*lvol.Volume
	chs  []*bdev.Channel
}

func newLvolPool(b *testing.B, path string, size, cluster uint64, meta *reactor.Reactor) *lvolPool {
	os.Remove(path) // a fresh, sparse file
	dev, err := file.Open("pool", file.Options{Path: path, Size: size})
	if err != nil {
		b.Fatal(err)
	}
	s, err := lvol.Create(dev, meta, lvol.CreateOptions{ClusterSize: cluster})
	if err != nil {
		dev.Close()
		b.Fatal(err)
	}
	return &lvolPool{path: path, dev: dev, s: s}
}

// volume creates a volume and opens a channel to it on r.
func (p *lvolPool) volume(b *testing.B, spec lvol.VolumeSpec, r *reactor.Reactor) *bdev.Channel {
	if _, err := p.s.CreateVolume(spec); err != nil {
		b.Fatal(err)
	}
	v, err := p.s.OpenVolume(spec.Name)
	if err != nil {
		b.Fatal(err)
	}
	p.vols = append(p.vols, v)
	return p.channel(b, v, r)
}

func (p *lvolPool) channel(b *testing.B, dev bdev.Device, r *reactor.Reactor) *bdev.Channel {
	ch, err := bdev.Open(dev, r)
	if err != nil {
		b.Fatal(err)
	}
	p.chs = append(p.chs, ch)
	return ch
}

// close closes channels, volumes, the store and the device, and removes
// the file.
func (p *lvolPool) close(b *testing.B) {
	for _, ch := range p.chs {
		if err := ch.Reactor().Call(func(*reactor.Reactor) error { return ch.Close() }); err != nil {
			b.Error(err)
		}
	}
	for _, v := range p.vols {
		if err := v.Close(); err != nil {
			b.Error(err)
		}
	}
	if err := p.s.Close(); err != nil {
		b.Error(err)
	}
	if err := p.dev.Close(); err != nil {
		b.Error(err)
	}
	os.Remove(p.path)
}

// runOK runs job and fails the benchmark on an error or a failed I/O.
func runOK(b *testing.B, ch *bdev.Channel, job Job) Result {
	res, err := RunLocal(ch, job)
	if err != nil {
		b.Fatal(err)
	}
	if res.Errors > 0 {
		b.Fatalf("%s: %d I/O errors", res.Job, res.Errors)
	}
	return res
}

// writeWhole writes span bytes of ch (from offset) once, in 128 KiB writes.
func writeWhole(b *testing.B, ch *bdev.Channel, span, offset uint64) {
	const bs = 128 << 10
	runOK(b, ch, Job{Pattern: Write, BlockSize: bs, QueueDepth: 8, IOs: span / bs, Span: span, Offset: offset, Verify: true, Seed: 7})
}

func medianOf(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// quantileOf returns the q quantile of xs (nearest rank).
func quantileOf(xs []float64, q float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	i := int(math.Ceil(q*float64(len(s)))) - 1
	return s[max(i, 0)]
}

func joinf(xs []float64, format string) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = fmt.Sprintf(format, x)
	}
	return strings.Join(parts, " ")
}

// BenchmarkLvolVsPool compares 4 KiB random reads and writes at QD 32
// through a thick volume and through a thin one written whole (every
// cluster allocated: the in-place path) with the same load on the pool's
// own device, over the very bytes the thick volume maps (the first volume
// of an empty pool gets the first clusters of the data region; checked).
// Rounds interleave raw, thick, thin; medians of the rounds, ratios of IOPS
// against raw. Target: >= 0.97.
func BenchmarkLvolVsPool(b *testing.B) {
	secs, rounds := lvolSecs(), envInt("LVOL_ROUNDS", 5)
	volBytes := envBytes("LVOL_VOLUME", 1<<30)
	io, meta := lvolReactors(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, st := range lvolStores(b) {
			p := newLvolPool(b, filepath.Join(st.dir, "pool.img"), 2*volBytes+lvolPoolSlack, format.DefaultClusterSize, meta)
			thick := p.volume(b, lvol.VolumeSpec{Name: "thick", Size: volBytes}, io)
			thin := p.volume(b, lvol.VolumeSpec{Name: "thin", Size: volBytes, Thin: true}, io)
			raw := p.channel(b, p.dev, io)
			dataOff := p.s.Layout().DataOff
			// Written whole, so that reads touch data (not holes) on every
			// path, and every cluster of the thin volume is allocated.
			writeWhole(b, thick, volBytes, 0)
			writeWhole(b, thin, volBytes, 0)
			checkSameBytes(b, raw, thick, dataOff)
			for _, pat := range []Pattern{RandRead, RandWrite} {
				devs := []struct {
					name   string
					ch     *bdev.Channel
					offset uint64
				}{{"raw", raw, dataOff}, {"thick", thick, 0}, {"thin", thin, 0}}
				iops := make([][]float64, len(devs))
				p99 := make([][]float64, len(devs))
				for r := range rounds {
					for i, d := range devs {
						res := runOK(b, d.ch, Job{Pattern: pat, BlockSize: 4096, QueueDepth: lvolQD, Duration: secs, Span: volBytes, Offset: d.offset, Seed: uint64(r + 1)})
						iops[i] = append(iops[i], res.IOPS)
						p99[i] = append(p99[i], res.LatP99Us)
					}
				}
				m := func(i int) float64 { return medianOf(iops[i]) }
				thickRatio, thinRatio := m(1)/m(0), m(2)/m(0)
				b.Logf("| %s | %s | %.0f | %.0f | %.0f | **%.3f** | **%.3f** | %.0f / %.0f / %.0f | %s / %s / %s |",
					st.name, pat, m(0), m(1), m(2), thickRatio, thinRatio,
					medianOf(p99[0]), medianOf(p99[1]), medianOf(p99[2]),
					joinf(iops[0], "%.0f"), joinf(iops[1], "%.0f"), joinf(iops[2], "%.0f"))
				b.ReportMetric(thickRatio, fmt.Sprintf("ratio-thick-%s-%s", st.name, pat))
				b.ReportMetric(thinRatio, fmt.Sprintf("ratio-thin-%s-%s", st.name, pat))
			}
			p.close(b)
		}
	}
}

// checkSameBytes makes sure that the pool's bytes at dataOff are the thick
// volume's first block: the raw baseline covers what the volume maps.
func checkSameBytes(b *testing.B, raw, thick *bdev.Channel, dataOff uint64) {
	mem, err := iomem.Map(2 * 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer mem.Unmap()
	a, v := mem.Bytes()[:4096], mem.Bytes()[4096:8192]
	blocks := uint32(4096 / raw.Info().BlockSize)
	for _, x := range []struct {
		ch  *bdev.Channel
		lba uint64
		buf []byte
	}{{raw, dataOff / uint64(raw.Info().BlockSize), a}, {thick, 0, v}} {
		done := make(chan bdev.Status, 1)
		req := &bdev.Request{Op: bdev.OpRead, LBA: x.lba, Blocks: blocks, Buf: x.buf, Callback: func(r *bdev.Request) { done <- r.Status }}
		if err := x.ch.Reactor().Post(reactor.TaskFunc(func(*reactor.Reactor) { x.ch.Submit(req) })); err != nil {
			b.Fatal(err)
		}
		if st := <-done; st != bdev.StatusOK {
			b.Fatal(st)
		}
	}
	if !Check(a[:thick.Info().BlockSize], 0, 7) || string(a) != string(v) {
		b.Fatal("the pool's first data cluster is not the thick volume's first: the raw baseline would measure other bytes")
	}
}

// BenchmarkLvolThinFirstWrite measures 4 KiB writes into unallocated
// clusters of a thin volume (each write in a cluster of its own: a stride
// of one cluster; the store allocates it, zeroes the rest, flushes the
// pool and journals the mapping before it answers) against the same
// writes once those clusters are allocated (in place), for cluster sizes
// of 64 KiB, 1 MiB and 4 MiB, at QD 1 and 32. Each round is a fresh pool
// file: first the pass into unallocated clusters (as many as fit in half
// of LVOL_SECS, at most 16 GiB of them), then writes over the clusters it
// allocated for as long. Medians of the rounds.
func BenchmarkLvolThinFirstWrite(b *testing.B) {
	pass, rounds := lvolSecs()/2, envInt("LVOL_FIRST_ROUNDS", 3)
	const allocBytesMax = 16 << 30 // on the disk, the pool file's zeroed clusters take space
	io, meta := lvolReactors(b)
	b.ReportAllocs()
	for b.Loop() {
		for _, st := range lvolStores(b) {
			for _, cs := range []uint64{64 << 10, 1 << 20, 4 << 20} {
				for _, qd := range []int{1, 32} {
					var first, alloc [3][]float64 // IOPS, p50, p99
					var clusters []float64
					for r := range rounds {
						p := newLvolPool(b, filepath.Join(st.dir, "pool.img"), allocBytesMax+lvolPoolSlack, cs, meta)
						ch := p.volume(b, lvol.VolumeSpec{Name: "thin", Size: allocBytesMax, Thin: true}, io)
						job := Job{Pattern: Write, BlockSize: 4096, QueueDepth: qd, Duration: pass, IOs: allocBytesMax / cs, Stride: cs, Seed: uint64(r + 1)}
						f := runOK(b, ch, job)
						// The same writes again, round and round the clusters
						// the first pass allocated.
						job.IOs, job.Span = 0, f.IOs*cs
						a := runOK(b, ch, job)
						for i, v := range []float64{f.IOPS, f.LatP50Us, f.LatP99Us} {
							first[i] = append(first[i], v)
						}
						for i, v := range []float64{a.IOPS, a.LatP50Us, a.LatP99Us} {
							alloc[i] = append(alloc[i], v)
						}
						clusters = append(clusters, float64(f.IOs))
						p.close(b)
					}
					ratio := medianOf(first[0]) / medianOf(alloc[0])
					b.Logf("| %s | %d KiB | %d | %.0f | %.0f | %.0f | %.0f | %.0f | %.0f | **%.3f** | %s / %s |",
						st.name, cs>>10, qd, medianOf(first[0]), medianOf(first[1]), medianOf(first[2]),
						medianOf(alloc[0]), medianOf(alloc[1]), medianOf(alloc[2]), ratio,
						joinf(first[0], "%.0f"), joinf(clusters, "%.0f"))
					name := fmt.Sprintf("%s-%dK-qd%d", st.name, cs>>10, qd)
					b.ReportMetric(medianOf(first[0]), "first-IOPS-"+name)
					b.ReportMetric(medianOf(first[2]), "first-p99-us-"+name)
					b.ReportMetric(ratio, "first/alloc-"+name)
				}
			}
		}
	}
}

// BenchmarkLvolSnapshotUnderLoad takes LVOL_SNAPSHOTS snapshots, 100 ms
// (LVOL_SNAP_INTERVAL_MS) apart, of a thin volume (64 MiB, written whole, default cluster size)
// under 4 KiB random writes at QD 32, and reports the I/O pause each
// Snapshot returns (quiesce, pool flush, durable record, resume) and the
// whole call's latency, and the load's IOPS and p99 in the run with the
// snapshots against runs of the same length without, before and after.
// After each snapshot the volume's clusters are shared: its next write
// into each is a copy on write, which the load's figures include.
func BenchmarkLvolSnapshotUnderLoad(b *testing.B) {
	n := envInt("LVOL_SNAPSHOTS", 20)
	interval := time.Duration(envInt("LVOL_SNAP_INTERVAL_MS", 100)) * time.Millisecond
	volBytes := envBytes("LVOL_SNAP_VOLUME", 64<<20)
	io, meta := lvolReactors(b)
	load := Job{Pattern: RandWrite, BlockSize: 4096, QueueDepth: lvolQD, Duration: time.Duration(n+1) * interval, Seed: 3}
	b.ReportAllocs()
	for b.Loop() {
		for _, st := range lvolStores(b) {
			// Room for the volume and a copy per snapshot.
			p := newLvolPool(b, filepath.Join(st.dir, "pool.img"), uint64(n+2)*volBytes+lvolPoolSlack, format.DefaultClusterSize, meta)
			ch := p.volume(b, lvol.VolumeSpec{Name: "v", Size: volBytes, Thin: true}, io)
			writeWhole(b, ch, volBytes, 0)
			before := runOK(b, ch, load)
			var pauses, calls []float64
			type outcome struct {
				res Result
				err error
			}
			got := make(chan outcome, 1)
			go func() {
				res, err := RunLocal(ch, load)
				got <- outcome{res, err}
			}()
			t0 := time.Now()
			for i := range n {
				time.Sleep(time.Until(t0.Add(time.Duration(i+1) * interval)))
				c0 := time.Now()
				_, paused, err := p.s.Snapshot(context.Background(), "v", fmt.Sprintf("s%d", i))
				if err != nil {
					b.Fatal(err)
				}
				calls = append(calls, float64(time.Since(c0).Microseconds()))
				pauses = append(pauses, float64(paused.Microseconds()))
			}
			late := time.Since(t0) > load.Duration
			o := <-got
			if o.err != nil || o.res.Errors > 0 {
				b.Fatalf("the load under snapshots: %v, %d I/O errors", o.err, o.res.Errors)
			}
			during := o.res
			after := runOK(b, ch, load)
			if late {
				b.Logf("%s: the snapshots outlasted the load", st.name)
			}
			baseP99 := medianOf([]float64{before.LatP99Us, after.LatP99Us})
			baseIOPS := medianOf([]float64{before.IOPS, after.IOPS})
			pausesMs := make([]float64, len(pauses))
			for i, us := range pauses {
				pausesMs[i] = us / 1e3
			}
			b.Logf("| %s | %d | %.0f | %.0f | %.0f | %.0f | %.0f / %.0f | %.0f / %.0f | %.0f / %.0f | %s |",
				st.name, n, medianOf(pauses), quantileOf(pauses, 0.99), medianOf(calls), quantileOf(calls, 0.99),
				during.IOPS, baseIOPS, during.LatP99Us, baseP99, during.LatMaxUs, max(before.LatMaxUs, after.LatMaxUs),
				joinf(pausesMs, "%.1f"))
			b.ReportMetric(medianOf(pauses), "pause-p50-us-"+st.name)
			b.ReportMetric(quantileOf(pauses, 0.99), "pause-p99-us-"+st.name)
			b.ReportMetric(during.LatP99Us/baseP99, "load-p99-ratio-"+st.name)
			p.close(b)
		}
	}
}

// BenchmarkLvolMetadataMemory measures the Go heap the store's tables take
// on a pool of 1 TiB of 1 MiB clusters (a sparse file in tmpfs, where a
// thick volume's zeroing punches holes into holes): the store alone
// (reference counts, free bitmap), then a thick volume of 1 TiB (its map,
// every page allocated), a snapshot of it (pages shared) and an empty thin
// volume of 1 TiB; and compares them with what the format's sizes predict.
// The reactors' mapped I/O buffers are not Go heap and not counted.
func BenchmarkLvolMetadataMemory(b *testing.B) {
	const tib = 1 << 40
	const cs = format.DefaultClusterSize
	const clusters = tib / cs
	_, meta := lvolReactors(b)
	dir := lvolStores(b)[0].dir // tmpfs
	heap := func() float64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return float64(ms.HeapAlloc)
	}
	b.ReportAllocs()
	for b.Loop() {
		h0 := heap()
		p := newLvolPool(b, filepath.Join(dir, "pool.img"), tib+lvolPoolSlack, cs, meta)
		h1 := heap()
		if _, err := p.s.CreateVolume(lvol.VolumeSpec{Name: "thick", Size: tib}); err != nil {
			b.Fatal(err)
		}
		h2 := heap()
		if _, _, err := p.s.Snapshot(context.Background(), "thick", "snap"); err != nil {
			b.Fatal(err)
		}
		h3 := heap()
		if _, err := p.s.CreateVolume(lvol.VolumeSpec{Name: "thin", Size: tib, Thin: true}); err != nil {
			b.Fatal(err)
		}
		h4 := heap()
		pool := float64(p.s.Stats().Capacity) / tib // TiB of data clusters
		p.close(b)

		// What the format says, per TiB: a 4-byte reference count per
		// cluster and a bit of the free bitmap; a map of 4-byte entries in
		// pages of clmap.PageEntries, plus a page pointer per page.
		pages := float64(clusters / clmap.PageEntries)
		storeCalc := (4 + 1.0/8) * clusters
		mapCalc := 4*float64(clusters) + 8*pages
		rows := []struct {
			what       string
			calc, meas float64
		}{
			{"store, no volumes (per TiB of pool)", storeCalc, (h1 - h0) / pool},
			{"thick volume's map (per TiB of volume)", mapCalc, h2 - h1},
			{"snapshot of it (pages shared)", 8 * pages, h3 - h2},
			{"empty thin volume (per TiB of volume)", 8 * pages, h4 - h3},
			{"pool of 1 TiB with a 1 TiB thick volume", storeCalc + mapCalc, (h1-h0)/pool + h2 - h1},
		}
		for _, r := range rows {
			b.Logf("| %s | %.0f (%.2f MiB) | %.0f (%.2f MiB) |", r.what, r.calc, r.calc/(1<<20), r.meas, r.meas/(1<<20))
		}
		b.ReportMetric((h1-h0)/pool+h2-h1, "heap-bytes/TiB")
		b.ReportMetric(storeCalc+mapCalc, "format-bytes/TiB")
	}
}
