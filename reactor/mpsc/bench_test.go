package mpsc

import (
	"runtime"
	"sync/atomic"
	"testing"
)

// BenchmarkPushPop is the uncontended cost of one hand-off.
func BenchmarkPushPop(b *testing.B) {
	q, _ := New[*int](1024)
	v := new(int)
	b.ReportAllocs()
	for b.Loop() {
		q.Push(v)
		q.Pop()
	}
}

// BenchmarkHandoff measures throughput from one producer goroutine to a
// consumer goroutine on another core: ns/op is the time per item.
func BenchmarkHandoff(b *testing.B) {
	q, _ := New[*int](1024)
	v := new(int)
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for n := 0; n < b.N; {
			if _, ok := q.Pop(); ok {
				n++
			} else if done.Load() {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for !q.Push(v) {
			runtime.Gosched()
		}
	}
	<-finished
	done.Store(true)
}

// BenchmarkRoundTrip measures hand-off latency: a ping to the consumer and a
// pong back through a second queue, so ns/op is one round trip (two
// hand-offs) between two spinning goroutines.
func BenchmarkRoundTrip(b *testing.B) {
	ping, _ := New[*int](2)
	pong, _ := New[*int](2)
	v := new(int)
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if x, ok := ping.Pop(); ok {
				for !pong.Push(x) {
				}
			}
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		ping.Push(v)
		for {
			if _, ok := pong.Pop(); ok {
				break
			}
		}
	}
	close(stop)
}
