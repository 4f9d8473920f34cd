package lvol

import (
	"slices"

	"github.com/strata-storage/strata/reactor"
)

// grace holds back the clusters whose last reference went until no I/O
// can still reach them, then frees them.
//
// A request's reactor looked its clusters up when it was submitted: a
// read of a cluster whose unmap is applied meanwhile may still be in
// flight, and had the cluster been given to another volume and written,
// it would return that volume's data (a write in place would corrupt
// it). So the data path counts its children by epoch (the parity of
// Store.epoch, read before any lookup): to free what was released, the
// metadata reactor starts a new epoch and waits, on every reactor, for
// the children of the one before to finish. A request submitted after
// the new epoch began sees the map without the released clusters. Then
// the pool is flushed, so that the record that released them is durable
// before another volume's data can land in them: else a crash could
// bring the old mapping back over that data.
//
// Metadata reactor only, but for the backends' side (whenDrained).
type grace struct {
	s        *Store
	held     []uint32 // released since the period running began
	draining []uint32 // waiting for the period running
	busy     bool
	waiting  int
	kick     graceKick
}

type graceKick struct{ g *grace }

func (k *graceKick) Run(*reactor.Reactor) { k.g.start() }

func (g *grace) init(s *Store) {
	g.s = s
	g.kick.g = g
}

// freed is the tables' hook: pc lost its last reference.
func (s *Store) freed(pc uint32) {
	s.grace.held = append(s.grace.held, pc)
	s.r.Defer(&s.grace.kick) // after the record that freed it is applied whole
}

// holding reports clusters on their way back to the pool.
func (g *grace) holding() bool { return len(g.held)+len(g.draining) > 0 }

// limbo returns the clusters held back: mapped by nothing, not free.
func (g *grace) limbo() map[uint32]bool {
	m := make(map[uint32]bool, len(g.held)+len(g.draining))
	for _, pc := range g.held {
		m[pc] = true
	}
	for _, pc := range g.draining {
		m[pc] = true
	}
	return m
}

// start begins a grace period for the clusters held, if none is running.
func (g *grace) start() {
	s := g.s
	if g.busy || len(g.held) == 0 || s.err != nil {
		return
	}
	g.busy = true
	g.draining, g.held = g.held, nil
	p := (s.epoch.Add(1) - 1) & 1
	s.mu.Lock()
	backends := slices.Clone(s.backends)
	s.mu.Unlock()
	g.waiting = len(backends) + 1
	arrive := reactor.TaskFunc(func(*reactor.Reactor) { g.arrive() })
	for _, b := range backends {
		check := reactor.TaskFunc(func(*reactor.Reactor) {
			b.whenDrained(p, func() { post(b.r, s.r, arrive) }) // a stopped store has no period to end
		})
		if post(s.r, b.r, check) != nil {
			g.waiting-- // a stopped reactor has nothing in flight
		}
	}
	g.arrive()
}

// post hands t from reactor from to reactor to (deferred when they are
// the same: a reactor never waits on its own inbox).
func post(from, to *reactor.Reactor, t reactor.Task) error {
	if from == to {
		from.Defer(t)
		return nil
	}
	return to.Post(t)
}

// arrive counts a backend whose epoch drained.
func (g *grace) arrive() {
	if g.waiting--; g.waiting > 0 {
		return
	}
	s := g.s
	s.fl.flush(func(err error) {
		g.busy = false
		if err != nil {
			s.fault(err) // the clusters stay held: nothing reuses them
			return
		}
		for _, pc := range g.draining {
			s.t.release(pc)
		}
		g.draining = nil
		s.spaceFreed()
		g.start()
	})
}

// whenDrained calls fn once this backend has no child of epoch parity p
// in flight. The backend's reactor only.
func (b *backend) whenDrained(p uint64, fn func()) {
	if b.closed || b.inflight[p] == 0 {
		fn()
		return
	}
	b.drain[p] = append(b.drain[p], fn)
}
