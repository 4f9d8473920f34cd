package bench

import (
	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/reactor"
)

// openChannel returns a function that overwrites one block of dev directly
// (behind the target), for corruption tests.
func openChannel(dev bdev.Device) (func(lba uint64, data []byte) error, error) {
	g, err := reactor.StartGroup([]int{-1}, reactor.Config{})
	if err != nil {
		return nil, err
	}
	ch, err := bdev.Open(dev, g.Get(0))
	if err != nil {
		g.Stop()
		return nil, err
	}
	return func(lba uint64, data []byte) error {
		defer g.Stop()
		defer g.Get(0).Call(func(*reactor.Reactor) error { return ch.Close() })
		buf := make([]byte, len(data))
		copy(buf, data)
		done := make(chan bdev.Status, 1)
		req := &bdev.Request{Op: bdev.OpWrite, LBA: lba, Blocks: 1, Buf: buf, Callback: func(r *bdev.Request) { done <- r.Status }}
		if err := g.Get(0).Post(reactor.TaskFunc(func(*reactor.Reactor) { ch.Submit(req) })); err != nil {
			return err
		}
		return (<-done).Err()
	}, nil
}
