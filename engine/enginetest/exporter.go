// Package enginetest holds test doubles for the engine's collaborators.
package enginetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/reactor"
)

// Exporter is a fake NVMe-oF target. Like a real one it opens a channel to
// every namespace's device (on R) while it exports it, so that the engine's
// ordering of device opens and closes is exercised; it serves no network.
type Exporter struct {
	R *reactor.Reactor

	mu    sync.Mutex
	subs  map[string]engine.SubsystemSpec
	chans map[string]*bdev.Channel
	conns map[string]int
	ctrls map[string]int
	fail  error
	calls []string
}

// NewExporter returns a fake target opening its channels on r.
func NewExporter(r *reactor.Reactor) *Exporter {
	return &Exporter{R: r, subs: map[string]engine.SubsystemSpec{}, chans: map[string]*bdev.Channel{}, conns: map[string]int{}, ctrls: map[string]int{}}
}

// FailNext makes the next call fail with err.
func (x *Exporter) FailNext(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.fail = err
}

// SetSessions sets what Connections and Controllers report for nqn.
func (x *Exporter) SetSessions(nqn string, connections, controllers int) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.conns[nqn], x.ctrls[nqn] = connections, controllers
}

// Subsystem returns the spec exported as nqn.
func (x *Exporter) Subsystem(nqn string) (engine.SubsystemSpec, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	s, ok := x.subs[nqn]
	return s, ok
}

// NQNs returns the exported subsystems, sorted.
func (x *Exporter) NQNs() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []string
	for n := range x.subs {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Calls returns the calls made so far, as "add NQN", "remove NQN",
// "resize NQN".
func (x *Exporter) Calls() []string {
	x.mu.Lock()
	defer x.mu.Unlock()
	return slices.Clone(x.calls)
}

func (x *Exporter) takeFail() error {
	err := x.fail
	x.fail = nil
	return err
}

func (x *Exporter) openChannel(nqn string, dev bdev.Device) error {
	ch, err := bdev.Open(dev, x.R)
	if err != nil {
		return err
	}
	x.chans[nqn] = ch
	return nil
}

func (x *Exporter) closeChannel(nqn string) error {
	ch := x.chans[nqn]
	delete(x.chans, nqn)
	if ch == nil {
		return nil
	}
	return x.R.Call(func(*reactor.Reactor) error { return ch.Close() })
}

// AddSubsystem implements engine.Exporter.
func (x *Exporter) AddSubsystem(_ context.Context, spec engine.SubsystemSpec) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, "add "+spec.NQN)
	if err := x.takeFail(); err != nil {
		return err
	}
	if _, dup := x.subs[spec.NQN]; dup {
		return fmt.Errorf("fake target: subsystem %s exists", spec.NQN)
	}
	if len(spec.Namespaces) != 1 || spec.Namespaces[0].Device == nil {
		return errors.New("fake target: want one namespace with a device")
	}
	if err := x.openChannel(spec.NQN, spec.Namespaces[0].Device); err != nil {
		return err
	}
	x.subs[spec.NQN] = spec
	return nil
}

// RemoveSubsystem implements engine.Exporter.
func (x *Exporter) RemoveSubsystem(_ context.Context, nqn string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.calls = append(x.calls, "remove "+nqn)
	if err := x.takeFail(); err != nil {
		return err
	}
	if _, ok := x.subs[nqn]; !ok {
		return fmt.Errorf("fake target: no subsystem %s", nqn)
	}
	delete(x.subs, nqn)
	return x.closeChannel(nqn)
}

// Controllers implements engine.Exporter.
func (x *Exporter) Controllers(nqn string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.ctrls[nqn]
}

// Connections implements engine.Exporter.
func (x *Exporter) Connections(nqn string) int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.conns[nqn]
}
