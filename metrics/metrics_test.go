package metrics_test

import (
	"context"
	"io"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/engine/enginetest"
	"github.com/strata-storage/strata/metrics"
	"github.com/strata-storage/strata/reactor"
)

// sample returns every gathered sample as "name{label=value,...}" -> value.
func sample(t *testing.T, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	mfs, err := g.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := mf.GetName() + "{" + strings.Join(labels, ",") + "}"
			switch {
			case m.Counter != nil:
				out[key] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[key] = m.Gauge.GetValue()
			case m.Histogram != nil:
				h := m.Histogram
				out[mf.GetName()+"_count{"+strings.Join(labels, ",")+"}"] = float64(h.GetSampleCount())
				out[mf.GetName()+"_sum{"+strings.Join(labels, ",")+"}"] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					le := strconv.FormatFloat(b.GetUpperBound(), 'g', -1, 64)
					bl := append(slices.Clone(labels), "le="+le)
					sort.Strings(bl)
					out[mf.GetName()+"_bucket{"+strings.Join(bl, ",")+"}"] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return out
}

func TestVolumeCountersShowExactlyTheIO(t *testing.T) {
	g := bdevtest.Reactors(t)
	x := enginetest.NewExporter(g.Get(0))
	e, err := engine.Open(engine.Config{DataDir: t.TempDir(), Reactors: g, Exporter: x, SampleInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	ctx := context.Background()
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "p", URI: "malloc:///?size=16MiB"})
	require.NoError(t, err)
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 4 << 20})
	require.NoError(t, err)
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "idle", Pool: "p", SizeBytes: 1 << 20})
	require.NoError(t, err)
	_, _, err = e.CreateShare(ctx, engine.ShareSpec{Volume: "idle", NQN: "nqn.2024-01.io.strata:idle", Listeners: []string{"127.0.0.1:4420"}, AllowAnyHost: true})
	require.NoError(t, err)
	x.SetSessions("nqn.2024-01.io.strata:idle", 2, 1)

	reg, apiErrors := metrics.NewRegistry(e, nil)
	apiErrors.Inc("conflict")
	apiErrors.Inc("conflict")
	before := sample(t, reg)

	dev, err := e.VolumeDevice("v")
	require.NoError(t, err)
	c := bdevtest.Open(t, dev, g.Get(g.Len()-1))
	buf := bdevtest.Buffers(t, 16*4096)
	for range 7 {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 8, 4, buf[:4*4096]))
	}
	for range 3 {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 16, buf))
	}
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, 0, 2, nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, 0, 2, nil))
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, 1024, 1, buf[:4096]))

	after := sample(t, reg)
	v := func(name string) float64 { return after[name+"{pool=p,volume=v}"] - before[name+"{pool=p,volume=v}"] }
	require.Equal(t, 7.0, v("strata_volume_write_ops_total"))
	require.Equal(t, 7.0*4*4096, v("strata_volume_write_bytes_total"))
	require.Equal(t, 3.0, v("strata_volume_read_ops_total"))
	require.Equal(t, 3.0*16*4096, v("strata_volume_read_bytes_total"))
	require.Equal(t, 1.0, v("strata_volume_flush_ops_total"))
	require.Equal(t, 1.0, v("strata_volume_write_zeroes_ops_total"))
	require.Equal(t, 1.0, v("strata_volume_unmap_ops_total"))
	require.Equal(t, 1.0, v("strata_volume_errors_total"))
	require.Equal(t, 3.0, v("strata_volume_read_latency_seconds_count"), "the histogram counts successful reads only")
	require.Equal(t, 7.0, v("strata_volume_write_latency_seconds_count"))
	require.Greater(t, v("strata_volume_read_latency_seconds_sum"), 0.0)
	require.Greater(t, v("strata_volume_write_latency_seconds_sum"), 0.0)
	require.Less(t, v("strata_volume_write_latency_seconds_sum"), 5.0)
	// Buckets are cumulative and end with every write.
	require.Equal(t, 7.0, after["strata_volume_write_latency_seconds_bucket{le=4.194304,pool=p,volume=v}"])
	require.LessOrEqual(t, after["strata_volume_write_latency_seconds_bucket{le=8e-06,pool=p,volume=v}"],
		after["strata_volume_write_latency_seconds_bucket{le=1.6e-05,pool=p,volume=v}"])
	require.Equal(t, 0.0, before["strata_volume_write_ops_total{pool=p,volume=v}"], "a new volume starts at zero")
	require.Equal(t, 0.0, after["strata_volume_write_ops_total{pool=p,volume=idle}"], "other volumes see none of it")
	require.Equal(t, float64(4<<20), after["strata_volume_size_bytes{pool=p,volume=v}"])
	require.Equal(t, 1.0, after["strata_volume_up{pool=p,volume=v}"])
	require.Equal(t, float64(16<<20), after["strata_pool_capacity_bytes{pool=p}"])
	require.Equal(t, float64(11<<20), after["strata_pool_free_bytes{pool=p}"])
	require.Equal(t, 1.0, after["strata_pool_up{pool=p}"])
	require.Equal(t, 2.0, after["strata_share_connections{share=idle}"])
	require.Equal(t, 1.0, after["strata_share_controllers{share=idle}"])
	require.Equal(t, 1.0, after["strata_target_available{}"])
	require.Equal(t, 2.0, after["strata_api_errors_total{code=conflict}"])
	for i := range g.Len() {
		key := "{core=" + itoa(g.Get(i).Core()) + ",reactor=" + itoa(i) + "}"
		require.Contains(t, after, "strata_reactor_busy_seconds_total"+key)
		require.Greater(t, after["strata_reactor_busy_seconds_total"+key]+after["strata_reactor_idle_seconds_total"+key], 0.0)
	}
	require.Greater(t, after["strata_reactor_tasks_total{core="+itoa(g.Get(g.Len()-1).Core())+",reactor="+itoa(g.Len()-1)+"}"], 0.0)

	// Resizing grows the device in place, with the test's channel open:
	// the counters carry on.
	require.NoError(t, e.DeleteShare(ctx, "idle"))
	require.NoError(t, e.DeleteVolume(ctx, "idle"))
	_, err = e.ResizeVolume(ctx, "v", 5<<20)
	require.NoError(t, err)
	require.NoError(t, c.Ch.Reactor().Call(func(*reactor.Reactor) error { return c.Ch.Close() }))
	resized := sample(t, reg)
	require.Equal(t, after["strata_volume_write_ops_total{pool=p,volume=v}"], resized["strata_volume_write_ops_total{pool=p,volume=v}"])
	require.Equal(t, after["strata_volume_read_bytes_total{pool=p,volume=v}"], resized["strata_volume_read_bytes_total{pool=p,volume=v}"])
	require.Equal(t, float64(5<<20), resized["strata_volume_size_bytes{pool=p,volume=v}"])
	require.NotContains(t, resized, "strata_volume_size_bytes{pool=p,volume=idle}")
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestExposition(t *testing.T) {
	g := bdevtest.Reactors(t)
	e, err := engine.Open(engine.Config{DataDir: t.TempDir(), Reactors: g, SampleInterval: -1})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	_, _, err = e.CreatePool(context.Background(), engine.PoolSpec{Name: "p", URI: "null:///?size=1GiB"})
	require.NoError(t, err)
	reg, _ := metrics.NewRegistry(e, nil)
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP strata_pool_capacity_bytes Pool capacity.
# TYPE strata_pool_capacity_bytes gauge
strata_pool_capacity_bytes{pool="p"} 1.073741824e+09
# HELP strata_target_available 1 when an NVMe-oF target serves shares.
# TYPE strata_target_available gauge
strata_target_available 0
`), "strata_pool_capacity_bytes", "strata_target_available"))
	lint, err := testutil.GatherAndLint(reg)
	require.NoError(t, err)
	require.Empty(t, lint, "metric names follow Prometheus conventions")

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Contains(t, string(body), `strata_pool_free_bytes{pool="p"} 1.073741824e+09`)
	require.Contains(t, string(body), "go_goroutines")
}
