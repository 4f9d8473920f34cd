package engine

import (
	"context"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// unmapStepBytes is the span of one unmap request while clearing space: a
// step of progress, and how long a cancel waits at most (one request).
// Devices that unmap by writing zeroes take a while over 16 MiB; those
// that deallocate take microseconds, so the number of requests matters
// little.
const unmapStepBytes = 16 << 20

// unmapRange deallocates blocks [lba, lba+blocks) of dev through a channel
// on r, so that they read back as zeroes (every Strata device guarantees
// that of Unmap), one request at a time, calling progress with the blocks
// done after each. It stops with ctx's error once ctx is done, after the
// request in flight. A control-path helper: it allocates and waits.
func unmapRange(ctx context.Context, dev bdev.Device, r *reactor.Reactor, lba, blocks uint64, progress func(done uint64)) error {
	ch, err := bdev.Open(dev, r)
	if err != nil {
		return err
	}
	step := max(unmapStepBytes/uint64(dev.Info().BlockSize), 1)
	var errUnmap error
	done := make(chan bdev.Status, 1)
	req := &bdev.Request{Op: bdev.OpUnmap, Callback: func(req *bdev.Request) { done <- req.Status }}
	for off := uint64(0); off < blocks && errUnmap == nil; {
		if errUnmap = ctx.Err(); errUnmap != nil {
			break
		}
		n := min(blocks-off, step)
		req.LBA, req.Blocks = lba+off, uint32(n)
		if err := r.Post(reactor.TaskFunc(func(*reactor.Reactor) { ch.Submit(req) })); err != nil {
			errUnmap = err
			break
		}
		if st := <-done; st != bdev.StatusOK {
			errUnmap = fmt.Errorf("unmap blocks [%d, %d): %w", lba+off, lba+off+n, st.Err())
			break
		}
		off += n
		progress(off)
	}
	if err := r.Call(func(*reactor.Reactor) error { return ch.Close() }); err != nil && errUnmap == nil {
		return err
	}
	return errUnmap
}
