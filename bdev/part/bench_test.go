package part

import (
	"fmt"
	"testing"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/reactor"
)

// closedLoop keeps depth requests in flight on one channel from its
// reactor until n have completed.
type closedLoop struct {
	ch   *bdev.Channel
	reqs []bdev.Request
	left int
	done chan struct{}
}

func (l *closedLoop) callback(req *bdev.Request) {
	if l.left--; l.left == 0 {
		close(l.done)
	}
	if l.left >= len(l.reqs) {
		l.ch.Submit(req)
	}
}

// BenchmarkLayers measures what a layer costs an I/O: 4 KiB reads at
// queue depth 32 on one reactor, from a null device (no data moves) under
// 0, 1 and 2 part layers. The difference between rows is one layer's
// ns/op.
func BenchmarkLayers(b *testing.B) {
	r, err := reactor.Start(reactor.Config{Core: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Stop()
	base, err := null.New("null", 1<<30, 4096)
	if err != nil {
		b.Fatal(err)
	}
	defer base.Close()
	buf := bdevtest.Buffers(b, 32*4096)
	for layers := range 3 {
		b.Run(fmt.Sprintf("layers=%d", layers), func(b *testing.B) {
			var dev bdev.Device = base
			var parts []*Device
			for i := range layers {
				p, err := New(fmt.Sprintf("p%d", i), dev, 1, dev.Info().Blocks-2, bdev.UUID{})
				if err != nil {
					b.Fatal(err)
				}
				parts = append(parts, p)
				dev = p
			}
			ch, err := bdev.Open(dev, r)
			if err != nil {
				b.Fatal(err)
			}
			l := &closedLoop{ch: ch, reqs: make([]bdev.Request, 32)}
			b.ReportAllocs()
			for round := range 2 { // a warm-up round grows the stocks of children
				n := b.N
				if round == 0 {
					n = 1000
				}
				l.left, l.done = n+len(l.reqs), make(chan struct{})
				if round == 1 {
					b.ResetTimer()
				}
				r.Call(func(*reactor.Reactor) error {
					for i := range l.reqs {
						req := &l.reqs[i]
						*req = bdev.Request{Op: bdev.OpRead, LBA: uint64(i), Blocks: 1, Buf: buf[i*4096 : (i+1)*4096], Callback: l.callback}
						ch.Submit(req)
					}
					return nil
				})
				<-l.done
			}
			b.StopTimer()
			r.Call(func(*reactor.Reactor) error { return ch.Close() })
			for i := len(parts) - 1; i >= 0; i-- {
				parts[i].Close()
			}
		})
	}
}
