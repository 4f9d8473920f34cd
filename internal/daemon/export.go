package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"syscall"

	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/nvmeof/target"
)

// targetExporter publishes the engine's shares through the NVMe/TCP
// target. The target's listeners are shared: a listener is opened by the
// first subsystem that names it and closed with the last. Each listener's
// IP also gets the well-known discovery port, so that `nvme discover`
// works without knowing the I/O port; a subsystem is scoped to its own
// listeners, so the discovery port serves discovery only.
type targetExporter struct {
	t             *target.Target
	log           *slog.Logger
	discoveryPort uint16 // 0: no discovery listeners

	mu        sync.Mutex
	listeners map[string]*sharedListener // by requested address
	subs      map[string]exported        // by NQN
	closed    bool                       // listeners stopped: no new ones
}

type sharedListener struct {
	bound string // the address the target listens on (its key there)
	refs  int
}

// exported is what the exporter holds for one subsystem.
type exported struct {
	listeners  []string // requested addresses, I/O and discovery
	namespaces []engine.NamespaceSpec
}

func newTargetExporter(t *target.Target, discoveryPort uint16, log *slog.Logger) *targetExporter {
	return &targetExporter{
		t: t, log: log, discoveryPort: discoveryPort,
		listeners: map[string]*sharedListener{}, subs: map[string]exported{},
	}
}

var _ engine.Exporter = (*targetExporter)(nil)

// AddSubsystem implements engine.Exporter.
func (x *targetExporter) AddSubsystem(_ context.Context, spec engine.SubsystemSpec) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.closed {
		return errors.New("target: shutting down")
	}
	if _, ok := x.subs[spec.NQN]; ok {
		return fmt.Errorf("%w: subsystem %s is already exported", engine.ErrConflict, spec.NQN)
	}
	var held, bound []string
	release := func() {
		for _, addr := range held {
			x.release(addr)
		}
	}
	for _, ap := range spec.Listeners {
		b, err := x.acquire(ap.String())
		if err != nil {
			release()
			return err
		}
		held, bound = append(held, ap.String()), append(bound, b)
	}
	held = append(held, x.acquireDiscovery(spec.Listeners)...)
	cfg := target.SubsystemConfig{
		NQN: spec.NQN, Serial: spec.Serial, Model: spec.Model,
		AllowAnyHost: spec.AllowAnyHost, Hosts: spec.Hosts, Listeners: bound,
	}
	for _, ns := range spec.Namespaces {
		cfg.Namespaces = append(cfg.Namespaces, target.Namespace{ID: ns.NSID, Device: ns.Device, UUID: ns.UUID, NGUID: ns.NGUID})
	}
	if err := x.t.AddSubsystem(cfg); err != nil {
		release()
		if errors.Is(err, target.ErrBadConfig) {
			return fmt.Errorf("%w: %w", engine.ErrInvalid, err)
		}
		return err
	}
	x.subs[spec.NQN] = exported{listeners: held, namespaces: slices.Clone(spec.Namespaces)}
	return nil
}

// acquire takes a reference on the listener at addr, opening it if this is
// the first. Called with x.mu held.
func (x *targetExporter) acquire(addr string) (string, error) {
	if l := x.listeners[addr]; l != nil {
		l.refs++
		return l.bound, nil
	}
	a, err := x.t.Listen(addr)
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return "", fmt.Errorf("%w: listener %s: the address is in use by another program", engine.ErrConflict, addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return "", fmt.Errorf("%w: listener %s: no such address on this host", engine.ErrInvalid, addr)
	case err != nil:
		return "", err
	}
	x.listeners[addr] = &sharedListener{bound: a.String(), refs: 1}
	return a.String(), nil
}

// acquireDiscovery opens the discovery port on each listener's IP and
// returns the addresses it holds. A discovery port that cannot be opened
// (another NVMe-oF target on the host has it, say) costs hosts only the
// convenience, so it is a warning, not a failure.
func (x *targetExporter) acquireDiscovery(listeners []netip.AddrPort) []string {
	if x.discoveryPort == 0 {
		return nil
	}
	var held []string
	for _, ap := range listeners {
		addr := netip.AddrPortFrom(ap.Addr(), x.discoveryPort).String()
		if ap.Port() == x.discoveryPort || slices.Contains(held, addr) {
			continue
		}
		if _, err := x.acquire(addr); err != nil {
			x.log.Warn("discovery port not served", "addr", addr, "err", err)
			continue
		}
		held = append(held, addr)
	}
	return held
}

// release drops a reference on the listener at addr and closes it with
// the last. Called with x.mu held.
func (x *targetExporter) release(addr string) {
	l := x.listeners[addr]
	if l == nil {
		return
	}
	if l.refs--; l.refs > 0 {
		return
	}
	delete(x.listeners, addr)
	if x.closed {
		return // stopListening closed it
	}
	if err := x.t.CloseListener(l.bound); err != nil {
		x.log.Warn("close listener", "addr", l.bound, "err", err)
	}
}

// RemoveSubsystem implements engine.Exporter.
func (x *targetExporter) RemoveSubsystem(ctx context.Context, nqn string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	sub, ok := x.subs[nqn]
	if !ok {
		return fmt.Errorf("%w: subsystem %s is not exported", engine.ErrInvalid, nqn)
	}
	if err := x.t.RemoveSubsystem(ctx, nqn); err != nil {
		return err
	}
	delete(x.subs, nqn)
	for _, addr := range sub.listeners {
		x.release(addr)
	}
	return nil
}

// Connections implements engine.Exporter.
func (x *targetExporter) Connections(nqn string) int { return x.t.Connections(nqn) }

// Controllers implements engine.Exporter.
func (x *targetExporter) Controllers(nqn string) int { return x.t.Controllers(nqn) }

// stopListening closes every listener: the first step of a drain, so no
// host connects while shares are being taken down. Existing connections
// carry on until their subsystems are removed.
func (x *targetExporter) stopListening() {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.closed = true
	for _, l := range x.listeners {
		if err := x.t.CloseListener(l.bound); err != nil {
			x.log.Warn("close listener", "addr", l.bound, "err", err)
		}
	}
}
