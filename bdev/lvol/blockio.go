package lvol

import (
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/journal"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// ioChunk is the most bytes one metadata I/O moves: the unit in which
// the format and open paths read and write regions, and checkpoints are
// written.
const ioChunk = 1 << 20

// blockIO does I/O on the pool's channel from a goroutine other than its
// reactor, waiting for each request, through one buffer off the Go heap
// (O_DIRECT devices need aligned memory): the format and open paths,
// which read and write metadata before the store runs.
type blockIO struct {
	ch  *bdev.Channel
	buf *iomem.Region
	bs  uint64
}

func newBlockIO(ch *bdev.Channel) (*blockIO, error) {
	buf, err := iomem.Map(ioChunk)
	if err != nil {
		return nil, fmt.Errorf("lvol: %w", err)
	}
	return &blockIO{ch: ch, buf: buf, bs: uint64(ch.Info().BlockSize)}, nil
}

func (b *blockIO) close() error { return b.buf.Unmap() }

// do runs one request over the first n bytes of the buffer at byte off.
func (b *blockIO) do(op bdev.Op, off uint64, n int, fua bool) error {
	req := &bdev.Request{Op: op, LBA: off / b.bs, Blocks: uint32(uint64(n) / b.bs), FUA: fua}
	if op == bdev.OpRead || op == bdev.OpWrite {
		req.Buf = b.buf.Bytes()[:n]
	}
	done := make(chan struct{})
	req.Callback = func(*bdev.Request) { close(done) }
	if err := b.ch.Reactor().Post(reactor.TaskFunc(func(*reactor.Reactor) { b.ch.Submit(req) })); err != nil {
		return err
	}
	select {
	case <-done:
	case <-b.ch.Reactor().Done():
		return reactor.ErrStopped
	}
	if err := req.Status.Err(); err != nil {
		return fmt.Errorf("lvol: %v of %d bytes at byte %d: %w", op, n, off, err)
	}
	return nil
}

// read fills p from byte off.
func (b *blockIO) read(off uint64, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), ioChunk)
		if err := b.do(bdev.OpRead, off, n, false); err != nil {
			return err
		}
		copy(p, b.buf.Bytes()[:n])
		p, off = p[n:], off+uint64(n)
	}
	return nil
}

// write writes p at byte off.
func (b *blockIO) write(off uint64, p []byte) error {
	for len(p) > 0 {
		n := min(len(p), ioChunk)
		copy(b.buf.Bytes(), p[:n])
		if err := b.do(bdev.OpWrite, off, n, false); err != nil {
			return err
		}
		p, off = p[n:], off+uint64(n)
	}
	return nil
}

func (b *blockIO) flush() error { return b.do(bdev.OpFlush, 0, 0, false) }

// flusher flushes the pool device for the metadata reactor with group
// commit: each caller's done runs after a flush submitted after its call,
// one flush serving everyone who asked while the one before was in
// flight. A device without a volatile cache needs none: done runs at
// once. Metadata reactor only.
type flusher struct {
	ch        *bdev.Channel
	dur       *durability
	j         *journal.Journal
	req       bdev.Request
	busy      bool
	snap      uint64 // the records the flush in flight makes durable
	jsnap     uint64 // the journal blocks it makes durable
	cur, next []func(error)
}

func (f *flusher) init(ch *bdev.Channel, dur *durability, j *journal.Journal) {
	f.ch, f.dur, f.j = ch, dur, j
	f.req.Op, f.req.Callback = bdev.OpFlush, f.done
}

func (f *flusher) flush(done func(error)) {
	if !f.ch.Info().VolatileCache {
		done(nil)
		return
	}
	f.next = append(f.next, done)
	f.kick()
}

func (f *flusher) kick() {
	if f.busy || len(f.next) == 0 {
		return
	}
	f.busy = true
	f.cur, f.next = f.next, nil
	f.snap, f.jsnap = f.dur.snapshot(), f.j.Written()
	f.ch.Submit(&f.req)
}

func (f *flusher) done(req *bdev.Request) {
	f.busy = false
	err := req.Status.Err()
	if err != nil {
		err = fmt.Errorf("lvol: flushing the pool: %w", err)
	} else {
		f.dur.covered(f.snap)
		f.j.Flushed(f.jsnap)
	}
	cur := f.cur
	f.cur = nil
	for _, d := range cur {
		d(err)
	}
	f.kick()
}
