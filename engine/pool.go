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
	if err := e.begin(); err != nil {
		return Pool{}, false, err
	}
	if p, ok := e.st.pools[spec.Name]; ok {
		defer e.mu.Unlock()
		if p.URI != spec.URI {
			return Pool{}, false, errorf(ErrConflict, "pool %q exists with URI %q", spec.Name, p.URI)
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
		return Pool{}, false, errorf(ErrDevice, "pool %q: open %s: %w", spec.Name, spec.URI, err)
	}
	if e.closed {
		return Pool{}, false, errors.Join(ErrClosed, e.reg.Delete(spec.Name))
	}
	in := dev.Info()
	next := e.st.clone()
	next.pools[spec.Name] = poolRecord{
		Name: spec.Name, URI: spec.URI, UUID: textUUID(bdev.NewUUID()),
		BlockSize: in.BlockSize, Blocks: in.Blocks, Free: extent.All(in.Blocks),
	}
	if err := e.commit(next); err != nil {
		return Pool{}, false, errors.Join(err, e.reg.Delete(spec.Name))
	}
	e.pools[spec.Name] = e.watchPool(spec.Name, dev)
	e.log.Info("pool created", "pool", spec.Name, "uri", spec.URI, "capacity_bytes", in.Size())
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
	next := e.st.clone()
	delete(next.pools, name)
	if err := e.commit(next); err != nil {
		return err
	}
	var err error
	if lp := e.pools[name]; lp.dev != nil {
		lp.unwatch()
		err = e.reg.Delete(name)
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
