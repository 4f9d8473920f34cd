package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/strata-storage/strata/bench/hist"
)

// Result is what a run measured. Latencies are in microseconds.
type Result struct {
	Job        string        `json:"job"`
	IOs        uint64        `json:"ios"`
	Bytes      uint64        `json:"bytes"`
	Elapsed    time.Duration `json:"elapsed_ns"`
	IOPS       float64       `json:"iops"`
	MiBps      float64       `json:"mib_per_s"`
	LatAvgUs   float64       `json:"lat_avg_us"`
	LatP50Us   float64       `json:"lat_p50_us"`
	LatP99Us   float64       `json:"lat_p99_us"`
	LatP999Us  float64       `json:"lat_p999_us"`
	LatMaxUs   float64       `json:"lat_max_us"`
	CPUPct     float64       `json:"cpu_pct"` // generator process CPU, % of one core
	Errors     uint64        `json:"errors"`
	Mismatches uint64        `json:"verify_mismatches"`
}

func newResult(job string, h *hist.Histogram, bytes, errors, mismatches uint64, elapsed, cpu time.Duration) Result {
	secs := elapsed.Seconds()
	us := func(ns uint64) float64 { return float64(ns) / 1e3 }
	return Result{
		Job: job, IOs: h.Count(), Bytes: bytes, Elapsed: elapsed,
		IOPS: float64(h.Count()) / secs, MiBps: float64(bytes) / secs / (1 << 20),
		LatAvgUs: h.Mean() / 1e3, LatP50Us: us(h.Quantile(0.5)), LatP99Us: us(h.Quantile(0.99)),
		LatP999Us: us(h.Quantile(0.999)), LatMaxUs: us(h.Max()),
		CPUPct: 100 * cpu.Seconds() / secs, Errors: errors, Mismatches: mismatches,
	}
}

// WriteText prints r for people.
func (r Result) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "%s\n  IOPS %.0f  bandwidth %.1f MiB/s  (%d I/Os in %.2fs)\n"+
		"  latency us: avg %.1f  p50 %.1f  p99 %.1f  p99.9 %.1f  max %.1f\n"+
		"  generator CPU %.0f%%  errors %d  verify mismatches %d\n",
		r.Job, r.IOPS, r.MiBps, r.IOs, r.Elapsed.Seconds(),
		r.LatAvgUs, r.LatP50Us, r.LatP99Us, r.LatP999Us, r.LatMaxUs,
		r.CPUPct, r.Errors, r.Mismatches)
	return err
}

// WriteJSON prints r as one JSON object.
func (r Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
