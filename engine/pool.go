package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/lvol"
	"github.com/strata-storage/strata/engine/extent"
)

// Object states.
const (
	StateOnline      = "online"      // pools and volumes in service
	StateCreating    = "creating"    // a volume whose space is being cleared: not usable yet
	StateResizing    = "resizing"    // a volume whose new space is being cleared: in service at its old size
	StateFaulted     = "faulted"     // see the object's error
	StateExported    = "exported"    // a share the target serves
	StateUnavailable = "unavailable" // a share with no target to serve it
)

// PoolSpec asks for a pool.
type PoolSpec struct {
	Name string
	// URI names the device: uring:///path?size=..., malloc:///?size=...,
	// null:///?size=...
	URI string
	// Format is FormatExtent ("" too) or FormatLvol.
	Format string
	// ClusterSize is a new volume store's allocation unit (0: the
	// store's default).
	ClusterSize uint64
	// Import opens the volume store the device holds, with its volumes,
	// rather than formatting it (FormatLvol implied).
	Import bool
}

// Pool describes a pool.
type Pool struct {
	Name             string `json:"name"`
	URI              string `json:"uri"`
	UUID             string `json:"uuid"`
	State            string `json:"state"`
	Error            string `json:"error,omitempty"`
	BlockSize        uint32 `json:"block_size"`
	CapacityBytes    uint64 `json:"capacity_bytes"`
	FreeBytes        uint64 `json:"free_bytes"`
	LargestFreeBytes uint64 `json:"largest_free_bytes"`
	Volumes          int    `json:"volumes"`
	// Format is FormatExtent or FormatLvol. For a volume store,
	// AllocatedBytes is the clusters in use (volumes, snapshots, space on
	// its way back) and CommittedBytes what its volumes would take if
	// every one were full: above CapacityBytes, thin volumes overcommit
	// the pool. For an extent pool both are the bytes its volumes hold.
	Format         string `json:"format"`
	ClusterSize    uint64 `json:"cluster_size,omitempty"`
	AllocatedBytes uint64 `json:"allocated_bytes"`
	CommittedBytes uint64 `json:"committed_bytes"`
	Snapshots      int    `json:"snapshots,omitempty"`
}

func (e *Engine) poolView(name string) Pool {
	p, lp := e.st.pools[name], e.pools[name]
	bs := uint64(p.BlockSize)
	v := Pool{
		Name: name, URI: p.URI, UUID: bdev.UUID(p.UUID).String(), State: StateOnline,
		BlockSize: p.BlockSize, CapacityBytes: p.Blocks * bs,
		FreeBytes: p.Free.FreeBlocks() * bs, LargestFreeBytes: p.Free.Largest() * bs,
	}
	if lp.err != nil {
		v.State, v.Error = StateFaulted, lp.err.Error()
	}
	for _, vol := range e.st.volumes {
		if vol.Pool == name {
			v.Volumes++
		}
	}
	v.Format = FormatExtent
	v.AllocatedBytes = v.CapacityBytes - v.FreeBytes
	v.CommittedBytes = v.AllocatedBytes
	if p.isLvol() {
		v.Format, v.ClusterSize = FormatLvol, p.ClusterSize
		v.CapacityBytes, v.FreeBytes, v.LargestFreeBytes, v.AllocatedBytes, v.CommittedBytes = 0, 0, 0, 0, 0
		if lp.store != nil {
			st := lp.store.Stats()
			v.CapacityBytes, v.AllocatedBytes, v.CommittedBytes = st.Capacity, st.Allocated, st.Committed
			v.FreeBytes = st.Capacity - st.Allocated
			v.LargestFreeBytes = v.FreeBytes // thin: any free cluster will do
			v.Snapshots = st.Volumes - v.Volumes
		}
	}
	return v
}

// Pools lists the pools by name.
func (e *Engine) Pools() []Pool {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Pool, 0, len(e.st.pools))
	for _, name := range slices.Sorted(maps.Keys(e.st.pools)) {
		out = append(out, e.poolView(name))
	}
	return out
}

// Pool returns the pool called name.
func (e *Engine) Pool(name string) (Pool, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.pools[name]; !ok {
		return Pool{}, errorf(ErrNotFound, "pool %q not found", name)
	}
	return e.poolView(name), nil
}

// CreatePool opens the device spec.URI names and makes it a pool. Asking
// again for an existing pool with the same URI returns it (created false);
// another URI under the same name is a conflict. The device is opened
// outside the engine's mutex (a remote namespace may take its connect
// timeout); when ctx ends first, CreatePool returns ErrInterrupted and
// the pool is not made.
func (e *Engine) CreatePool(ctx context.Context, spec PoolSpec) (Pool, bool, error) {
	if err := bdev.ValidName(spec.Name); err != nil {
		return Pool{}, false, errorf(ErrInvalid, "pool name: %v", err)
	}
	u, err := bdev.ParseURI(spec.URI)
	if err != nil || spec.URI == "" {
		return Pool{}, false, errorf(ErrInvalid, "pool URI %q: want scheme:///path?options, e.g. uring:///var/lib/strata/pool.img?size=10GiB", spec.URI)
	}
	if _, ok := e.cfg.Devices[u.Scheme]; !ok {
		return Pool{}, false, errorf(ErrInvalid, "pool URI %q: unknown scheme %q (want one of %v)", spec.URI, u.Scheme, slices.Sorted(maps.Keys(e.cfg.Devices)))
	}
	if err := checkURIOptions(u); err != nil {
		return Pool{}, false, errorf(ErrInvalid, "pool URI %q: %w", spec.URI, err)
	}
	if spec.Import {
		spec.Format = FormatLvol
	}
	switch spec.Format {
	case "", FormatExtent:
		spec.Format = ""
		if spec.ClusterSize != 0 {
			return Pool{}, false, errorf(ErrInvalid, "pool %q: a cluster size is for volume store pools (format %s)", spec.Name, FormatLvol)
		}
	case FormatLvol:
		if spec.Import && spec.ClusterSize != 0 {
			return Pool{}, false, errorf(ErrInvalid, "pool %q: an imported pool keeps its cluster size", spec.Name)
		}
	default:
		return Pool{}, false, errorf(ErrInvalid, "pool %q: format %q: want %s or %s", spec.Name, spec.Format, FormatExtent, FormatLvol)
	}
	if err := e.begin(); err != nil {
		return Pool{}, false, err
	}
	if p, ok := e.st.pools[spec.Name]; ok {
		defer e.mu.Unlock()
		if p.URI != spec.URI || p.Format != spec.Format {
			return Pool{}, false, errorf(ErrConflict, "pool %q exists with URI %q, format %s", spec.Name, p.URI, e.poolView(spec.Name).Format)
		}
		return e.poolView(spec.Name), false, nil
	}
	if uri, ok := e.opening[spec.Name]; ok {
		e.mu.Unlock()
		return Pool{}, false, errorf(ErrConflict, "pool %q is being created with URI %q", spec.Name, uri)
	}
	if other := e.poolUsingPath(u); other != "" {
		e.mu.Unlock()
		return Pool{}, false, errorf(ErrConflict, "pool %q already uses %s", other, u.Path)
	}
	e.opening[spec.Name] = spec.URI
	e.mu.Unlock()

	dev, err := e.openDevice(ctx, spec.Name, spec.URI)
	var store *lvol.Store
	if err == nil && spec.Format == FormatLvol {
		// Formatting or loading the store is device work: outside e.mu,
		// the name still held in e.opening.
		if store, err = e.openStore(dev, spec.Name, spec); err != nil {
			err = errors.Join(err, e.reg.Delete(spec.Name))
		}
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if errors.Is(err, ErrInterrupted) {
		return Pool{}, false, err // the opening goes on, and is undone
	}
	delete(e.opening, spec.Name)
	if err != nil {
		if errors.Is(err, bdev.ErrBadURI) || errors.Is(err, bdev.ErrBadScheme) {
			return Pool{}, false, errorf(ErrInvalid, "pool URI %q: %w", spec.URI, err)
		}
		if hasKind(err) {
			return Pool{}, false, err
		}
		return Pool{}, false, errorf(ErrDevice, "pool %q: open %s: %w", spec.Name, spec.URI, err)
	}
	undo := func(err error) error {
		if store != nil {
			err = errors.Join(err, store.Close())
		}
		return errors.Join(err, e.reg.Delete(spec.Name))
	}
	if e.closed {
		return Pool{}, false, undo(ErrClosed)
	}
	in := dev.Info()
	rec := poolRecord{
		Name: spec.Name, URI: spec.URI, UUID: textUUID(bdev.NewUUID()),
		BlockSize: in.BlockSize, Blocks: in.Blocks, Free: extent.All(in.Blocks),
	}
	if store != nil {
		var taken []string
		for _, name := range storeNames(store) {
			if what := e.nameTaken(name); what != "" {
				taken = append(taken, what)
			}
		}
		if len(taken) > 0 {
			return Pool{}, false, undo(errorf(ErrConflict, "pool %q: %d of its names are taken here: %s", spec.Name, len(taken), joinNames(taken, 5)))
		}
		rec.UUID, rec.Format, rec.ClusterSize, rec.Free = textUUID(store.Pool()), FormatLvol, store.Layout().ClusterSize, nil
	}
	next := e.st.clone()
	next.pools[spec.Name] = rec
	if err := e.commit(next); err != nil {
		return Pool{}, false, undo(err)
	}
	lp := e.watchPool(spec.Name, dev)
	lp.store = store
	e.pools[spec.Name] = lp
	if store != nil {
		e.syncLvolVolumes(spec.Name)
	}
	e.log.Info("pool created", "pool", spec.Name, "uri", spec.URI, "capacity_bytes", in.Size(), "format", e.poolView(spec.Name).Format, "import", spec.Import)
	return e.poolView(spec.Name), true, nil
}

// openDevice opens a pool's device, without the engine's mutex. When ctx
// ends first it returns ErrInterrupted; the device, once open, is closed
// again and the name freed in e.opening.
func (e *Engine) openDevice(ctx context.Context, name, uri string) (bdev.Device, error) {
	type opened struct {
		dev bdev.Device
		err error
	}
	done := make(chan opened, 1)
	go func() {
		dev, err := e.reg.Create(name, uri)
		done <- opened{dev, err}
	}()
	select {
	case o := <-done:
		return o.dev, o.err
	case <-ctx.Done():
		go func() {
			if o := <-done; o.err == nil {
				if err := e.reg.Delete(name); err != nil {
					e.log.Warn("pool device opened too late, and closing it failed", "pool", name, "err", err)
				}
			}
			e.mu.Lock()
			delete(e.opening, name)
			e.mu.Unlock()
		}()
		return nil, errorf(ErrInterrupted, "pool %q not created: stopped waiting for %s to open: %w", name, uri, ctx.Err())
	}
}

// checkURIOptions checks the options every device kind shares (size,
// block_size), so that a bad value is reported as a bad request rather than
// as a device that failed to open. Other options are the factory's.
func checkURIOptions(u *url.URL) error {
	q := u.Query()
	if v := q.Get("size"); v != "" {
		if _, err := bdev.ParseSize(v); err != nil {
			return err
		}
	}
	if v := q.Get("block_size"); v != "" {
		bs, err := strconv.ParseUint(v, 10, 32)
		if err != nil || !bdev.ValidBlockSize(uint32(bs)) {
			return fmt.Errorf("block_size %q: want a power of two from 512 to 65536", v)
		}
	}
	return nil
}

// poolUsingPath returns the pool whose file or block device is u's, if
// any: two pools on one file would overwrite each other.
func (e *Engine) poolUsingPath(u *url.URL) string {
	if u.Scheme != file.Scheme || u.Path == "" {
		return ""
	}
	for name, p := range e.st.pools {
		pu, err := bdev.ParseURI(p.URI)
		if err == nil && pu.Scheme == file.Scheme && filepath.Clean(pu.Path) == filepath.Clean(u.Path) {
			return name
		}
	}
	return ""
}

// DeletePool closes a pool's device and forgets the pool. A pool with
// volumes is refused. The device's data (a file, say) is left alone.
func (e *Engine) DeletePool(_ context.Context, name string) error {
	if err := e.begin(); err != nil {
		return err
	}
	defer e.mu.Unlock()
	if _, ok := e.st.pools[name]; !ok {
		return errorf(ErrNotFound, "pool %q not found", name)
	}
	var vols []string
	for _, v := range e.st.volumes {
		if v.Pool == name {
			vols = append(vols, v.Name)
		}
	}
	if len(vols) > 0 {
		slices.Sort(vols)
		return errorf(ErrConflict, "pool %q holds %d volumes (%s): delete them first", name, len(vols), joinNames(vols, 5))
	}
	lp := e.pools[name]
	if lp.store != nil {
		if names := storeNames(lp.store); len(names) > 0 {
			return errorf(ErrConflict, "pool %q holds %d snapshots (%s): delete them first", name, len(names), joinNames(names, 5))
		}
	}
	next := e.st.clone()
	delete(next.pools, name)
	if err := e.commit(next); err != nil {
		return err
	}
	var err error
	if lp.store != nil {
		err = lp.store.Close()
		lp.store = nil
	}
	if lp.dev != nil {
		lp.unwatch()
		err = errors.Join(err, e.reg.Delete(name))
	}
	delete(e.pools, name)
	e.log.Info("pool deleted", "pool", name)
	if err != nil {
		return fmt.Errorf("pool %s deleted, but closing its device failed: %w", name, err)
	}
	return nil
}

// joinNames lists up to n names, then how many more.
func joinNames(names []string, n int) string {
	s := ""
	for i, name := range names {
		if i == n {
			return fmt.Sprintf("%s and %d more", s, len(names)-n)
		}
		if i > 0 {
			s += ", "
		}
		s += name
	}
	return s
}
