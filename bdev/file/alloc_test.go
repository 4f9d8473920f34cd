package file

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/reactor"
)

// submitter is a preallocated task that submits its request; the callback
// signals a preallocated channel. Nothing here allocates per I/O, so any
// allocation counted is the device's or the reactor's.
type submitter struct {
	ch   *bdev.Channel
	req  bdev.Request
	done chan bdev.Status
}

func (s *submitter) Run(*reactor.Reactor)     { s.ch.Submit(&s.req) }
func (s *submitter) callback(r *bdev.Request) { s.done <- r.Status }

// The I/O path, reactor -> io_uring -> completion -> callback, allocates
// nothing.
func TestIOPathAllocatesNothing(t *testing.T) {
	d := openFile(t, filepath.Join(t.TempDir(), "img"), Options{Size: 16 << 20})
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, 4096)
	s := &submitter{ch: c.Ch, done: make(chan bdev.Status, 1)}
	s.req = bdev.Request{Blocks: 1, Buf: buf, Callback: s.callback}
	for _, op := range []bdev.Op{bdev.OpWrite, bdev.OpRead, bdev.OpFlush, bdev.OpWriteZeroes} {
		s.req.Op = op
		n := 0
		allocs := testing.AllocsPerRun(500, func() {
			s.req.LBA = uint64(n % 1024)
			n++
			c.Ch.Reactor().Send(s)
			if st := <-s.done; st != bdev.StatusOK {
				panic(st.String())
			}
		})
		require.Zero(t, allocs, "%v", op)
	}
}
