package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/nvmeof/nqn"
)

// Limits of one share.
const (
	MaxListeners = 16
	MaxHosts     = 1024
)

// ShareSpec asks for a volume to be exported as an NVMe-oF subsystem. The
// share is named after its volume (one share per volume).
type ShareSpec struct {
	Volume string
	NQN    string
	// Listeners are "ip:port" TCP addresses ("[ipv6]:port" for IPv6).
	Listeners []string
	// Hosts are the host NQNs allowed to connect; AllowAnyHost admits all
	// hosts instead. Exactly one of the two must be given.
	Hosts        []string
	AllowAnyHost bool
}

// Share describes a share.
type Share struct {
	Name          string   `json:"name"`
	Volume        string   `json:"volume"`
	NQN           string   `json:"nqn"`
	Listeners     []string `json:"listeners"`
	Hosts         []string `json:"hosts"`
	AllowAnyHost  bool     `json:"allow_any_host"`
	Serial        string   `json:"serial"`
	NSID          uint32   `json:"nsid"`
	NamespaceUUID string   `json:"namespace_uuid"`
	NGUID         string   `json:"nguid"`
	State         string   `json:"state"`
	Error         string   `json:"error,omitempty"`
	Connections   int      `json:"connections"`
	Controllers   int      `json:"controllers"`
}

func (e *Engine) shareView(name string) Share {
	sh, ls := e.st.shares[name], e.shares[name]
	vol := e.volumeView(name)
	out := Share{
		Name: name, Volume: name, NQN: sh.NQN, Listeners: slices.Clone(sh.Listeners), Hosts: slices.Clone(sh.Hosts),
		AllowAnyHost: sh.AllowAnyHost, Serial: vol.Serial, NSID: VolumeNSID, NamespaceUUID: vol.UUID, NGUID: vol.NGUID,
		State: StateExported,
	}
	switch {
	case ls.exported:
		out.Connections = e.cfg.Exporter.Connections(sh.NQN)
		out.Controllers = e.cfg.Exporter.Controllers(sh.NQN)
	case errors.Is(ls.err, ErrTargetUnavailable):
		out.State, out.Error = StateUnavailable, ls.err.Error()
	default:
		out.State, out.Error = StateFaulted, fmt.Sprint(ls.err)
	}
	return out
}

// Shares lists the shares by name.
func (e *Engine) Shares() []Share {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Share, 0, len(e.st.shares))
	for _, name := range slices.Sorted(maps.Keys(e.st.shares)) {
		out = append(out, e.shareView(name))
	}
	return out
}

// Share returns the share called name (its volume's name).
func (e *Engine) Share(name string) (Share, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.shares[name]; !ok {
		return Share{}, errorf(ErrNotFound, "share %q not found", name)
	}
	return e.shareView(name), nil
}

// normalize checks a share spec and returns its record: listeners in
// canonical form, listeners and hosts sorted (they are sets).
func (spec ShareSpec) normalize() (shareRecord, error) {
	rec := shareRecord{Volume: spec.Volume, NQN: spec.NQN, AllowAnyHost: spec.AllowAnyHost, Hosts: slices.Clone(spec.Hosts)}
	if err := bdev.ValidName(spec.Volume); err != nil {
		return rec, fmt.Errorf("volume name: %w", err)
	}
	for _, l := range spec.Listeners {
		ap, err := parseListener(l)
		if err != nil {
			return rec, err
		}
		rec.Listeners = append(rec.Listeners, ap.String())
	}
	slices.Sort(rec.Listeners)
	slices.Sort(rec.Hosts)
	if rec.Hosts == nil {
		rec.Hosts = []string{}
	}
	_, err := checkShare(rec)
	return rec, err
}

func parseListener(l string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(l)
	if err != nil {
		return ap, fmt.Errorf("listener %q: want an IP address and port such as 127.0.0.1:4420 or [::1]:4420", l)
	}
	if ap.Port() == 0 {
		return ap, fmt.Errorf("listener %q: port 0", l)
	}
	if ap.Addr().Zone() != "" {
		return ap, fmt.Errorf("listener %q: zoned IPv6 addresses are not supported", l)
	}
	return ap, nil
}

// checkShare verifies a share record and returns its listeners.
func checkShare(sh shareRecord) ([]netip.AddrPort, error) {
	if err := nqn.Validate(sh.NQN); err != nil {
		return nil, fmt.Errorf("subsystem NQN: %w", err)
	}
	if sh.NQN == nqn.Discovery {
		return nil, fmt.Errorf("subsystem NQN: %s is the discovery subsystem's", sh.NQN)
	}
	if len(sh.Listeners) == 0 || len(sh.Listeners) > MaxListeners {
		return nil, fmt.Errorf("%d listeners: want 1 to %d", len(sh.Listeners), MaxListeners)
	}
	var aps []netip.AddrPort
	for i, l := range sh.Listeners {
		ap, err := parseListener(l)
		if err != nil {
			return nil, err
		}
		if i > 0 && sh.Listeners[i-1] == l {
			return nil, fmt.Errorf("listener %s given twice", l)
		}
		aps = append(aps, ap)
	}
	if len(sh.Hosts) > MaxHosts {
		return nil, fmt.Errorf("%d hosts: at most %d", len(sh.Hosts), MaxHosts)
	}
	for i, h := range sh.Hosts {
		if err := nqn.Validate(h); err != nil {
			return nil, fmt.Errorf("host NQN: %w", err)
		}
		if i > 0 && sh.Hosts[i-1] == h {
			return nil, fmt.Errorf("host %s given twice", h)
		}
	}
	switch {
	case sh.AllowAnyHost && len(sh.Hosts) > 0:
		return nil, errors.New("give allowed hosts or allow any host, not both")
	case !sh.AllowAnyHost && len(sh.Hosts) == 0:
		return nil, errors.New("no host could connect: give allowed host NQNs or allow any host")
	}
	return aps, nil
}

// subsystemSpec is what the exporter gets for a share.
func (e *Engine) subsystemSpec(sh shareRecord) SubsystemSpec {
	v := e.st.volumes[sh.Volume]
	aps, _ := checkShare(sh) // checked when the share was made or loaded
	return SubsystemSpec{
		NQN: sh.NQN, Serial: v.Serial, Model: Model,
		Namespaces: []NamespaceSpec{{
			NSID: VolumeNSID, Device: e.volumes[sh.Volume].dev, UUID: bdev.UUID(v.UUID), NGUID: v.NGUID,
		}},
		Listeners: aps, AllowAnyHost: sh.AllowAnyHost, Hosts: slices.Clone(sh.Hosts),
	}
}

func sameShare(a, b shareRecord) bool {
	return a.Volume == b.Volume && a.NQN == b.NQN && a.AllowAnyHost == b.AllowAnyHost &&
		slices.Equal(a.Listeners, b.Listeners) && slices.Equal(a.Hosts, b.Hosts)
}

// exportError classifies an exporter failure: kept as invalid or conflict
// when the exporter says so, an export failure otherwise.
func exportError(what string, err error) error {
	switch {
	case errors.Is(err, ErrInvalid):
		return errorf(ErrInvalid, "%s: %w", what, err)
	case errors.Is(err, ErrConflict):
		return errorf(ErrConflict, "%s: %w", what, err)
	}
	return errorf(ErrExport, "%s: %w", what, err)
}

// CreateShare exports a volume as an NVMe-oF subsystem. Asking again with
// the same spec returns the share (created false); another spec for the
// same volume, or an NQN another share uses, is a conflict, as is a
// volume not yet online (still being created). Without an exporter it
// fails with ErrTargetUnavailable.
//
// The exporter is called under shareMu only, with ctx: between deciding
// (under mu) and recording, nothing else can touch the share, its NQN or
// its volume's existence, since every mutation that could takes shareMu.
func (e *Engine) CreateShare(ctx context.Context, spec ShareSpec) (Share, bool, error) {
	rec, err := spec.normalize()
	if err != nil {
		return Share{}, false, errorf(ErrInvalid, "share of %q: %w", spec.Volume, err)
	}
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	sub, existing, exists, err := e.planShare(&rec)
	if err != nil || exists {
		return existing, false, err
	}
	if err := e.cfg.Exporter.AddSubsystem(ctx, sub); err != nil {
		return Share{}, false, exportError("export "+rec.NQN, err)
	}
	e.mu.Lock() // not begin: Close waits for shareMu, so the engine is open
	defer e.mu.Unlock()
	next := e.st.clone()
	next.shares[rec.Volume] = rec
	if err := e.commit(next); err != nil {
		return Share{}, false, errors.Join(err, e.cfg.Exporter.RemoveSubsystem(ctx, rec.NQN))
	}
	e.shares[rec.Volume] = &liveShare{exported: true}
	e.log.Info("share created", "share", rec.Volume, "nqn", rec.NQN, "listeners", rec.Listeners, "allow_any_host", rec.AllowAnyHost, "hosts", len(rec.Hosts))
	return e.shareView(rec.Volume), true, nil
}

// planShare checks a new share against the state and returns what to
// export, or the share when it exists already.
func (e *Engine) planShare(rec *shareRecord) (sub SubsystemSpec, existing Share, exists bool, err error) {
	if err := e.begin(); err != nil {
		return sub, existing, false, err
	}
	defer e.mu.Unlock()
	v, ok := e.st.volumes[rec.Volume]
	if !ok {
		return sub, existing, false, errorf(ErrNotFound, "volume %q not found", rec.Volume)
	}
	if v.Kind == KindLvol {
		rec.Pool = v.Pool // the share outlives the volume's record while the pool is away
	}
	if cur, ok := e.st.shares[rec.Volume]; ok {
		if !sameShare(cur, *rec) {
			return sub, existing, false, errorf(ErrConflict, "volume %q is already shared as %s with other settings: remove that share first", rec.Volume, cur.NQN)
		}
		return sub, e.shareView(rec.Volume), true, nil
	}
	for name, sh := range e.st.shares {
		if sh.NQN == rec.NQN {
			return sub, existing, false, errorf(ErrConflict, "NQN %s is used by the share of volume %q", rec.NQN, name)
		}
	}
	if e.cfg.Exporter == nil {
		return sub, existing, false, errorf(ErrTargetUnavailable, "NVMe-oF target not available: this daemon runs no target, so volume %q cannot be shared", rec.Volume)
	}
	if e.volumes[rec.Volume].dev == nil {
		return sub, existing, false, e.unavailable(rec.Volume)
	}
	return e.subsystemSpec(*rec), existing, false, nil
}

// DeleteShare stops exporting a volume and forgets the share. The exporter
// is called under shareMu only, with ctx (see CreateShare).
func (e *Engine) DeleteShare(ctx context.Context, name string) error {
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	if err := e.begin(); err != nil {
		return err
	}
	sh, ok := e.st.shares[name]
	if !ok {
		e.mu.Unlock()
		return errorf(ErrNotFound, "share %q not found", name)
	}
	ls := e.shares[name]
	exported := ls.exported
	e.mu.Unlock()
	if exported {
		if err := e.cfg.Exporter.RemoveSubsystem(ctx, sh.NQN); err != nil {
			return exportError("stop exporting "+sh.NQN, err)
		}
	}
	e.mu.Lock()
	if exported {
		ls.exported, ls.err = false, errors.New("being removed")
	}
	next := e.st.clone()
	delete(next.shares, name)
	err := e.commit(next)
	if err == nil {
		delete(e.shares, name)
		e.log.Info("share removed", "share", name, "nqn", sh.NQN)
		e.mu.Unlock()
		return nil
	}
	// Still in the state: serve it again as it was.
	var sub *SubsystemSpec
	if exported {
		s := e.subsystemSpec(sh)
		sub = &s
	}
	e.mu.Unlock()
	if sub != nil {
		rerr := e.cfg.Exporter.AddSubsystem(ctx, *sub)
		e.mu.Lock()
		ls.exported, ls.err = rerr == nil, rerr
		e.mu.Unlock()
	}
	return err
}
