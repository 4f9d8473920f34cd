package reactor

import (
	"errors"
	"fmt"
	"slices"

	"golang.org/x/sys/unix"
)

// Group is the set of reactors of one engine, one per core.
type Group struct {
	reactors []*Reactor
}

// AllowedCores returns the CPUs this process may run on, in order: the
// affinity it started with. Taken once at start-up, on the main thread:
// the mask of whatever thread asks later may be a reactor's single core.
func AllowedCores() ([]int, error) {
	return slices.Clone(startupCores), startupCoresErr
}

var startupCores, startupCoresErr = threadCores()

func threadCores() ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return nil, fmt.Errorf("reactor: sched_getaffinity: %w", err)
	}
	var cores []int
	for c := range 1024 {
		if set.IsSet(c) {
			cores = append(cores, c)
		}
	}
	return cores, nil
}

// StartGroup starts one reactor per core in cores (all allowed cores when
// empty), each configured from base with its ID and Core filled in.
func StartGroup(cores []int, base Config) (*Group, error) {
	if len(cores) == 0 {
		var err error
		if cores, err = AllowedCores(); err != nil {
			return nil, err
		}
	}
	allowed, err := AllowedCores()
	if err != nil {
		return nil, err
	}
	g := &Group{}
	for i, core := range cores {
		if core >= 0 && !slices.Contains(allowed, core) {
			g.Stop()
			return nil, fmt.Errorf("reactor: core %d is not in this process's CPU set %v", core, allowed)
		}
		cfg := base
		cfg.ID, cfg.Core = i, core
		r, err := Start(cfg)
		if err != nil {
			g.Stop()
			return nil, err
		}
		g.reactors = append(g.reactors, r)
	}
	return g, nil
}

// Reactors returns the group's reactors, by ID.
func (g *Group) Reactors() []*Reactor { return g.reactors }

// Len returns the number of reactors.
func (g *Group) Len() int { return len(g.reactors) }

// Get returns reactor i.
func (g *Group) Get(i int) *Reactor { return g.reactors[i] }

// Stop stops every reactor and waits for them.
func (g *Group) Stop() {
	for _, r := range g.reactors {
		r.Stop()
	}
}

// Broadcast runs f on every reactor, in order, and joins the errors.
func (g *Group) Broadcast(f func(r *Reactor) error) error {
	var errs []error
	for _, r := range g.reactors {
		if err := r.Call(f); err != nil {
			errs = append(errs, fmt.Errorf("reactor %d: %w", r.ID(), err))
		}
	}
	return errors.Join(errs...)
}
