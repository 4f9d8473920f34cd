package reactor

import (
	"errors"
	"fmt"
	"os"
	"runtime"
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
	reserveProcs(len(allowed) + len(cores))
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

// reserveProcs raises GOMAXPROCS to n unless the user set it. A reactor
// holds a P (a Go scheduler slot) for as long as its locked thread runs,
// and also while it sleeps in io_uring_enter: the runtime takes a P back
// from a blocking system call only when sysmon notices, which can take up
// to 10 ms. With GOMAXPROCS equal to the CPU count, reactors would starve
// the goroutines that serve connections (measured: 4 KiB reads at queue
// depth 1 over NVMe/TCP on one core took 305 µs at p50, 90 µs with a P
// more). So every reactor gets a P of its own on top of one per CPU. It is
// only raised, never lowered: groups come and go within one process.
func reserveProcs(n int) {
	if os.Getenv("GOMAXPROCS") != "" {
		return
	}
	if runtime.GOMAXPROCS(0) < n {
		runtime.GOMAXPROCS(n)
	}
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
