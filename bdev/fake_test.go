package bdev

import "github.com/strata-storage/strata/reactor"

type fakeDevice struct {
	Base
	closed bool
}

func (f *fakeDevice) OpenBackend(*reactor.Reactor) (Backend, error) { return nil, nil }
func (f *fakeDevice) Close() error                                  { f.closed = true; return nil }
