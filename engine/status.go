package engine

import (
	"maps"
	"slices"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// ioSample is a volume's statistics at one moment.
type ioSample struct {
	at    time.Time
	stats bdev.Stats
}

type reactorSample struct {
	at time.Time
	c  reactor.Counters
}

// reactorSamples are the last two samples of every reactor's counters.
// Guarded by Engine.mu.
type reactorSamples struct {
	reactorPrev, reactorLast []reactorSample
}

// Status is the engine at a glance.
type Status struct {
	Reactors []ReactorStatus `json:"reactors"`
	Pools    []Pool          `json:"pools"`
	Volumes  []VolumeStatus  `json:"volumes"`
	Shares   int             `json:"shares"`
	// Connections counts host connections over every share; 0 without a
	// target.
	Connections     int  `json:"connections"`
	TargetAvailable bool `json:"target_available"`
}

// ReactorStatus is one reactor's counters; BusyPercent is over the last
// sampling interval.
type ReactorStatus struct {
	ID          int     `json:"id"`
	Core        int     `json:"core"`
	BusyNs      uint64  `json:"busy_ns"`
	IdleNs      uint64  `json:"idle_ns"`
	BusyPercent float64 `json:"busy_percent"`
	Submitted   uint64  `json:"submitted"`
	Completed   uint64  `json:"completed"`
	Tasks       uint64  `json:"tasks"`
	Wakeups     uint64  `json:"wakeups"`
}

// IOStats are a volume's I/O totals since the daemon started.
type IOStats struct {
	ReadOps        uint64 `json:"read_ops"`
	WriteOps       uint64 `json:"write_ops"`
	FlushOps       uint64 `json:"flush_ops"`
	WriteZeroesOps uint64 `json:"write_zeroes_ops"`
	UnmapOps       uint64 `json:"unmap_ops"`
	ReadBytes      uint64 `json:"read_bytes"`
	WriteBytes     uint64 `json:"write_bytes"`
	ReadLatencyNs  uint64 `json:"read_latency_ns_total"`
	WriteLatencyNs uint64 `json:"write_latency_ns_total"`
	Errors         uint64 `json:"errors"`
}

func ioStats(s bdev.Stats) IOStats {
	return IOStats{
		ReadOps: s.ReadOps, WriteOps: s.WriteOps, FlushOps: s.FlushOps, WriteZeroesOps: s.ZeroOps, UnmapOps: s.UnmapOps,
		ReadBytes: s.ReadBytes, WriteBytes: s.WriteBytes, ReadLatencyNs: s.ReadLatencyNs, WriteLatencyNs: s.WriteLatencyNs,
		Errors: s.Errors,
	}
}

// VolumeStatus is a volume's state, totals and rates over the last
// sampling interval.
type VolumeStatus struct {
	Name             string  `json:"name"`
	Pool             string  `json:"pool"`
	State            string  `json:"state"`
	SizeBytes        uint64  `json:"size_bytes"`
	ReadIOPS         float64 `json:"read_iops"`
	WriteIOPS        float64 `json:"write_iops"`
	ReadBytesPerSec  float64 `json:"read_bytes_per_sec"`
	WriteBytesPerSec float64 `json:"write_bytes_per_sec"`
	IO               IOStats `json:"io"`
}

// VolumeIO is a volume's statistics for metrics.
type VolumeIO struct {
	Name, Pool string
	SizeBytes  uint64 // as hosts see it
	// AllocatedBytes is what the volume holds of its pool (a thin
	// volume: the clusters it maps).
	AllocatedBytes uint64
	Online         bool // serving I/O (also while it grows)
	Stats          bdev.Stats
}

// stats returns a volume's I/O totals (none while it is faulted).
func (lv *liveVolume) stats() bdev.Stats {
	if lv.dev == nil {
		return bdev.Stats{}
	}
	return lv.dev.Stats()
}

// VolumeIO returns every volume's statistics, by name.
func (e *Engine) VolumeIO() []VolumeIO {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]VolumeIO, 0, len(e.volumes))
	for _, name := range slices.Sorted(maps.Keys(e.volumes)) {
		v, lv := e.volumeView(name), e.volumes[name]
		out = append(out, VolumeIO{Name: name, Pool: v.Pool, SizeBytes: v.SizeBytes, AllocatedBytes: v.AllocatedBytes, Online: lv.dev != nil, Stats: lv.stats()})
	}
	return out
}

// Reactors returns every reactor's counters.
func (e *Engine) Reactors() []ReactorStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.reactorStatus()
}

func (e *Engine) reactorStatus() []ReactorStatus {
	var out []ReactorStatus
	for i, r := range e.cfg.Reactors.Reactors() {
		c := r.Counters()
		rs := ReactorStatus{
			ID: r.ID(), Core: r.Core(), BusyNs: c.BusyNs, IdleNs: c.IdleNs,
			Submitted: c.Submitted, Completed: c.Completed, Tasks: c.Tasks, Wakeups: c.Wakeups,
		}
		if i < len(e.reactorPrev) && !e.reactorPrev[i].at.IsZero() {
			p, l := e.reactorPrev[i].c, e.reactorLast[i].c
			if total := (l.BusyNs - p.BusyNs) + (l.IdleNs - p.IdleNs); total > 0 {
				rs.BusyPercent = 100 * float64(l.BusyNs-p.BusyNs) / float64(total)
			}
		}
		out = append(out, rs)
	}
	return out
}

// SampleStats records the statistics the rates in Status are computed
// from: Status reports the change between the last two samples. The
// engine's sampler calls it every Config.SampleInterval.
func (e *Engine) SampleStats(now time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, lv := range e.volumes {
		lv.samples[0], lv.samples[1] = lv.samples[1], ioSample{at: now, stats: lv.stats()}
	}
	rs := e.cfg.Reactors.Reactors()
	if len(e.reactorLast) != len(rs) {
		e.reactorLast = make([]reactorSample, len(rs))
	}
	e.reactorPrev = slices.Clone(e.reactorLast)
	for i, r := range rs {
		e.reactorLast[i] = reactorSample{at: now, c: r.Counters()}
	}
}

func (e *Engine) sampler(every time.Duration) {
	defer close(e.samplerDone)
	t := time.NewTicker(every)
	defer t.Stop()
	e.SampleStats(time.Now())
	for {
		select {
		case <-e.stopSampler:
			return
		case now := <-t.C:
			e.SampleStats(now)
		}
	}
}

// rate returns the change of a counter per second between two samples.
func rate(prev, last uint64, dt time.Duration) float64 {
	if dt <= 0 || last < prev {
		return 0
	}
	return float64(last-prev) / dt.Seconds()
}

// Status returns the engine's state and activity.
func (e *Engine) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := Status{Reactors: e.reactorStatus(), Pools: []Pool{}, Volumes: []VolumeStatus{}, Shares: len(e.st.shares), TargetAvailable: e.cfg.Exporter != nil}
	for _, name := range slices.Sorted(maps.Keys(e.st.pools)) {
		st.Pools = append(st.Pools, e.poolView(name))
	}
	for _, name := range slices.Sorted(maps.Keys(e.st.volumes)) {
		v, lv := e.volumeView(name), e.volumes[name]
		vs := VolumeStatus{Name: name, Pool: v.Pool, State: v.State, SizeBytes: v.SizeBytes, IO: ioStats(lv.stats())}
		if p, l := lv.samples[0], lv.samples[1]; !p.at.IsZero() {
			dt := l.at.Sub(p.at)
			vs.ReadIOPS = rate(p.stats.ReadOps, l.stats.ReadOps, dt)
			vs.WriteIOPS = rate(p.stats.WriteOps, l.stats.WriteOps, dt)
			vs.ReadBytesPerSec = rate(p.stats.ReadBytes, l.stats.ReadBytes, dt)
			vs.WriteBytesPerSec = rate(p.stats.WriteBytes, l.stats.WriteBytes, dt)
		}
		st.Volumes = append(st.Volumes, vs)
	}
	for name, ls := range e.shares {
		if ls.exported {
			st.Connections += e.cfg.Exporter.Connections(e.st.shares[name].NQN)
		}
	}
	return st
}

// Sessions are a share's live host sessions.
type Sessions struct {
	Connections int // queue pairs, admin and I/O
	Controllers int
}

// ShareSessions returns each exported share's sessions, by share name.
func (e *Engine) ShareSessions() map[string]Sessions {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := map[string]Sessions{}
	for name, ls := range e.shares {
		if ls.exported {
			nqn := e.st.shares[name].NQN
			out[name] = Sessions{Connections: e.cfg.Exporter.Connections(nqn), Controllers: e.cfg.Exporter.Controllers(nqn)}
		}
	}
	return out
}
