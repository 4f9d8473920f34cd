package target

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nqn"
)

// Limits of the subsystem model.
const (
	// MaxNamespaces bounds the namespaces of one subsystem (and so the size
	// of the active namespace list and changed-namespace log).
	MaxNamespaces = 1024
	serialLen     = 20 // Identify Controller SN, bytes
	modelLen      = 40 // Identify Controller MN, bytes
)

// Errors of subsystem configuration, matched with errors.Is.
var (
	ErrSubsystemExists   = errors.New("target: subsystem exists")
	ErrNoSubsystem       = errors.New("target: no such subsystem")
	ErrNamespaceExists   = errors.New("target: namespace ID in use")
	ErrNoNamespace       = errors.New("target: no such namespace")
	ErrBadConfig         = errors.New("target: invalid configuration")
	ErrControllerIDRange = errors.New("target: controller ID range exhausted")
)

// Namespace maps an NSID to a block device. The identifiers must stay the
// same across restarts (the engine persists them): hosts use them to find
// the same data again, and multipath uses them to match paths.
type Namespace struct {
	ID     uint32
	Device bdev.Device
	UUID   [16]byte
	NGUID  [16]byte
	EUI64  [8]byte
}

// SubsystemConfig describes an NVM subsystem.
type SubsystemConfig struct {
	NQN    string
	Serial string // up to 20 ASCII characters
	Model  string // up to 40 ASCII characters; "Strata" when empty
	// AllowAnyHost admits every host NQN; otherwise only Hosts may connect.
	AllowAnyHost bool
	Hosts        []string
	Namespaces   []Namespace
	// MinControllerID and MaxControllerID bound the controller IDs handed
	// out (1..0xFFEF when zero), so that two targets exporting one subsystem
	// for multipath never give a host the same ID.
	MinControllerID, MaxControllerID uint16
	// Listeners are the addresses (as Target.Listen returns them) hosts may
	// reach the subsystem through; empty means every listener. Connect on
	// another listener is refused and discovery does not list it there.
	Listeners []string
}

func (c *SubsystemConfig) validate() error {
	if err := nqn.Validate(c.NQN); err != nil {
		return fmt.Errorf("%w: subsystem %w", ErrBadConfig, err)
	}
	if c.NQN == nqn.Discovery {
		return fmt.Errorf("%w: %s is the discovery subsystem's NQN", ErrBadConfig, c.NQN)
	}
	if !printableASCII(c.Serial, serialLen) || c.Serial == "" {
		return fmt.Errorf("%w: serial %q: want 1-%d printable ASCII characters", ErrBadConfig, c.Serial, serialLen)
	}
	if !printableASCII(c.Model, modelLen) {
		return fmt.Errorf("%w: model %q: want up to %d printable ASCII characters", ErrBadConfig, c.Model, modelLen)
	}
	for _, h := range c.Hosts {
		if err := nqn.Validate(h); err != nil {
			return fmt.Errorf("%w: host %w", ErrBadConfig, err)
		}
	}
	if len(c.Namespaces) > MaxNamespaces {
		return fmt.Errorf("%w: %d namespaces, more than %d", ErrBadConfig, len(c.Namespaces), MaxNamespaces)
	}
	seen := map[uint32]bool{}
	for _, ns := range c.Namespaces {
		if err := validNamespace(ns); err != nil {
			return err
		}
		if seen[ns.ID] {
			return fmt.Errorf("%w: %w: %d", ErrBadConfig, ErrNamespaceExists, ns.ID)
		}
		seen[ns.ID] = true
	}
	lo, hi := c.controllerIDRange()
	if lo == 0 || lo > hi || hi > maxControllerID {
		return fmt.Errorf("%w: controller ID range %d-%d: want 1 <= min <= max <= %#x", ErrBadConfig, lo, hi, maxControllerID)
	}
	return nil
}

func validNamespace(ns Namespace) error {
	if ns.ID == 0 || ns.ID == 0xffffffff {
		return fmt.Errorf("%w: namespace ID %d is reserved", ErrBadConfig, ns.ID)
	}
	if ns.Device == nil {
		return fmt.Errorf("%w: namespace %d has no device", ErrBadConfig, ns.ID)
	}
	return nil
}

// maxControllerID is the largest dynamic controller ID (0xFFF0-0xFFFF are
// reserved; 0xFFFF asks for dynamic allocation in Connect).
const maxControllerID = 0xffef

func (c *SubsystemConfig) controllerIDRange() (uint16, uint16) {
	lo, hi := c.MinControllerID, c.MaxControllerID
	if lo == 0 && hi == 0 {
		return 1, maxControllerID
	}
	return lo, hi
}

func printableASCII(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Subsystem is a live NVM subsystem: its configuration and controllers.
type Subsystem struct {
	mu  sync.Mutex
	cfg SubsystemConfig
	// namespaces is sorted by ID and replaced whole (under mu) on change,
	// so reactors look a command's namespace up without taking mu.
	namespaces  atomic.Pointer[[]*nsState]
	controllers map[uint16]*Controller
	nextID      uint16
}

// nsState is a namespace with its per-reactor channels.
type nsState struct {
	Namespace
	channels    []*bdev.Channel // by reactor ID
	unsubscribe func()          // ends the watch of the device's events
}

func newSubsystem(cfg SubsystemConfig) *Subsystem {
	cfg.Hosts = slices.Clone(cfg.Hosts)
	cfg.Listeners = slices.Clone(cfg.Listeners)
	if cfg.Model == "" {
		cfg.Model = "Strata"
	}
	lo, _ := cfg.controllerIDRange()
	return &Subsystem{cfg: cfg, controllers: make(map[uint16]*Controller), nextID: lo}
}

// NQN returns the subsystem's name.
func (s *Subsystem) NQN() string { return s.cfg.NQN }

// hostAllowed reports whether hostNQN may connect.
func (s *Subsystem) hostAllowed(hostNQN string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg.AllowAnyHost || slices.Contains(s.cfg.Hosts, hostNQN)
}

// listensOn reports whether hosts may reach the subsystem through the
// listener at addr. The configuration is immutable after creation.
func (s *Subsystem) listensOn(addr string) bool {
	return len(s.cfg.Listeners) == 0 || slices.Contains(s.cfg.Listeners, addr)
}

// controllerCount returns how many controllers the subsystem has.
func (s *Subsystem) controllerCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.controllers)
}

// allocControllerID reserves the next free controller ID in the range,
// round robin so that a reconnecting host does not reuse a stale ID at once.
func (s *Subsystem) allocControllerID(c *Controller) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	lo, hi := s.cfg.controllerIDRange()
	n := int(hi-lo) + 1
	for range n {
		id := s.nextID
		if s.nextID == hi {
			s.nextID = lo
		} else {
			s.nextID++
		}
		if _, used := s.controllers[id]; !used {
			s.controllers[id] = c
			return id, nil
		}
	}
	return 0, fmt.Errorf("%w: %d controllers in %s", ErrControllerIDRange, n, s.cfg.NQN)
}

func (s *Subsystem) controller(id uint16) *Controller {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.controllers[id]
}

func (s *Subsystem) releaseControllerID(id uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.controllers, id)
}

// nsList returns the namespaces in NSID order; the caller must not modify
// the slice.
func (s *Subsystem) nsList() []*nsState {
	if p := s.namespaces.Load(); p != nil {
		return *p
	}
	return nil
}

// namespace returns the namespace with nsid, or nil.
func (s *Subsystem) namespace(nsid uint32) *nsState {
	list := s.nsList()
	i, ok := slices.BinarySearchFunc(list, nsid, cmpNSID)
	if !ok {
		return nil
	}
	return list[i]
}

// namespaceIDs returns the active NSIDs in increasing order.
func (s *Subsystem) namespaceIDs() []uint32 {
	list := s.nsList()
	ids := make([]uint32, len(list))
	for i, n := range list {
		ids[i] = n.ID
	}
	return ids
}

func (s *Subsystem) controllersSnapshot() []*Controller {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Controller, 0, len(s.controllers))
	for _, c := range s.controllers {
		out = append(out, c)
	}
	return out
}

// cmpNSID orders namespaces by ID, for binary search.
func cmpNSID(n *nsState, id uint32) int { return cmp.Compare(n.ID, id) }

// insertNamespace adds ns in NSID order; false if the ID is taken.
func (s *Subsystem) insertNamespace(ns *nsState) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.nsList()
	i, found := slices.BinarySearchFunc(list, ns.ID, cmpNSID)
	if found {
		return false
	}
	next := slices.Insert(slices.Clone(list), i, ns)
	s.namespaces.Store(&next)
	return true
}

// namespaceChanged records nsid in every controller's changed namespace
// list and raises the Namespace Attribute Changed event.
func (s *Subsystem) namespaceChanged(nsid uint32) {
	for _, c := range s.controllersSnapshot() {
		c.namespaceChanged(nsid)
	}
}

// waitControllers waits until every controller has gone.
func (s *Subsystem) waitControllers(ctx context.Context) error {
	for _, c := range s.controllersSnapshot() {
		select {
		case <-c.done:
		case <-ctx.Done():
			return fmt.Errorf("target: waiting for controller %d of %s: %w", c.id, s.cfg.NQN, ctx.Err())
		}
	}
	return nil
}

// connections counts the subsystem's open queues (admin and I/O).
func (s *Subsystem) connections() int {
	n := 0
	for _, c := range s.controllersSnapshot() {
		c.mu.Lock()
		n += len(c.ioqs)
		if c.admin != nil {
			n++
		}
		c.mu.Unlock()
	}
	return n
}
