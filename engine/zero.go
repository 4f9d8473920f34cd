package engine

import (
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// maxUnmapBlocks bounds one unmap request (Request.Blocks is 32 bits).
const maxUnmapBlocks = 1 << 24

// unmapRange deallocates blocks [lba, lba+blocks) of dev through a channel
// on r, so that they read back as zeroes (every Strata device guarantees
// that of Unmap). A control-path helper: it allocates and waits.
func unmapRange(dev bdev.Device, r *reactor.Reactor, lba, blocks uint64) error {
	ch, err := bdev.Open(dev, r)
	if err != nil {
		return err
	}
	var errUnmap error
	done := make(chan bdev.Status, 1)
	for blocks > 0 && errUnmap == nil {
		n := min(blocks, maxUnmapBlocks)
		req := &bdev.Request{Op: bdev.OpUnmap, LBA: lba, Blocks: uint32(n), Callback: func(req *bdev.Request) { done <- req.Status }}
		if err := r.Post(reactor.TaskFunc(func(*reactor.Reactor) { ch.Submit(req) })); err != nil {
			errUnmap = err
			break
		}
		if st := <-done; st != bdev.StatusOK {
			errUnmap = fmt.Errorf("unmap blocks [%d, %d): %w", lba, lba+n, st.Err())
		}
		lba, blocks = lba+n, blocks-n
	}
	if err := r.Call(func(*reactor.Reactor) error { return ch.Close() }); err != nil && errUnmap == nil {
		return err
	}
	return errUnmap
}
