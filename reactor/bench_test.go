package reactor

import (
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkIdleCPU reports the CPU an engine's reactors burn with no work,
// as a percentage of one core (%core). Each iteration is one second of
// idleness: run it with -benchtime=3x.
func BenchmarkIdleCPU(b *testing.B) {
	g, err := StartGroup(nil, Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	time.Sleep(100 * time.Millisecond) // past the spin, into sleep
	cpu0, t0 := processCPU(), time.Now()
	for b.Loop() {
		time.Sleep(time.Second)
	}
	b.ReportMetric(100*float64(processCPU()-cpu0)/float64(time.Since(t0)), "%core")
}

// flagOp submits a NOP when run and raises done when it completes; the
// benchmarks below wait for it by polling, so that they time the reactor
// rather than the Go scheduler waking a parked goroutine.
type flagOp struct{ done atomic.Bool }

func (o *flagOp) Run(r *Reactor) { r.Prep(o).PrepNop() }

func (o *flagOp) Complete(int32, uint32) { o.done.Store(true) }

func (o *flagOp) roundTrip(r *Reactor) {
	o.done.Store(false)
	r.Send(o)
	for !o.done.Load() {
	}
}

// BenchmarkSendToSleepingReactor is the cost of a hand-off that must wake a
// sleeping reactor (eventfd write plus wake-up), round trip.
func BenchmarkSendToSleepingReactor(b *testing.B) {
	g, err := StartGroup([]int{-1}, Config{Spin: time.Nanosecond, SpinIO: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	r := g.Get(0)
	var op flagOp
	b.ReportAllocs()
	for b.Loop() {
		for !r.sleeping.Load() {
		}
		op.roundTrip(r)
	}
}

// BenchmarkTaskRoundTrip is a task hand-off to a spinning reactor, an
// io_uring NOP, and the completion back: the reactor's fixed cost per I/O.
func BenchmarkTaskRoundTrip(b *testing.B) {
	g, err := StartGroup([]int{-1}, Config{Spin: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	r := g.Get(0)
	var op flagOp
	b.ReportAllocs()
	for b.Loop() {
		op.roundTrip(r)
	}
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
