package bench

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/strata-storage/strata/bench/hist"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/nvmeof/host"
	"github.com/strata-storage/strata/nvmeof/nvme"
)

// Namespace describes the remote namespace a job runs against.
type Namespace struct {
	ID        uint32
	BlockSize uint32
	Blocks    uint64
}

// RunRemote runs job on every queue at once (QueueDepth requests in flight
// on each) against namespace ns through the NVMe/TCP host, and waits for it.
// Completions are handled on each queue's reactor, which starts the next
// request there, so the generator allocates nothing per I/O.
func RunRemote(queues []*host.Queue, ns Namespace, job Job) (Result, error) {
	if len(queues) == 0 {
		return Result{}, fmt.Errorf("bench: no queues")
	}
	if err := job.Validate(ns.BlockSize, ns.Blocks*uint64(ns.BlockSize)); err != nil {
		return Result{}, err
	}
	mem, err := iomem.Map(len(queues) * job.QueueDepth * job.BlockSize)
	if err != nil {
		return Result{}, err
	}
	defer mem.Unmap()
	workers := make([]*remoteWorker, len(queues))
	var wg sync.WaitGroup
	perQueue := job
	if job.IOs > 0 {
		perQueue.IOs = max(job.IOs/uint64(len(queues)), 1)
	}
	for i, q := range queues {
		region := mem.Bytes()[i*job.QueueDepth*job.BlockSize : (i+1)*job.QueueDepth*job.BlockSize]
		workers[i] = newRemoteWorker(q, ns, perQueue, job.Seed+uint64(i)*7919, region, &wg)
	}
	cpu0, t0 := ProcessCPU(), time.Now()
	for _, w := range workers {
		wg.Add(1)
		w.start()
	}
	wg.Wait()
	elapsed, cpu := time.Since(t0), ProcessCPU()-cpu0
	h := hist.New()
	var bytes, errs, mism uint64
	var firstErr error
	for _, w := range workers {
		h.Merge(w.hist)
		bytes += w.bytes
		errs += w.errors
		mism += w.mismatches
		if firstErr == nil {
			firstErr = w.transportErr
		}
	}
	name := fmt.Sprintf("%s bs=%d qd=%d x %d queues over NVMe/TCP", job.Pattern, job.BlockSize, job.QueueDepth, len(queues))
	res := newResult(name, h, bytes, errs, mism, elapsed, cpu)
	if firstErr != nil {
		return res, fmt.Errorf("bench: transport: %w", firstErr)
	}
	return res, nil
}

// remoteWorker drives one queue; its fields are touched by the goroutine
// that starts it and then only by the queue's reactor.
type remoteWorker struct {
	q            *host.Queue
	ns           Namespace
	job          Job
	reqs         []host.Request
	bufs         [][]byte
	rng          *rand.Rand
	perIO        uint32
	spanIOs      uint64
	offBlocks    uint64
	stride       uint64
	next         uint64
	base         time.Time
	issued       uint64
	inflight     int
	finishing    bool
	hist         *hist.Histogram
	bytes        uint64
	errors       uint64
	mismatches   uint64
	transportErr error
	wg           *sync.WaitGroup
	mu           sync.Mutex // start races the first completions
}

// newRemoteWorker makes a worker for one queue: rngSeed varies per queue so
// queues spread over the span, while blocks are stamped with job.Seed so
// that any queue can verify what another wrote.
func newRemoteWorker(q *host.Queue, ns Namespace, job Job, rngSeed uint64, mem []byte, wg *sync.WaitGroup) *remoteWorker {
	w := &remoteWorker{
		q: q, ns: ns, job: job, reqs: make([]host.Request, job.QueueDepth), bufs: make([][]byte, job.QueueDepth),
		rng: rand.New(rand.NewPCG(rngSeed, 0xfeed)), perIO: uint32(job.BlockSize) / ns.BlockSize,
		spanIOs:   job.span(ns.Blocks*uint64(ns.BlockSize)) / uint64(job.BlockSize),
		offBlocks: job.Offset / uint64(ns.BlockSize), stride: job.strideIOs(), hist: hist.New(), wg: wg,
	}
	for i := range w.reqs {
		w.bufs[i] = mem[i*job.BlockSize : (i+1)*job.BlockSize]
		w.reqs[i].Callback = w.callback
		w.reqs[i].Tag = uint64(i)
	}
	return w
}

func (w *remoteWorker) start() {
	w.mu.Lock()
	w.base = time.Now()
	n := 0
	for i := range w.reqs {
		if w.finished() {
			break
		}
		w.prepare(&w.reqs[i])
		n++
	}
	w.inflight = n
	w.mu.Unlock()
	if n == 0 {
		w.wg.Done()
		return
	}
	for i := range n {
		w.q.Submit(&w.reqs[i])
	}
}

func (w *remoteWorker) finished() bool {
	if w.job.IOs > 0 && w.issued >= w.job.IOs {
		return true
	}
	return w.job.Duration > 0 && time.Since(w.base) >= w.job.Duration
}

// prepare fills req with the next I/O. Tag keeps the buffer index in its
// low 16 bits and the submission time (ns since start) above them.
func (w *remoteWorker) prepare(req *host.Request) {
	var slot uint64
	if w.job.Pattern.Random() {
		slot = w.rng.Uint64N(w.spanIOs)
	} else {
		slot = w.next
		w.next = (w.next + w.stride) % w.spanIOs
	}
	lba := w.offBlocks + slot*uint64(w.perIO)
	buf := w.bufs[req.Tag&0xffff]
	write := w.job.Pattern == Write || w.job.Pattern == RandWrite ||
		w.job.Pattern == RandRW && w.rng.IntN(100) >= w.job.ReadPct
	if write {
		if w.job.Verify {
			bs := uint64(w.ns.BlockSize)
			for b := range uint64(w.perIO) {
				Stamp(buf[b*bs:(b+1)*bs], lba+b, w.job.Seed)
			}
		}
		req.SetWrite(w.ns.ID, lba, w.perIO, false, buf)
	} else {
		req.SetRead(w.ns.ID, lba, w.perIO, buf)
	}
	req.Tag = req.Tag&0xffff | uint64(time.Since(w.base))<<16
	w.issued++
}

func (w *remoteWorker) callback(req *host.Request) {
	now := uint64(time.Since(w.base))
	w.mu.Lock()
	switch {
	case req.Err != nil:
		w.errors++
		if w.transportErr == nil {
			w.transportErr = req.Err
		}
		w.finishing = true
	case !req.Status.OK():
		w.errors++
	default:
		w.hist.Record(now - req.Tag>>16)
		w.bytes += uint64(len(req.Buf))
		w.job.Progress.add(len(req.Buf))
		if !req.ToController && w.job.Verify {
			w.verify(req)
		}
	}
	w.inflight--
	if !w.finishing && !w.finished() {
		w.prepare(req)
		w.inflight++
		w.mu.Unlock()
		w.q.Start(req) // on the queue's reactor: no hand-off
		return
	}
	done := w.inflight == 0
	w.mu.Unlock()
	if done {
		w.wg.Done()
	}
}

func (w *remoteWorker) verify(req *host.Request) {
	c := nvme.Command(req.Cmd[:])
	bs := uint64(w.ns.BlockSize)
	for b := range uint64(w.perIO) {
		if !Check(req.Buf[b*bs:(b+1)*bs], c.SLBA()+b, w.job.Seed) {
			w.mismatches++
		}
	}
}
