package bench

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bench/hist"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// RunLocal runs job against a device channel, on the channel's reactor, and
// waits for it to finish. Call it from any goroutine but that reactor.
func RunLocal(ch *bdev.Channel, job Job) (Result, error) {
	info := ch.Info()
	if err := job.Validate(info.BlockSize, info.Size()); err != nil {
		return Result{}, err
	}
	mem, err := iomem.Map(job.QueueDepth * job.BlockSize)
	if err != nil {
		return Result{}, err
	}
	defer mem.Unmap()
	w := newLocalWorker(ch, &job, mem.Bytes())
	cpu0, t0 := ProcessCPU(), time.Now()
	if err := ch.Reactor().Post(w); err != nil {
		return Result{}, err
	}
	<-w.done
	elapsed, cpu := time.Since(t0), ProcessCPU()-cpu0
	name := fmt.Sprintf("%s bs=%d qd=%d on %s", job.Pattern, job.BlockSize, job.QueueDepth, info.Name)
	return newResult(name, w.hist, w.bytes, w.errors, w.mismatches, elapsed, cpu), nil
}

// Prefill writes stamped blocks over the job's span so a verifying read job
// finds data it can check.
func Prefill(ch *bdev.Channel, job Job) error {
	span := job.span(ch.Info().Size())
	fill := Job{
		Pattern: Write, BlockSize: job.BlockSize, QueueDepth: job.QueueDepth,
		IOs: span / uint64(job.BlockSize), Span: span, Offset: job.Offset, Verify: true, Seed: job.Seed,
	}
	res, err := RunLocal(ch, fill)
	if err != nil {
		return err
	}
	if res.Errors > 0 {
		return fmt.Errorf("bench: prefill: %d write errors", res.Errors)
	}
	return nil
}

// localWorker keeps QueueDepth requests in flight on one reactor. All its
// fields are owned by that reactor once it runs.
type localWorker struct {
	ch         *bdev.Channel
	job        *Job
	reqs       []bdev.Request
	rng        *rand.Rand
	devBlock   uint64
	perIO      uint32 // device blocks per I/O
	spanIOs    uint64 // I/O-sized slots in the span
	offBlocks  uint64 // where the span starts, in device blocks
	stride     uint64 // slots from one sequential I/O to the next
	next       uint64 // next sequential slot
	base       time.Time
	deadline   time.Duration
	issued     uint64
	inflight   int
	hist       *hist.Histogram
	bytes      uint64
	errors     uint64
	mismatches uint64
	done       chan struct{}
}

func newLocalWorker(ch *bdev.Channel, job *Job, mem []byte) *localWorker {
	info := ch.Info()
	w := &localWorker{
		ch: ch, job: job,
		reqs:      make([]bdev.Request, job.QueueDepth),
		rng:       rand.New(rand.NewPCG(job.Seed, 0x5eed)),
		devBlock:  uint64(info.BlockSize),
		perIO:     uint32(job.BlockSize / int(info.BlockSize)),
		spanIOs:   job.span(info.Size()) / uint64(job.BlockSize),
		offBlocks: job.Offset / uint64(info.BlockSize),
		stride:    job.strideIOs(),
		hist:      hist.New(),
		done:      make(chan struct{}),
	}
	for i := range w.reqs {
		w.reqs[i] = bdev.Request{Buf: mem[i*job.BlockSize : (i+1)*job.BlockSize], Blocks: w.perIO, Callback: w.callback}
	}
	return w
}

// Run starts the job on the reactor.
func (w *localWorker) Run(*reactor.Reactor) {
	w.base = time.Now()
	w.deadline = w.job.Duration
	for i := range w.reqs {
		if w.finished() {
			break
		}
		w.issue(&w.reqs[i])
	}
	if w.inflight == 0 {
		close(w.done)
	}
}

func (w *localWorker) finished() bool {
	if w.job.IOs > 0 && w.issued >= w.job.IOs {
		return true
	}
	return w.deadline > 0 && time.Since(w.base) >= w.deadline
}

func (w *localWorker) issue(req *bdev.Request) {
	var slot uint64
	if w.job.Pattern.Random() {
		slot = w.rng.Uint64N(w.spanIOs)
	} else {
		slot = w.next
		w.next = (w.next + w.stride) % w.spanIOs
	}
	req.LBA = w.offBlocks + slot*uint64(w.perIO)
	req.Op = bdev.OpRead
	switch w.job.Pattern {
	case Write, RandWrite:
		req.Op = bdev.OpWrite
	case RandRW:
		if w.rng.IntN(100) >= w.job.ReadPct {
			req.Op = bdev.OpWrite
		}
	}
	if req.Op == bdev.OpWrite && w.job.Verify {
		for b := range uint64(w.perIO) {
			Stamp(req.Buf[b*w.devBlock:(b+1)*w.devBlock], req.LBA+b, w.job.Seed)
		}
	}
	req.Tag = uint64(time.Since(w.base))
	w.issued++
	w.inflight++
	w.ch.Submit(req)
}

func (w *localWorker) callback(req *bdev.Request) {
	now := uint64(time.Since(w.base))
	w.inflight--
	if req.Status != bdev.StatusOK {
		w.errors++
	} else {
		w.hist.Record(now - req.Tag)
		w.bytes += uint64(len(req.Buf))
		w.job.Progress.add(len(req.Buf))
		if req.Op == bdev.OpRead && w.job.Verify {
			for b := range uint64(w.perIO) {
				if !Check(req.Buf[b*w.devBlock:(b+1)*w.devBlock], req.LBA+b, w.job.Seed) {
					w.mismatches++
				}
			}
		}
	}
	if !w.finished() {
		w.issue(req)
		return
	}
	if w.inflight == 0 {
		close(w.done)
	}
}
