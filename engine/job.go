package engine

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/strata-storage/strata/bdev"
)

// workCheckpointBytes is how much work a worker does between updates of
// its volume's workRecord.DoneBlocks in the state file: what a crash
// makes it do again at most, for one state write (an fsync) per step.
const workCheckpointBytes = 1 << 30

// errDeleting is why a worker stops when its volume is deleted.
var errDeleting = errors.New("stopped for the volume's deletion")

// job is a volume's device work (its workRecord) under way or stopped
// short. A worker goroutine does it outside the engine's mutex; the engine
// decides, under the mutex, when one starts (a mutation, or Open resuming
// the state file's work) and cancels it (DeleteVolume, Close), and then
// waits for stopped. The worker takes the mutex only between steps, to
// record progress and to end the job.
type job struct {
	op     string // workCreate or workResize
	online uint64 // blocks hosts see while the job lasts
	target uint64 // the volume's blocks once it is done
	// done counts the blocks of [online, target) ready, for views. Written
	// by the worker only.
	done    atomic.Uint64
	cancel  context.CancelCauseFunc
	stopped chan struct{} // closed, under e.mu, when the worker returns
	// err is why the worker stopped short; nil while it runs. Guarded by
	// Engine.mu. A job that ends well is dropped from its liveVolume
	// instead, so a job with no err is one running.
	err error
}

func (j *job) running() bool { return j.err == nil }

// percent is how far the job is, for messages.
func (j *job) percent() uint64 {
	total := j.target - j.online
	if total == 0 {
		return 100
	}
	return 100 * j.done.Load() / total
}

// startJob starts the worker doing w for volume name (record v), from its
// DoneBlocks on. Called with e.mu held, on a volume whose pool is online,
// with no job running.
func (e *Engine) startJob(name string, lv *liveVolume, v volumeRecord, w workRecord) *job {
	ctx, cancel := context.WithCancelCause(context.Background())
	j := &job{op: w.Op, online: w.OnlineBlocks, target: lv.kind.blocks(v), cancel: cancel, stopped: make(chan struct{})}
	j.done.Store(w.DoneBlocks)
	lv.job = j
	e.workers.Add(1)
	go e.work(ctx, name, lv, j, e.pools[v.Pool].dev, v)
	return j
}

// work is a job's worker: the kind's device work from where the job
// starts, then the step that makes the volume whole.
func (e *Engine) work(ctx context.Context, name string, lv *liveVolume, j *job, pool bdev.Device, v volumeRecord) {
	defer e.workers.Done()
	from, saved := j.done.Load(), j.done.Load()
	step := workCheckpointBytes / uint64(pool.Info().BlockSize)
	err := lv.kind.prepare(ctx, pool, e.r, v, j.online+from, j.target, func(n uint64) {
		j.done.Store(from + n)
		if from+n-saved >= step {
			e.checkpoint(ctx, name, j)
			saved = from + n
		}
	})
	if err == nil {
		err = e.complete(ctx, name, lv, j, pool)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	defer close(j.stopped)
	if err == nil {
		lv.job = nil
		e.log.Info("volume work done: online", "volume", name, "op", j.op, "size_bytes", j.target*uint64(pool.Info().BlockSize))
		return
	}
	if ctx.Err() != nil {
		err = context.Cause(ctx)
	} else {
		e.log.Error("volume work failed", "volume", name, "op", j.op, "err", err)
	}
	j.err = err
	e.saveProgress(name, j)
}

// resumeFrom is the work to resume volume v's stopped job j from: what
// the state file says is left or, when that is done and only making the
// device whole failed (see complete), just that.
func resumeFrom(v volumeRecord, j *job) workRecord {
	if v.Work != (workRecord{}) {
		return v.Work
	}
	return workRecord{Op: j.op, OnlineBlocks: j.online, DoneBlocks: j.target - j.online}
}

// checkpoint records how far j is in the state file.
func (e *Engine) checkpoint(ctx context.Context, name string, j *job) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if ctx.Err() == nil { // else whoever cancelled the job decides
		e.saveProgress(name, j)
	}
}

// saveProgress writes j's progress into its volume's work record, if it
// still has one. A failure is only logged: the work is done again.
// Called with e.mu held.
func (e *Engine) saveProgress(name string, j *job) {
	v, ok := e.st.volumes[name]
	if !ok || v.Work.Op != j.op || v.Work.DoneBlocks >= j.done.Load() {
		return
	}
	next := e.st.clone()
	v.Work.DoneBlocks = j.done.Load()
	next.volumes[name] = v
	if err := e.commit(next); err != nil {
		e.log.Warn("volume progress not recorded", "volume", name, "err", err)
	}
}

// complete makes the volume whole once its work is done: the state file
// first (no work left), then the device shows every block: opened for a
// new volume, grown in place (under its quiesce, outside e.mu: it waits
// for the I/O in flight) for an old one. Crashing in between leaves a
// state the next Open makes whole.
func (e *Engine) complete(ctx context.Context, name string, lv *liveVolume, j *job, pool bdev.Device) error {
	e.mu.Lock()
	if err := ctx.Err(); err != nil {
		e.mu.Unlock()
		return err
	}
	v := e.st.volumes[name]
	next := e.st.clone()
	v.Work = workRecord{}
	next.volumes[name] = v
	if err := e.commit(next); err != nil {
		e.mu.Unlock()
		return err
	}
	dev := lv.dev
	if dev == nil {
		var err error
		lv.dev, err = lv.kind.open(pool, v, j.target)
		e.mu.Unlock()
		return err
	}
	e.mu.Unlock()
	return dev.Resize(ctx, j.target)
}

// await waits for j to stop, or for ctx to end, and returns the volume's
// view then. Called without e.mu; what names the operation in errors.
func (e *Engine) await(ctx context.Context, name string, j *job, what string) (Volume, error) {
	if j != nil {
		select {
		case <-j.stopped:
		case <-ctx.Done():
			return Volume{}, errorf(ErrInterrupted, "volume %q: stopped waiting for %s (%d%% done): it goes on in the background, and the volume's state shows its progress: %w", name, what, j.percent(), ctx.Err())
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	lv, ok := e.volumes[name]
	switch {
	case !ok:
		return Volume{}, errorf(ErrNotFound, "volume %q was deleted meanwhile", name)
	case j != nil && lv.job == j:
		kind := ErrDevice
		switch {
		case errors.Is(j.err, ErrClosed):
			kind = ErrClosed
		case errors.Is(j.err, errDeleting):
			kind = ErrConflict
		}
		return Volume{}, errorf(kind, "volume %q: %s stopped: %w", name, what, j.err)
	}
	return e.volumeView(name), nil
}

// stopJob cancels volume name's running job and waits for its worker, or
// for ctx. Called with e.mu held; it returns with e.mu released.
func (e *Engine) stopJob(ctx context.Context, name string, j *job) error {
	j.cancel(errDeleting)
	e.mu.Unlock()
	select {
	case <-j.stopped:
		return nil
	case <-ctx.Done():
		return errorf(ErrInterrupted, "volume %q not deleted: stopped waiting for its work to stop; delete it again: %w", name, ctx.Err())
	}
}

// unavailable says why volume name has no device. Called with e.mu held.
func (e *Engine) unavailable(name string) error {
	lv := e.volumes[name]
	if j := lv.job; j != nil && j.running() && j.op == workCreate {
		return errorf(ErrConflict, "volume %q is being created (%d%% of its space cleared): it can be used once it is online", name, j.percent())
	}
	if j := lv.job; j != nil && j.op == workCreate {
		return errorf(ErrConflict, "volume %q was not created: %v: create it again to resume, or delete it", name, j.err)
	}
	return errorf(ErrConflict, "volume %q is faulted: %v", name, lv.err)
}

// describeJob fills the view's state, size and progress of a volume with
// a job; bs is the block size.
func describeJob(j *job, bs uint64, out *Volume) {
	out.Progress = &Progress{DoneBytes: j.done.Load() * bs, TotalBytes: (j.target - j.online) * bs, TargetSizeBytes: j.target * bs}
	if j.online > 0 {
		out.SizeBytes = j.online * bs
	}
	switch {
	case j.running() && j.op == workCreate:
		out.State = StateCreating
	case j.running():
		out.State = StateResizing
	case j.op == workCreate:
		out.State, out.Error = StateFaulted, fmt.Sprintf("creating it stopped: %v: create it again to resume, or delete it", j.err)
	default:
		out.Error = fmt.Sprintf("growing it to %d bytes stopped: %v: resize it again to resume", j.target*bs, j.err)
	}
}
