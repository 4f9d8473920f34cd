// Package metrics exposes the engine to Prometheus. A custom Collector
// reads the counters the engine and the reactors already keep when
// Prometheus scrapes, so metrics cost nothing on the I/O path.
//
// Latency is exported as histograms (strata_volume_read_latency_seconds
// and its write twin) built from the buckets every device channel keeps
// (bdev.LatencyHistogram: doubling from 8 µs), so histogram_quantile works
// and the I/O path pays one atomic add per request for it.
package metrics

import (
	"strconv"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/target"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/strata-storage/strata/engine"
)

const namespace = "strata"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName(namespace, "", name), help, labels, nil)
}

var (
	volumeLabels  = []string{"volume", "pool"}
	reactorLabels = []string{"reactor", "core"}

	volReadOps      = desc("volume_read_ops_total", "Reads completed successfully.", volumeLabels...)
	volWriteOps     = desc("volume_write_ops_total", "Writes completed successfully.", volumeLabels...)
	volFlushOps     = desc("volume_flush_ops_total", "Flushes completed successfully.", volumeLabels...)
	volZeroOps      = desc("volume_write_zeroes_ops_total", "Write Zeroes completed successfully.", volumeLabels...)
	volUnmapOps     = desc("volume_unmap_ops_total", "Unmaps (deallocations) completed successfully.", volumeLabels...)
	volReadBytes    = desc("volume_read_bytes_total", "Bytes read.", volumeLabels...)
	volWriteBytes   = desc("volume_write_bytes_total", "Bytes written.", volumeLabels...)
	volReadLatency  = desc("volume_read_latency_seconds", "Read latency, submit to completion.", volumeLabels...)
	volWriteLatency = desc("volume_write_latency_seconds", "Write latency, submit to completion.", volumeLabels...)
	volErrors       = desc("volume_errors_total", "Requests that failed, of any operation.", volumeLabels...)
	volSize         = desc("volume_size_bytes", "Volume size.", volumeLabels...)
	volUp           = desc("volume_up", "1 when the volume is online, 0 when faulted.", volumeLabels...)
	volAllocated    = desc("volume_allocated_bytes", "Pool space the volume holds: a thin volume's mapped clusters, shared ones included.", volumeLabels...)

	reactorBusy      = desc("reactor_busy_seconds_total", "Time the reactor spent in loop iterations that did work.", reactorLabels...)
	reactorIdle      = desc("reactor_idle_seconds_total", "Time the reactor spent spinning or asleep.", reactorLabels...)
	reactorSubmitted = desc("reactor_io_submitted_total", "io_uring operations submitted.", reactorLabels...)
	reactorCompleted = desc("reactor_io_completed_total", "io_uring completions handled.", reactorLabels...)
	reactorTasks     = desc("reactor_tasks_total", "Tasks run.", reactorLabels...)
	reactorWakeups   = desc("reactor_wakeups_total", "Times the reactor woke from sleep.", reactorLabels...)

	poolCapacity = desc("pool_capacity_bytes", "Pool capacity.", "pool")
	poolFree     = desc("pool_free_bytes", "Unallocated pool space.", "pool")
	poolUp       = desc("pool_up", "1 when the pool's device is open, 0 when faulted.", "pool")
	poolAlloc    = desc("pool_allocated_bytes", "Pool space in use: volumes, snapshots, and clusters on their way back.", "pool")
	poolCommit   = desc("pool_committed_bytes", "What the pool's volumes would hold if every one were full: above capacity, thin volumes overcommit it.", "pool")

	shareConnections = desc("share_connections", "Host connections (admin and I/O queue pairs) to the share's subsystem.", "share")
	shareControllers = desc("share_controllers", "Controllers (host sessions) of the share's subsystem.", "share")
	targetAvailable  = desc("target_available", "1 when an NVMe-oF target serves shares.")

	targetConnections   = desc("nvmeof_connections", "Open NVMe/TCP connections, of every subsystem and discovery.")
	targetControllers   = desc("nvmeof_controllers", "Live NVMe-oF controllers, of every subsystem.")
	targetFailed        = desc("nvmeof_failed_commands_total", "Commands completed with an error status, by status.", "status", "sct", "sc")
	targetFatalPDU      = desc("nvmeof_fatal_pdu_errors_total", "Connections closed for a malformed or out-of-spec PDU.")
	targetKeepAliveLost = desc("nvmeof_keep_alive_expiries_total", "Controllers torn down because their host went silent past the keep-alive timeout.")
	targetRefused       = desc("nvmeof_refused_connections_total", "Connections closed at accept because the target's connection limit was reached.")
	targetQueueBuffers  = desc("nvmeof_queue_buffer_bytes", "Address space the I/O queues hold for command and receive buffers (touched only as used).")
)

// latencyBounds are the histogram bucket upper bounds in seconds.
var latencyBounds = func() []float64 {
	b := make([]float64, bdev.LatencyBuckets-1)
	for i := range b {
		b[i] = float64(bdev.LatencyBucketBound(i)) / 1e9
	}
	return b
}()

// latencyHistogram turns a device's latency buckets into a Prometheus
// histogram: cumulative counts by upper bound, and the sum.
func latencyHistogram(d *prometheus.Desc, h bdev.LatencyHistogram, sumNs uint64, labels ...string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(latencyBounds))
	var n uint64
	for i, c := range h {
		n += c
		if i < len(latencyBounds) {
			buckets[latencyBounds[i]] = n
		}
	}
	return prometheus.MustNewConstHistogram(d, n, float64(sumNs)/1e9, buckets, labels...)
}

// Collector reads the engine's counters at scrape time.
type Collector struct{ e *engine.Engine }

// NewCollector returns a collector of e.
func NewCollector(e *engine.Engine) *Collector { return &Collector{e: e} }

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		volReadOps, volWriteOps, volFlushOps, volZeroOps, volUnmapOps, volReadBytes, volWriteBytes,
		volReadLatency, volWriteLatency, volErrors, volSize, volUp, volAllocated,
		reactorBusy, reactorIdle, reactorSubmitted, reactorCompleted, reactorTasks, reactorWakeups,
		poolCapacity, poolFree, poolUp, poolAlloc, poolCommit, shareConnections, shareControllers, targetAvailable,
	} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, v := range c.e.VolumeIO() {
		s, l := v.Stats, []string{v.Name, v.Pool}
		counter(volReadOps, float64(s.ReadOps), l...)
		counter(volWriteOps, float64(s.WriteOps), l...)
		counter(volFlushOps, float64(s.FlushOps), l...)
		counter(volZeroOps, float64(s.ZeroOps), l...)
		counter(volUnmapOps, float64(s.UnmapOps), l...)
		counter(volReadBytes, float64(s.ReadBytes), l...)
		counter(volWriteBytes, float64(s.WriteBytes), l...)
		ch <- latencyHistogram(volReadLatency, s.ReadLatency, s.ReadLatencyNs, l...)
		ch <- latencyHistogram(volWriteLatency, s.WriteLatency, s.WriteLatencyNs, l...)
		counter(volErrors, float64(s.Errors), l...)
		gauge(volSize, float64(v.SizeBytes), l...)
		gauge(volUp, boolValue(v.Online), l...)
		gauge(volAllocated, float64(v.AllocatedBytes), l...)
	}
	for _, r := range c.e.Reactors() {
		l := []string{strconv.Itoa(r.ID), strconv.Itoa(r.Core)}
		counter(reactorBusy, float64(r.BusyNs)/1e9, l...)
		counter(reactorIdle, float64(r.IdleNs)/1e9, l...)
		counter(reactorSubmitted, float64(r.Submitted), l...)
		counter(reactorCompleted, float64(r.Completed), l...)
		counter(reactorTasks, float64(r.Tasks), l...)
		counter(reactorWakeups, float64(r.Wakeups), l...)
	}
	for _, p := range c.e.Pools() {
		gauge(poolCapacity, float64(p.CapacityBytes), p.Name)
		gauge(poolFree, float64(p.FreeBytes), p.Name)
		gauge(poolUp, boolValue(p.State == engine.StateOnline), p.Name)
		gauge(poolAlloc, float64(p.AllocatedBytes), p.Name)
		gauge(poolCommit, float64(p.CommittedBytes), p.Name)
	}
	for share, n := range c.e.ShareSessions() {
		gauge(shareConnections, float64(n.Connections), share)
		gauge(shareControllers, float64(n.Controllers), share)
	}
	gauge(targetAvailable, boolValue(c.e.ExporterAvailable()))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// TargetCollector reads the NVMe/TCP target's counters at scrape time.
type TargetCollector struct{ t *target.Target }

// NewTargetCollector returns a collector of t.
func NewTargetCollector(t *target.Target) *TargetCollector { return &TargetCollector{t: t} }

// Describe implements prometheus.Collector.
func (c *TargetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{targetConnections, targetControllers, targetFailed, targetFatalPDU, targetKeepAliveLost, targetRefused, targetQueueBuffers} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *TargetCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.t.Stats()
	ch <- prometheus.MustNewConstMetric(targetConnections, prometheus.GaugeValue, float64(st.Connections))
	ch <- prometheus.MustNewConstMetric(targetControllers, prometheus.GaugeValue, float64(st.Controllers))
	ch <- prometheus.MustNewConstMetric(targetFatalPDU, prometheus.CounterValue, float64(st.FatalPDUErrors))
	ch <- prometheus.MustNewConstMetric(targetKeepAliveLost, prometheus.CounterValue, float64(st.KeepAliveExpiries))
	ch <- prometheus.MustNewConstMetric(targetRefused, prometheus.CounterValue, float64(st.RefusedConnections))
	ch <- prometheus.MustNewConstMetric(targetQueueBuffers, prometheus.GaugeValue, float64(st.QueueBufferBytes))
	for status, n := range c.t.FailedCommands() {
		ch <- prometheus.MustNewConstMetric(targetFailed, prometheus.CounterValue, float64(n),
			status.Name(), strconv.Itoa(int(status.Type())), strconv.Itoa(int(status.Code())))
	}
}

// APIErrors counts the control API's error answers by code
// (strata_api_errors_total{code}); Inc fits api.Options.OnError.
type APIErrors struct{ vec *prometheus.CounterVec }

// Inc counts one error answer of code.
func (a *APIErrors) Inc(code string) { a.vec.WithLabelValues(code).Inc() }

// NewRegistry returns a registry with the engine's collector, the target's
// (when t is not nil), the API error counter, and the Go runtime and
// process collectors.
func NewRegistry(e *engine.Engine, t *target.Target) (*prometheus.Registry, *APIErrors) {
	reg := prometheus.NewRegistry()
	apiErrors := &APIErrors{vec: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: namespace, Name: "api_errors_total", Help: "Control API requests answered with an error, by error code.",
	}, []string{"code"})}
	reg.MustRegister(NewCollector(e), apiErrors.vec,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if t != nil {
		reg.MustRegister(NewTargetCollector(t))
	}
	return reg, apiErrors
}
