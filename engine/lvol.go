package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol"
)

// Pool formats (poolRecord.Format).
const (
	// FormatExtent is a pool carved into contiguous extents whose carving
	// lives in the state file (kind_extent.go): the format of pools made
	// before volume stores, kept working as it is.
	FormatExtent = "extent"
	// FormatLvol is a volume store (bdev/lvol): the pool's device holds
	// its volumes, snapshots and clones itself, with thin provisioning;
	// the state file keeps only where the device is.
	FormatLvol = "lvol"
)

// KindLvol is a volume of a FormatLvol pool. Its record (name, identity)
// comes from the pool's device when the pool opens and is kept in the
// state in memory only: the state file never holds it (state.file), so
// the device alone says what volumes a pool has, and a pool imported
// into another data directory brings them all.
const KindLvol = "lvol"

// isLvol reports a volume store pool.
func (p poolRecord) isLvol() bool { return p.Format == FormatLvol }

// lvolRecord is the in-memory record of a volume store's volume.
func lvolRecord(pool string, vi lvol.VolumeInfo) volumeRecord {
	return volumeRecord{
		Name: vi.Name, Pool: pool, Kind: KindLvol,
		UUID: textUUID(vi.UUID), NGUID: hexID(vi.NGUID), Serial: vi.Serial,
	}
}

// openStore formats a new pool's device as a volume store, or, with
// import, opens the one it holds. Formatting a device that holds a store
// (even a damaged one) is refused: that is what import is for, and
// nothing may overwrite a pool by mistake. Without e.mu.
func (e *Engine) openStore(dev bdev.Device, name string, spec PoolSpec) (*lvol.Store, error) {
	uuid, err := lvol.Probe(dev, e.r)
	switch {
	case spec.Import && errors.Is(err, lvol.ErrNotPool):
		return nil, errorf(ErrInvalid, "pool %q: %s holds no volume store to import", name, spec.URI)
	case spec.Import && err != nil:
		return nil, errorf(ErrDevice, "pool %q: import %s: %w", name, spec.URI, err)
	case spec.Import:
		s, err := lvol.Open(dev, e.r)
		if err != nil {
			return nil, errorf(ErrDevice, "pool %q: import %s: %w", name, spec.URI, err)
		}
		return s, nil
	case err == nil:
		return nil, errorf(ErrConflict, "pool %q: %s already holds volume store %s: import it (strata pool import) rather than format it again", name, spec.URI, uuid)
	case !errors.Is(err, lvol.ErrNotPool):
		return nil, errorf(ErrConflict, "pool %q: %s holds a damaged volume store (%v): it is not formatted over; check it (strata pool check) or clear the device", name, spec.URI, err)
	}
	s, err := lvol.Create(dev, e.r, lvol.CreateOptions{ClusterSize: spec.ClusterSize})
	if err != nil {
		return nil, errorf(ErrInvalid, "pool %q: format %s: %w", name, spec.URI, err)
	}
	return s, nil
}

// storeNames returns every volume and snapshot name of store s.
func storeNames(s *lvol.Store) []string {
	var names []string
	for _, vi := range s.Volumes() {
		names = append(names, vi.Name)
	}
	return names
}

// nameTaken says what already has name: an engine volume, or a volume or
// snapshot of an online volume store ("" if nothing). Called with e.mu
// held.
func (e *Engine) nameTaken(name string) string {
	if v, ok := e.st.volumes[name]; ok {
		return fmt.Sprintf("volume %q of pool %q", name, v.Pool)
	}
	if what, ok := e.making[name]; ok {
		return what
	}
	for _, pool := range slices.Sorted(maps.Keys(e.pools)) {
		if s := e.pools[pool].store; s != nil {
			if vi, err := s.Volume(name); err == nil && vi.Snapshot {
				return fmt.Sprintf("snapshot %q of pool %q", name, pool)
			}
		}
	}
	return ""
}

// syncLvolVolumes makes the records of volume store pool's volumes
// those its device holds, and brings them up. A name another pool's
// volume has is left out, with an error in the log: the engine's volume
// names are one namespace. Called with e.mu held.
func (e *Engine) syncLvolVolumes(pool string) {
	lp := e.pools[pool]
	for name, v := range e.st.volumes {
		if v.Pool == pool && v.Kind == KindLvol {
			if dev := e.volumes[name].dev; dev != nil {
				dev.Close()
			}
			delete(e.st.volumes, name)
			delete(e.volumes, name)
		}
	}
	if lp.store == nil {
		return
	}
	for _, vi := range lp.store.Volumes() {
		if vi.Snapshot {
			continue
		}
		if v, ok := e.st.volumes[vi.Name]; ok {
			e.log.Error("volume not served: its name is another pool's volume's", "volume", vi.Name, "pool", pool, "other_pool", v.Pool)
			continue
		}
		e.st.volumes[vi.Name] = lvolRecord(pool, vi)
		e.volumes[vi.Name] = &liveVolume{}
		e.bringUpVolume(vi.Name)
	}
}

// openLvolVolume opens a volume store volume's device. Called with e.mu
// held.
func (e *Engine) openLvolVolume(name string, p *livePool) (volumeDevice, error) {
	dev, err := p.store.OpenVolume(name)
	if err != nil {
		return nil, err // not a nil *lvol.Volume in a non-nil interface
	}
	return dev, nil
}

// describeLvol fills the view of a volume store's volume from its store.
// Called with e.mu held.
func (e *Engine) describeLvol(name string, out *Volume) {
	lp := e.pools[out.Pool]
	if lp.store == nil {
		return
	}
	vi, err := lp.store.Volume(name)
	if err != nil {
		return
	}
	out.SizeBytes, out.Thin, out.AllocatedBytes, out.Parent = vi.Size, vi.Thin, vi.Allocated, vi.Parent
}

// lvolPool returns the online store of volume store pool name. Called
// with e.mu held.
func (e *Engine) lvolPool(name string) (*lvol.Store, error) {
	p, ok := e.st.pools[name]
	if !ok {
		return nil, errorf(ErrNotFound, "pool %q not found", name)
	}
	if !p.isLvol() {
		return nil, errorf(ErrInvalid, "pool %q is an extent pool: thin volumes, snapshots and clones need a volume store pool (strata pool create --format lvol)", name)
	}
	if lp := e.pools[name]; lp.store == nil {
		return nil, errorf(ErrConflict, "pool %q is faulted: %v", name, lp.err)
	}
	return e.pools[name].store, nil
}

// storeError gives a volume store's error its engine kind.
func storeError(err error) error {
	switch {
	case errors.Is(err, lvol.ErrNoSpace), errors.Is(err, lvol.ErrMetadataFull):
		return errorf(ErrNoSpace, "%w", err)
	case errors.Is(err, lvol.ErrNotFound):
		return errorf(ErrNotFound, "%w", err)
	case errors.Is(err, lvol.ErrOpen):
		return errorf(ErrConflict, "%w", err)
	}
	return errorf(ErrDevice, "%w", err)
}

// createLvolVolume makes a volume in a volume store pool: thick, thin,
// or a clone of a snapshot (in the snapshot's pool). The store does the
// work (a thick volume's clusters zeroed) under lvolMu, outside e.mu.
// Asking again for an existing volume of the same pool, size and
// thinness returns it.
func (e *Engine) createLvolVolume(ctx context.Context, spec VolumeSpec) (Volume, bool, error) {
	e.lvolMu.Lock()
	defer e.lvolMu.Unlock()
	if err := e.begin(); err != nil {
		return Volume{}, false, err
	}
	if spec.Snapshot != "" {
		pool, err := e.snapshotPool(spec.Snapshot)
		if err != nil {
			e.mu.Unlock()
			return Volume{}, false, err
		}
		if spec.Pool != "" && spec.Pool != pool {
			e.mu.Unlock()
			return Volume{}, false, errorf(ErrInvalid, "volume %q: snapshot %q is in pool %q, not %q: a clone lives in its snapshot's pool", spec.Name, spec.Snapshot, pool, spec.Pool)
		}
		spec.Pool, spec.Thin = pool, true
	}
	if v, ok := e.st.volumes[spec.Name]; ok {
		defer e.mu.Unlock()
		cur := e.volumeView(spec.Name)
		if v.Pool != spec.Pool || v.Kind != KindLvol || cur.Thin != spec.Thin || spec.SizeBytes != 0 && cur.SizeBytes != spec.SizeBytes {
			return Volume{}, false, errorf(ErrConflict, "volume %q exists in pool %q with size %d bytes", spec.Name, v.Pool, cur.SizeBytes)
		}
		return cur, false, nil
	}
	if what := e.nameTaken(spec.Name); what != "" {
		e.mu.Unlock()
		return Volume{}, false, errorf(ErrConflict, "volume %q: the name is taken by %s", spec.Name, what)
	}
	s, err := e.lvolPool(spec.Pool)
	if err != nil {
		e.mu.Unlock()
		return Volume{}, false, err
	}
	e.making[spec.Name] = fmt.Sprintf("volume %q being made in pool %q", spec.Name, spec.Pool)
	e.mu.Unlock()
	if spec.Snapshot != "" {
		_, err = s.Clone(spec.Snapshot, lvol.VolumeSpec{Name: spec.Name, Size: spec.SizeBytes})
	} else {
		_, err = s.CreateVolume(lvol.VolumeSpec{Name: spec.Name, Size: spec.SizeBytes, Thin: spec.Thin})
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.making, spec.Name)
	if err != nil {
		return Volume{}, false, storeError(err)
	}
	vi, err := s.Volume(spec.Name)
	if err != nil {
		return Volume{}, false, storeError(err)
	}
	e.st.volumes[spec.Name] = lvolRecord(spec.Pool, vi)
	e.volumes[spec.Name] = &liveVolume{}
	e.bringUpVolume(spec.Name)
	e.log.Info("volume created", "volume", spec.Name, "pool", spec.Pool, "size_bytes", vi.Size, "thin", vi.Thin, "snapshot", spec.Snapshot)
	return e.volumeView(spec.Name), true, nil
}

// resizeLvolVolume grows or shrinks a volume store's volume: its device
// changes size under a quiesce, and whoever has it open hears of it.
func (e *Engine) resizeLvolVolume(ctx context.Context, name string, sizeBytes uint64) (Volume, error) {
	e.lvolMu.Lock()
	defer e.lvolMu.Unlock()
	if err := e.begin(); err != nil {
		return Volume{}, err
	}
	v := e.st.volumes[name]
	s, err := e.lvolPool(v.Pool)
	if err == nil && e.volumes[name].dev == nil {
		err = e.unavailable(name)
	}
	bs := uint64(e.st.pools[v.Pool].BlockSize)
	e.mu.Unlock()
	if err != nil {
		return Volume{}, err
	}
	if sizeBytes == 0 || sizeBytes%bs != 0 {
		return Volume{}, errorf(ErrInvalid, "volume %q: size %d is not a positive multiple of the block size %d", name, sizeBytes, bs)
	}
	if err := s.ResizeVolume(ctx, name, sizeBytes); err != nil {
		return Volume{}, storeError(err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.volumes[name]; !ok {
		return Volume{}, errorf(ErrNotFound, "volume %q was deleted meanwhile", name)
	}
	e.log.Info("volume resized", "volume", name, "size_bytes", sizeBytes)
	return e.volumeView(name), nil
}

// deleteLvolVolume deletes a volume store's volume that is neither shared
// nor in use: its device closes, then the store drops it (its snapshots
// stay). Called with shareMu held.
func (e *Engine) deleteLvolVolume(name string) error {
	e.lvolMu.Lock()
	defer e.lvolMu.Unlock()
	if err := e.begin(); err != nil {
		return err
	}
	defer e.mu.Unlock()
	v, ok := e.st.volumes[name]
	if !ok {
		return errorf(ErrNotFound, "volume %q not found", name)
	}
	s, err := e.lvolPool(v.Pool)
	if err != nil {
		return err
	}
	lv := e.volumes[name]
	if lv.dev != nil {
		if n := lv.dev.OpenChannels(); n > 0 {
			return errorf(ErrConflict, "volume %q is in use: %d channels open", name, n)
		}
		if err := lv.dev.Close(); err != nil {
			return fmt.Errorf("engine: volume %s: close its device: %w", name, err)
		}
		lv.dev = nil
	}
	// The store's delete is one journal record: quick enough under e.mu.
	if err := s.DeleteVolume(name); err != nil {
		e.bringUpVolume(name)
		return storeError(err)
	}
	delete(e.st.volumes, name)
	delete(e.volumes, name)
	e.log.Info("volume deleted", "volume", name, "pool", v.Pool)
	return nil
}

// SnapshotSpec asks for a snapshot.
type SnapshotSpec struct {
	Volume string
	Name   string
}

// Snapshot describes a snapshot.
type Snapshot struct {
	Name string `json:"name"`
	// Volume is the volume it is of ("" once that volume is deleted).
	Volume         string    `json:"volume"`
	Pool           string    `json:"pool"`
	UUID           string    `json:"uuid"`
	SizeBytes      uint64    `json:"size_bytes"`
	AllocatedBytes uint64    `json:"allocated_bytes"`
	CreatedAt      time.Time `json:"created_at"`
	// PausedMicros is how long the volume's I/O was paused to take it
	// (only in the answer to its creation).
	PausedMicros int64 `json:"paused_us,omitempty"`
}

func snapshotView(pool string, vi lvol.VolumeInfo) Snapshot {
	return Snapshot{
		Name: vi.Name, Volume: vi.Parent, Pool: pool, UUID: bdev.UUID(vi.UUID).String(),
		SizeBytes: vi.Size, AllocatedBytes: vi.Allocated, CreatedAt: vi.Created.UTC(),
	}
}

// snapshotPool returns the pool holding snapshot name. Called with e.mu
// held.
func (e *Engine) snapshotPool(name string) (string, error) {
	for _, pool := range slices.Sorted(maps.Keys(e.pools)) {
		if s := e.pools[pool].store; s != nil {
			if vi, err := s.Volume(name); err == nil && vi.Snapshot {
				return pool, nil
			}
		}
	}
	return "", errorf(ErrNotFound, "snapshot %q not found", name)
}

// CreateSnapshot takes a snapshot of a volume store's volume, while its
// I/O runs: paused for the flush and the record (Snapshot.PausedMicros),
// it holds every write acknowledged before. Asking again for a snapshot
// of the same volume under the same name returns it (created false).
func (e *Engine) CreateSnapshot(ctx context.Context, spec SnapshotSpec) (Snapshot, bool, error) {
	if err := bdev.ValidName(spec.Name); err != nil {
		return Snapshot{}, false, errorf(ErrInvalid, "snapshot name: %v", err)
	}
	e.lvolMu.Lock()
	defer e.lvolMu.Unlock()
	if err := e.begin(); err != nil {
		return Snapshot{}, false, err
	}
	v, ok := e.st.volumes[spec.Volume]
	if !ok {
		e.mu.Unlock()
		return Snapshot{}, false, errorf(ErrNotFound, "volume %q not found", spec.Volume)
	}
	s, err := e.lvolPool(v.Pool)
	if err != nil {
		e.mu.Unlock()
		return Snapshot{}, false, err
	}
	if pool, err := e.snapshotPool(spec.Name); err == nil {
		vi, _ := e.pools[pool].store.Volume(spec.Name)
		e.mu.Unlock()
		if vi.Parent != spec.Volume {
			return Snapshot{}, false, errorf(ErrConflict, "snapshot %q exists, of volume %q", spec.Name, vi.Parent)
		}
		return snapshotView(pool, vi), false, nil
	}
	if what := e.nameTaken(spec.Name); what != "" {
		e.mu.Unlock()
		return Snapshot{}, false, errorf(ErrConflict, "snapshot %q: the name is taken by %s", spec.Name, what)
	}
	e.making[spec.Name] = fmt.Sprintf("snapshot %q being taken in pool %q", spec.Name, v.Pool)
	e.mu.Unlock()
	vi, paused, err := s.Snapshot(ctx, spec.Volume, spec.Name)
	e.mu.Lock()
	delete(e.making, spec.Name)
	e.mu.Unlock()
	if err != nil {
		return Snapshot{}, false, storeError(err)
	}
	e.log.Info("snapshot created", "snapshot", spec.Name, "volume", spec.Volume, "pool", v.Pool, "paused", paused)
	out := snapshotView(v.Pool, vi)
	out.PausedMicros = paused.Microseconds()
	return out, true, nil
}

// Snapshots lists the snapshots of every online volume store pool, or of
// one volume, by name.
func (e *Engine) Snapshots(volume string) ([]Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.volumes[volume]; volume != "" && !ok {
		return nil, errorf(ErrNotFound, "volume %q not found", volume)
	}
	out := []Snapshot{}
	for _, pool := range slices.Sorted(maps.Keys(e.pools)) {
		s := e.pools[pool].store
		if s == nil {
			continue
		}
		for _, vi := range s.Volumes() {
			if vi.Snapshot && (volume == "" || vi.Parent == volume && e.st.volumes[volume].Pool == pool) {
				out = append(out, snapshotView(pool, vi))
			}
		}
	}
	slices.SortFunc(out, func(a, b Snapshot) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// GetSnapshot returns the snapshot called name.
func (e *Engine) GetSnapshot(name string) (Snapshot, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pool, err := e.snapshotPool(name)
	if err != nil {
		return Snapshot{}, err
	}
	vi, err := e.pools[pool].store.Volume(name)
	if err != nil {
		return Snapshot{}, storeError(err)
	}
	return snapshotView(pool, vi), nil
}

// DeleteSnapshot deletes a snapshot. Clones of it and its volume keep
// what they map (every map is resolved: nothing reads through a
// snapshot), so it is never refused for them; the clusters only it held
// go back to the pool.
func (e *Engine) DeleteSnapshot(_ context.Context, name string) error {
	e.lvolMu.Lock()
	defer e.lvolMu.Unlock()
	if err := e.begin(); err != nil {
		return err
	}
	defer e.mu.Unlock()
	pool, err := e.snapshotPool(name)
	if err != nil {
		return err
	}
	if err := e.pools[pool].store.DeleteVolume(name); err != nil {
		return storeError(err)
	}
	e.log.Info("snapshot deleted", "snapshot", name, "pool", pool)
	return nil
}

// CheckPool verifies a volume store pool's invariants (its tables as the
// device's metadata describes them) and returns every fault found: none
// is a pool that checks.
func (e *Engine) CheckPool(name string) ([]string, error) {
	e.mu.Lock()
	s, err := e.lvolPool(name)
	if err != nil {
		if p, lp := e.st.pools[name], e.pools[name]; !e.closed && lp != nil && p.isLvol() && lp.store == nil {
			return e.checkFaultedPool(p, lp) // unlocks
		}
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, f := range s.Check() {
		out = append(out, f.Error())
	}
	if err := s.Err(); err != nil {
		out = append(out, err.Error())
	}
	return out, nil
}

// checkFaultedPool checks, offline, the device of a volume store pool
// whose store would not open: what the device's metadata holds, read
// without writing, and why the store refused it. The pool stays faulted
// (reconcile leaves it alone meanwhile). Called with e.mu held; unlocks
// it.
func (e *Engine) checkFaultedPool(p poolRecord, lp *livePool) ([]string, error) {
	if lp.checking {
		e.mu.Unlock()
		return nil, errorf(ErrConflict, "pool %q is being checked", p.Name)
	}
	lp.checking = true
	why := lp.err
	e.mu.Unlock()
	defer func() {
		e.mu.Lock()
		lp.checking = false
		e.mu.Unlock()
	}()
	dev, err := e.openDevice(e.closing, p.Name, p.URI)
	if err != nil {
		return nil, errorf(ErrDevice, "pool %q is faulted and its device does not open for a check: %w", p.Name, err)
	}
	faults, err := lvol.Check(dev, e.r)
	if derr := e.reg.Delete(p.Name); derr != nil {
		err = errors.Join(err, derr)
	}
	if err != nil {
		return nil, errorf(ErrDevice, "pool %q: check: %w", p.Name, err)
	}
	out := []string{}
	for _, f := range faults {
		out = append(out, f.Error())
	}
	if len(out) == 0 && why != nil {
		// The metadata checks: what faulted the pool lies elsewhere.
		out = append(out, fmt.Sprintf("the pool is faulted: %v", why))
	}
	return out, nil
}
