package reactor

import (
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

// BenchmarkSendToSleepingReactor is the cost of a hand-off that must wake a
// sleeping reactor (eventfd write plus wake-up), round trip.
func BenchmarkSendToSleepingReactor(b *testing.B) {
	g, err := StartGroup([]int{-1}, Config{Spin: time.Nanosecond})
	if err != nil {
		b.Fatal(err)
	}
	defer g.Stop()
	op := &nopOp{done: make(chan int32, 1)}
	b.ReportAllocs()
	for b.Loop() {
		for !g.Get(0).sleeping.Load() {
		}
		g.Get(0).Send(op)
		<-op.done
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
	op := &nopOp{done: make(chan int32, 1)}
	b.ReportAllocs()
	for b.Loop() {
		g.Get(0).Send(op)
		<-op.done
	}
}

func processCPU() time.Duration {
	var ru unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
