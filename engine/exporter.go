package engine

import (
	"context"
	"net/netip"

	"github.com/strata-storage/strata/bdev"
)

// Exporter publishes volumes to hosts as NVMe-oF subsystems. The NVMe/TCP
// target implements it; the engine calls it from its control path (never
// concurrently: the engine serializes its share mutations, and never while
// holding the lock its reads take) and owns the devices
// it hands over: they stay open from AddSubsystem until RemoveSubsystem
// has returned. A device resized meanwhile tells the exporter itself
// (bdev.EventResized), which tells connected hosts.
//
// Errors: an exporter may wrap ErrInvalid (a spec it cannot take) or
// ErrConflict (say, a listener address in use by another program) so the
// API reports them as such; anything else is reported as ErrExport.
type Exporter interface {
	// AddSubsystem starts exporting spec: it opens its own channels to the
	// namespaces' devices, listens on spec.Listeners (a listener may serve
	// several subsystems) and admits spec.Hosts, or every host when
	// spec.AllowAnyHost. It fails if a subsystem with spec.NQN exists.
	AddSubsystem(ctx context.Context, spec SubsystemSpec) error
	// RemoveSubsystem stops exporting the subsystem nqn: it disconnects its
	// hosts, closes its channels to the namespaces' devices before it
	// returns (the engine may close the devices next) and stops the
	// listeners no other subsystem uses.
	RemoveSubsystem(ctx context.Context, nqn string) error
	// Connections returns how many host connections (admin and I/O queue
	// pairs) subsystem nqn has now; 0 for an unknown NQN. Safe to call at
	// any time from any goroutine: status and metrics read it.
	Connections(nqn string) int
	// Controllers returns how many controllers (host sessions) subsystem
	// nqn has now; 0 for an unknown NQN. Safe to call at any time.
	Controllers(nqn string) int
}

// SubsystemSpec describes one exported NVM subsystem.
type SubsystemSpec struct {
	NQN string
	// Serial is the controller serial number (Identify Controller SN): 1-20
	// printable ASCII characters, the same across restarts.
	Serial string
	// Model is the model number (Identify Controller MN), up to 40
	// printable ASCII characters.
	Model      string
	Namespaces []NamespaceSpec
	// Listeners are the TCP addresses to accept connections on.
	Listeners []netip.AddrPort
	// AllowAnyHost admits every host NQN; otherwise only Hosts may connect.
	AllowAnyHost bool
	Hosts        []string
}

// NamespaceSpec maps a namespace ID to a device. UUID and NGUID stay the
// same across restarts: hosts (and multipath) recognize a namespace by
// them.
type NamespaceSpec struct {
	NSID   uint32
	Device bdev.Device
	UUID   bdev.UUID
	NGUID  [16]byte
}

// Model is the SubsystemSpec.Model of Strata's subsystems.
const Model = "Strata"

// VolumeNSID is the namespace ID of the volume in its share's subsystem:
// a share exports one volume.
const VolumeNSID = 1
