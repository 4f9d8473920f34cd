package engine

import (
	"context"
	"maps"
	"slices"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nqn"
)

// HostSpec names a host (an NVMe-oF initiator) by its host NQN.
type HostSpec struct {
	Name string
	NQN  string
}

// Host describes a known host.
type Host struct {
	Name string `json:"name"`
	NQN  string `json:"nqn"`
	// Shares lists the shares that allow this host by NQN.
	Shares []string `json:"shares"`
}

func (e *Engine) hostView(name string) Host {
	h := e.st.hosts[name]
	out := Host{Name: name, NQN: h.NQN, Shares: []string{}}
	for _, share := range slices.Sorted(maps.Keys(e.st.shares)) {
		if slices.Contains(e.st.shares[share].Hosts, h.NQN) {
			out.Shares = append(out.Shares, share)
		}
	}
	return out
}

// Hosts lists the known hosts by name.
func (e *Engine) Hosts() []Host {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Host, 0, len(e.st.hosts))
	for _, name := range slices.Sorted(maps.Keys(e.st.hosts)) {
		out = append(out, e.hostView(name))
	}
	return out
}

// Host returns the host called name.
func (e *Engine) Host(name string) (Host, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.hosts[name]; !ok {
		return Host{}, errorf(ErrNotFound, "host %q not found", name)
	}
	return e.hostView(name), nil
}

// CreateHost records a host. The same spec again returns it (created
// false); another NQN under the name, or the NQN under another name, is a
// conflict.
func (e *Engine) CreateHost(_ context.Context, spec HostSpec) (Host, bool, error) {
	if err := bdev.ValidName(spec.Name); err != nil {
		return Host{}, false, errorf(ErrInvalid, "host name: %v", err)
	}
	if err := nqn.Validate(spec.NQN); err != nil {
		return Host{}, false, errorf(ErrInvalid, "host %q: %w", spec.Name, err)
	}
	if err := e.begin(); err != nil {
		return Host{}, false, err
	}
	defer e.mu.Unlock()
	if h, ok := e.st.hosts[spec.Name]; ok {
		if h.NQN != spec.NQN {
			return Host{}, false, errorf(ErrConflict, "host %q exists with NQN %s", spec.Name, h.NQN)
		}
		return e.hostView(spec.Name), false, nil
	}
	for name, h := range e.st.hosts {
		if h.NQN == spec.NQN {
			return Host{}, false, errorf(ErrConflict, "NQN %s is already host %q", spec.NQN, name)
		}
	}
	next := e.st.clone()
	next.hosts[spec.Name] = hostRecord(spec)
	if err := e.commit(next); err != nil {
		return Host{}, false, err
	}
	e.log.Info("host added", "host", spec.Name, "nqn", spec.NQN)
	return e.hostView(spec.Name), true, nil
}

// DeleteHost forgets a host. A host that a share allows is refused: remove
// it from the share first (shares are replaced whole).
func (e *Engine) DeleteHost(_ context.Context, name string) error {
	// A share being created (its exporter call under shareMu, not mu)
	// may allow this host: wait for it, so the refusal below sees it.
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	if err := e.begin(); err != nil {
		return err
	}
	defer e.mu.Unlock()
	if _, ok := e.st.hosts[name]; !ok {
		return errorf(ErrNotFound, "host %q not found", name)
	}
	if v := e.hostView(name); len(v.Shares) > 0 {
		return errorf(ErrConflict, "host %q is allowed by shares %s: remove those shares first", name, joinNames(v.Shares, 5))
	}
	next := e.st.clone()
	delete(next.hosts, name)
	if err := e.commit(next); err != nil {
		return err
	}
	e.log.Info("host removed", "host", name)
	return nil
}
