package bdevtest

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// Factory returns a fresh device of at least 16 MiB, closed by the test's
// cleanup; the suite may write anywhere on it.
type Factory func(t *testing.T) bdev.Device

// Run runs the conformance suite against devices from newDev. persistent
// says whether written data reads back (false only for the null device,
// which must read zeroes instead).
func Run(t *testing.T, newDev Factory, persistent bool) {
	s := &suite{newDev: newDev, persistent: persistent}
	t.Run("Info", s.info)
	t.Run("ReadAfterWrite", s.readAfterWrite)
	t.Run("Rejected", s.rejected)
	t.Run("ZeroesAndUnmap", s.zeroesAndUnmap)
	t.Run("Flush", s.flush)
	t.Run("ConcurrentReactors", s.concurrent)
	t.Run("Model", s.model)
	t.Run("Stats", s.stats)
	t.Run("ClosedChannel", s.closedChannel)
	t.Run("QuiesceUnderLoad", s.quiesceUnderLoad)
}

type suite struct {
	newDev     Factory
	persistent bool
}

func (s *suite) open(t *testing.T) (bdev.Device, *Client) {
	dev := s.newDev(t)
	return dev, Open(t, dev, Reactors(t).Get(0))
}

func (s *suite) info(t *testing.T) {
	dev := s.newDev(t)
	in := dev.Info()
	require.True(t, bdev.ValidBlockSize(in.BlockSize), "block size %d", in.BlockSize)
	require.GreaterOrEqual(t, in.Size(), uint64(16<<20))
	require.NotEqual(t, bdev.UUID{}, in.UUID)
	require.NotEmpty(t, in.Name)
	require.NotEmpty(t, in.Product)
}

// expect checks what a read returns: the data written, or zeroes on a
// device that keeps nothing.
func (s *suite) expect(t *testing.T, want, got []byte, what string) {
	t.Helper()
	if !s.persistent {
		want = make([]byte, len(got))
	}
	if !bytes.Equal(want, got) {
		i := 0
		for i < len(got) && want[i] == got[i] {
			i++
		}
		t.Fatalf("%s: data differs from byte %d", what, i)
	}
}

func (s *suite) readAfterWrite(t *testing.T) {
	dev, c := s.open(t)
	in := dev.Info()
	bs := int(in.BlockSize)
	last := in.Blocks - 1
	const maxBlocks = 256
	wbuf := Buffers(t, maxBlocks*bs)
	rbuf := Buffers(t, maxBlocks*bs)
	cases := []struct {
		lba    uint64
		blocks uint32
	}{
		{0, 1}, {1, 1}, {7, 3}, {8, 8}, {100, 33}, {in.Blocks / 2, 64},
		{last, 1}, {last - 2, 3}, {in.Blocks - maxBlocks, maxBlocks}, {3, maxBlocks},
	}
	for i, tc := range cases {
		name := fmt.Sprintf("lba=%d blocks=%d", tc.lba, tc.blocks)
		n := int(tc.blocks) * bs
		Fill(wbuf[:n], uint64(i+1))
		var st bdev.Status
		if i%2 == 0 {
			st = c.Do(t, bdev.OpWrite, tc.lba, tc.blocks, wbuf[:n])
		} else {
			st = c.StartFUA(tc.lba, tc.blocks, wbuf[:n]).Wait(t)
		}
		require.Equal(t, bdev.StatusOK, st, "write %s", name)
		clear(rbuf[:n])
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, tc.lba, tc.blocks, rbuf[:n]), "read %s", name)
		s.expect(t, wbuf[:n], rbuf[:n], name)
	}
	// Sub-ranges of a large write read back with their own offsets.
	Fill(wbuf, 99)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 1000, maxBlocks, wbuf))
	for _, sub := range []uint32{0, 1, 17, maxBlocks - 1} {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 1000+uint64(sub), 1, rbuf[:bs]))
		s.expect(t, wbuf[int(sub)*bs:int(sub+1)*bs], rbuf[:bs], fmt.Sprintf("block %d of the large write", sub))
	}
}

func (s *suite) rejected(t *testing.T) {
	dev, c := s.open(t)
	in := dev.Info()
	bs := int(in.BlockSize)
	buf := Buffers(t, 4*bs+4096)
	end := in.Blocks
	// Data at the last block must survive every rejected request.
	Fill(buf[:bs], 5)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, end-1, 1, buf[:bs]))
	keep := bytes.Clone(buf[:bs])

	for _, op := range []bdev.Op{bdev.OpRead, bdev.OpWrite, bdev.OpWriteZeroes, bdev.OpUnmap} {
		data := func(blocks int) []byte {
			if op == bdev.OpRead || op == bdev.OpWrite {
				return buf[:blocks*bs]
			}
			return nil
		}
		for _, tc := range []struct {
			lba    uint64
			blocks uint32
		}{{end, 1}, {end - 1, 2}, {end + 100, 1}, {math.MaxUint64, 1}, {math.MaxUint64 - 1, 4}} {
			got := c.Do(t, op, tc.lba, tc.blocks, data(int(tc.blocks)))
			require.Equal(t, bdev.StatusInvalidRange, got, "%v lba=%d blocks=%d", op, tc.lba, tc.blocks)
		}
		require.Equal(t, bdev.StatusInvalidRequest, c.Do(t, op, 0, 0, data(0)), "%v of zero blocks", op)
	}
	// Buffers that do not match the span.
	require.Equal(t, bdev.StatusInvalidRequest, c.Do(t, bdev.OpWrite, 0, 2, buf[:bs]))
	require.Equal(t, bdev.StatusInvalidRequest, c.Do(t, bdev.OpRead, 0, 1, buf[:bs+1]))
	require.Equal(t, bdev.StatusInvalidRequest, c.Do(t, bdev.OpRead, 0, 1, nil))
	if in.BufAlign > 1 {
		require.Equal(t, bdev.StatusInvalidRequest, c.Do(t, bdev.OpWrite, 0, 1, buf[1:bs+1]), "misaligned buffer")
	}
	require.Equal(t, bdev.StatusUnsupported, c.Do(t, bdev.Op(200), 0, 1, buf[:bs]))

	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, end-1, 1, buf[:bs]))
	s.expect(t, keep, buf[:bs], "last block after rejected requests")
}

func (s *suite) zeroesAndUnmap(t *testing.T) {
	dev, c := s.open(t)
	in := dev.Info()
	bs := int(in.BlockSize)
	const span = 64
	w := Buffers(t, (span+2)*bs)
	r := Buffers(t, (span+2)*bs)
	for i, op := range []bdev.Op{bdev.OpWriteZeroes, bdev.OpUnmap} {
		base := uint64(2048 + i*1024)
		Fill(w, uint64(10+i))
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, base, span+2, w))
		// Zero the middle, leaving one written block on each side. An
		// unaligned start (base+1) exercises partial fallocate pages.
		require.Equal(t, bdev.StatusOK, c.Do(t, op, base+1, span, nil), "%v", op)
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, base, span+2, r))
		want := bytes.Clone(w)
		clear(want[bs : (span+1)*bs])
		s.expect(t, want, r, op.String())
	}
	// The whole device at once.
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, 0, uint32(min(in.Blocks, math.MaxUint32)), nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 2048, span, r[:span*bs]))
	s.expect(t, make([]byte, span*bs), r[:span*bs], "after zeroing the device")
}

func (s *suite) flush(t *testing.T) {
	_, c := s.open(t)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	// A flush has no span: whatever LBA and Blocks a reused request still
	// holds (here far past the end) must not matter.
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, math.MaxUint64/2, math.MaxUint32, nil))
	// Lots of flushes queued behind writes.
	buf := Buffers(t, 64*int(c.Ch.Info().BlockSize))
	var ps []Pending
	for i := range 64 {
		bs := int(c.Ch.Info().BlockSize)
		ps = append(ps, c.Start(bdev.OpWrite, uint64(i), 1, buf[i*bs:(i+1)*bs]), c.Start(bdev.OpFlush, 0, 0, nil))
	}
	for _, p := range ps {
		require.Equal(t, bdev.StatusOK, p.Wait(t))
	}
}

// concurrent runs writers on every reactor at once, each on its own region
// with many requests in flight, then verifies everything from another
// reactor than the one that wrote it.
func (s *suite) concurrent(t *testing.T) {
	dev := s.newDev(t)
	g := Reactors(t)
	bs := int(dev.Info().BlockSize)
	const perWorker, qd, blocks = 512, 16, 2
	clients := make([]*Client, g.Len())
	for i := range clients {
		clients[i] = Open(t, dev, g.Get(i))
	}
	workers := 2 * g.Len()
	bufs := Buffers(t, workers*perWorker*blocks*bs)
	region := func(w int) []byte { return bufs[w*perWorker*blocks*bs : (w+1)*perWorker*blocks*bs] }
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[w%len(clients)]
			data := region(w)
			Fill(data, uint64(1000+w))
			order := rand.New(rand.NewPCG(uint64(w), 7)).Perm(perWorker)
			base := uint64(w * perWorker * blocks)
			for i := 0; i < perWorker; i += qd {
				var ps []Pending
				for _, k := range order[i : i+qd] {
					ps = append(ps, c.Start(bdev.OpWrite, base+uint64(k*blocks), blocks, data[k*blocks*bs:(k+1)*blocks*bs]))
				}
				for _, p := range ps {
					<-p.c.done
					if p.c.req.Status != bdev.StatusOK {
						errs <- fmt.Errorf("worker %d write: %v", w, p.c.req.Status)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	for w := range workers {
		c := clients[(w+1)%len(clients)]
		got := Buffers(t, perWorker*blocks*bs)
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, uint64(w*perWorker*blocks), perWorker*blocks, got))
		s.expect(t, region(w), got, fmt.Sprintf("worker %d region", w))
	}
}

// model compares the device with a map of blocks under a random mix of
// writes, zeroes, unmaps and reads, many in flight on two reactors.
func (s *suite) model(t *testing.T) {
	dev := s.newDev(t)
	g := Reactors(t)
	bs := int(dev.Info().BlockSize)
	const blocks = 512 // a small window so that requests overlap often
	clients := []*Client{Open(t, dev, g.Get(0)), Open(t, dev, g.Get(g.Len()-1))}
	model := make([][]byte, blocks)
	rng := rand.New(rand.NewPCG(42, 42))
	require.Equal(t, bdev.StatusOK, clients[0].Do(t, bdev.OpWriteZeroes, 0, blocks, nil))
	buf := Buffers(t, 16*bs)
	for i := range 1500 {
		c := clients[i%2]
		lba := rng.Uint64N(blocks - 16)
		n := uint32(1 + rng.IntN(16))
		data := buf[:int(n)*bs]
		switch op := rng.IntN(10); {
		case op < 5:
			Fill(data, uint64(i))
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lba, n, data))
			for k := range n {
				model[lba+uint64(k)] = bytes.Clone(data[int(k)*bs : int(k+1)*bs])
			}
		case op < 6:
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, lba, n, nil))
			for k := range n {
				model[lba+uint64(k)] = nil
			}
		case op < 7:
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, lba, n, nil))
			for k := range n {
				model[lba+uint64(k)] = nil
			}
		default:
			require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, n, data))
			for k := range n {
				want := model[lba+uint64(k)]
				if want == nil {
					want = make([]byte, bs)
				}
				s.expect(t, want, data[int(k)*bs:int(k+1)*bs], fmt.Sprintf("op %d block %d", i, lba+uint64(k)))
			}
		}
	}
}

func (s *suite) stats(t *testing.T) {
	dev, c := s.open(t)
	bs := int(dev.Info().BlockSize)
	buf := Buffers(t, 4*bs)
	before := dev.Stats()
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 4, buf))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 2, buf[:2*bs]))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 1, buf[:bs]))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWriteZeroes, 0, 1, nil))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, 0, 1, nil))
	require.Equal(t, bdev.StatusInvalidRange, c.Do(t, bdev.OpRead, dev.Info().Blocks, 1, buf[:bs]))
	d := dev.Stats()
	require.Equal(t, before.WriteOps+1, d.WriteOps)
	require.Equal(t, before.ReadOps+2, d.ReadOps)
	require.Equal(t, before.WriteBytes+uint64(4*bs), d.WriteBytes)
	require.Equal(t, before.ReadBytes+uint64(3*bs), d.ReadBytes)
	require.Equal(t, before.FlushOps+1, d.FlushOps)
	require.Equal(t, before.ZeroOps+1, d.ZeroOps)
	require.Equal(t, before.UnmapOps+1, d.UnmapOps)
	require.Equal(t, before.Errors+1, d.Errors)
	require.Greater(t, d.ReadLatencyNs, before.ReadLatencyNs)
	count := func(h bdev.LatencyHistogram) (n uint64) {
		for _, c := range h {
			n += c
		}
		return n
	}
	require.Equal(t, count(before.ReadLatency)+2, count(d.ReadLatency), "each read lands in one latency bucket")
	require.Equal(t, count(before.WriteLatency)+1, count(d.WriteLatency))
}

func (s *suite) closedChannel(t *testing.T) {
	dev := s.newDev(t)
	r := Reactors(t).Get(0)
	ch, err := bdev.Open(dev, r)
	require.NoError(t, err)
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
	c := &Client{Ch: ch}
	buf := Buffers(t, int(dev.Info().BlockSize))
	require.Equal(t, bdev.StatusNotReady, c.Do(t, bdev.OpRead, 0, 1, buf))
	require.NoError(t, dev.Close(), "a device closes once its channels are closed")
}

// loader keeps depth requests in flight on one channel, from its reactor:
// each completion is checked and resubmitted with a new sequence number
// until stop. Reactor-owned but for the counters read through Call.
type loader struct {
	ch        *bdev.Channel
	reqs      []bdev.Request
	next      uint64
	done      map[uint64]bool
	completed int
	errs      []string
	stop      bool
	blocks    uint64
}

func (l *loader) submit(req *bdev.Request) {
	l.next++
	req.Tag = l.next
	req.LBA = l.next * 7 % (l.blocks - 1)
	if l.next%3 == 0 {
		req.Op = bdev.OpWrite
	} else {
		req.Op = bdev.OpRead
	}
	l.ch.Submit(req)
}

func (l *loader) callback(req *bdev.Request) {
	switch {
	case l.done[req.Tag]:
		l.errs = append(l.errs, fmt.Sprintf("request %d completed twice", req.Tag))
	case req.Status != bdev.StatusOK:
		l.errs = append(l.errs, fmt.Sprintf("request %d: %v", req.Tag, req.Status))
	}
	l.done[req.Tag] = true
	l.completed++
	if !l.stop {
		l.submit(req)
	}
}

// quiesceUnderLoad quiesces the device while every reactor keeps requests
// in flight on it: when Quiesce returns, nothing submitted before it is
// still in flight and nothing submitted after it has started; after
// Resume the held requests run; no request is lost or completed twice.
func (s *suite) quiesceUnderLoad(t *testing.T) {
	dev := s.newDev(t)
	g := Reactors(t)
	bs := int(dev.Info().BlockSize)
	const depth = 16
	loaders := make([]*loader, g.Len())
	bufs := Buffers(t, g.Len()*depth*bs)
	for i := range loaders {
		c := Open(t, dev, g.Get(i))
		l := &loader{ch: c.Ch, reqs: make([]bdev.Request, depth), done: map[uint64]bool{}, blocks: dev.Info().Blocks}
		for k := range l.reqs {
			l.reqs[k] = bdev.Request{Blocks: 1, Buf: bufs[(i*depth+k)*bs : (i*depth+k+1)*bs], Callback: l.callback}
		}
		loaders[i] = l
	}
	onEach := func(f func(l *loader)) {
		for i, l := range loaders {
			require.NoError(t, g.Get(i).Call(func(*reactor.Reactor) error { f(l); return nil }))
		}
	}
	onEach(func(l *loader) {
		for k := range l.reqs {
			l.submit(&l.reqs[k])
		}
	})
	counts := func() (completed, inflight, held []int) {
		onEach(func(l *loader) {
			completed, inflight, held = append(completed, l.completed), append(inflight, l.ch.Inflight()), append(held, l.ch.Held())
		})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for round := range 3 {
		time.Sleep(5 * time.Millisecond) // I/O under way
		require.NoError(t, dev.Quiesce(ctx), "round %d", round)
		quiet, inflight, held := counts()
		for i := range held {
			require.Equal(t, depth, held[i], "round %d reactor %d: every request is held", round, i)
			require.Equal(t, depth, inflight[i], "round %d reactor %d: none is in flight beside them", round, i)
		}
		time.Sleep(10 * time.Millisecond)
		later, _, _ := counts()
		require.Equal(t, quiet, later, "round %d: nothing completes while quiesced", round)
		require.ErrorIs(t, dev.Quiesce(ctx), bdev.ErrQuiesced)
		dev.Resume()
		require.Eventually(t, func() bool {
			after, _, _ := counts()
			for i := range after {
				if after[i] < quiet[i]+depth {
					return false
				}
			}
			return true
		}, 10*time.Second, time.Millisecond, "round %d: the held requests run after Resume", round)
	}
	onEach(func(l *loader) { l.stop = true })
	require.Eventually(t, func() bool {
		_, inflight, _ := counts()
		for _, n := range inflight {
			if n > 0 {
				return false
			}
		}
		return true
	}, 10*time.Second, time.Millisecond)
	onEach(func(l *loader) {
		for _, e := range l.errs {
			t.Error(e)
		}
		for seq := uint64(1); seq <= l.next; seq++ {
			if !l.done[seq] {
				t.Errorf("request %d never completed", seq)
			}
		}
	})
}
