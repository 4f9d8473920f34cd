package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"

	"github.com/strata-storage/strata/bdev"
)

// VolumeSpec asks for a volume.
type VolumeSpec struct {
	Name      string
	Pool      string
	SizeBytes uint64 // a multiple of the pool's block size
	// Thin maps a volume store volume's clusters on first write.
	Thin bool
	// Snapshot makes the volume a thin clone of that snapshot, in its
	// pool; SizeBytes 0 is the snapshot's size.
	Snapshot string
}

// Volume describes a volume.
type Volume struct {
	Name   string `json:"name"`
	Pool   string `json:"pool"`
	UUID   string `json:"uuid"`
	NGUID  string `json:"nguid"`
	Serial string `json:"serial"`
	// SizeBytes is the size hosts see: while the volume grows, the size
	// before (Progress has the new one); while it is created, the size it
	// will have.
	SizeBytes   uint64 `json:"size_bytes"`
	BlockSize   uint32 `json:"block_size"`
	OffsetBytes uint64 `json:"offset_bytes"` // where an extent volume starts in its pool
	// Thin volumes map their pool's clusters on first write; Allocated
	// is what the volume maps (its size for a thick one), Parent the
	// snapshot a clone was made of.
	Thin           bool   `json:"thin,omitempty"`
	AllocatedBytes uint64 `json:"allocated_bytes"`
	Parent         string `json:"parent,omitempty"`
	// State is StateOnline, StateCreating, StateResizing or StateFaulted.
	State string `json:"state"`
	Error string `json:"error,omitempty"`
	// Progress is the device work a new volume, or a volume's new space,
	// needs before hosts see it: there while the volume is creating or
	// resizing, and when that work stopped short (see Error).
	Progress *Progress `json:"progress,omitempty"`
	// Share is the NQN the volume is shared as, if it is.
	Share string `json:"share,omitempty"`
}

// Progress is how far a volume's device work is.
type Progress struct {
	// DoneBytes of TotalBytes are ready: TotalBytes is the whole volume
	// when it is created, the space it grows by when it is resized.
	DoneBytes  uint64 `json:"done_bytes"`
	TotalBytes uint64 `json:"total_bytes"`
	// TargetSizeBytes is the volume's size once the work is done.
	TargetSizeBytes uint64 `json:"target_size_bytes"`
}

func (e *Engine) volumeView(name string) Volume {
	v, lv := e.st.volumes[name], e.volumes[name]
	if lv == nil { // a share's volume store volume, its pool not up
		pool := e.st.shares[name].Pool
		return Volume{Name: name, Pool: pool, State: StateFaulted, Error: fmt.Sprintf("pool %s is not online", pool)}
	}
	bs := uint64(e.st.pools[v.Pool].BlockSize)
	out := Volume{
		Name: name, Pool: v.Pool, UUID: bdev.UUID(v.UUID).String(), NGUID: hex.EncodeToString(v.NGUID[:]),
		Serial: v.Serial, BlockSize: uint32(bs), State: StateOnline,
	}
	if lv.kind == nil {
		e.describeLvol(name, &out)
	} else {
		out.SizeBytes = lv.kind.blocks(v) * bs
		out.AllocatedBytes = out.SizeBytes
		lv.kind.describe(v, bs, &out)
	}
	switch {
	case lv.job != nil:
		describeJob(lv.job, bs, &out)
	case lv.dev == nil:
		out.State, out.Error = StateFaulted, lv.err.Error()
	}
	if sh, ok := e.st.shares[name]; ok {
		out.Share = sh.NQN
	}
	return out
}

// Volumes lists the volumes by name.
func (e *Engine) Volumes() []Volume {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Volume, 0, len(e.st.volumes))
	for _, name := range slices.Sorted(maps.Keys(e.st.volumes)) {
		out = append(out, e.volumeView(name))
	}
	return out
}

// Volume returns the volume called name.
func (e *Engine) Volume(name string) (Volume, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.st.volumes[name]; !ok {
		return Volume{}, errorf(ErrNotFound, "volume %q not found", name)
	}
	return e.volumeView(name), nil
}

// VolumeDevice returns the block device of an online volume, for in-process
// users (tests, tools). It is valid until the volume is resized or deleted;
// close every channel to it before that. A volume still being created has
// none yet: its space may show what a deleted volume left.
func (e *Engine) VolumeDevice(name string) (bdev.Device, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lv, ok := e.volumes[name]
	if !ok {
		return nil, errorf(ErrNotFound, "volume %q not found", name)
	}
	if lv.dev == nil {
		return nil, e.unavailable(name)
	}
	return lv.dev, nil
}

// CreateVolume carves a volume out of a pool: one contiguous extent, the
// first free one large enough. Its space reads back as zeroes: the volume
// is recorded first (state creating), its space cleared in the background
// (see Volume.Progress), and it comes online, to be used and shared, once
// that is done. CreateVolume returns then; if ctx ends first it returns an
// error of kind ErrInterrupted, and the creation goes on. Asking again for
// an existing volume with the same pool and size returns it (created
// false), once it is online (resuming its creation if that had stopped
// short); another spec under the same name is a conflict.
func (e *Engine) CreateVolume(ctx context.Context, spec VolumeSpec) (Volume, bool, error) {
	if err := bdev.ValidName(spec.Name); err != nil {
		return Volume{}, false, errorf(ErrInvalid, "volume name: %v", err)
	}
	e.mu.Lock()
	lvolPool := e.st.pools[spec.Pool].isLvol()
	e.mu.Unlock()
	if spec.Snapshot != "" || lvolPool {
		if spec.SizeBytes == 0 && spec.Snapshot == "" {
			return Volume{}, false, errorf(ErrInvalid, "volume %q: size must be more than 0", spec.Name)
		}
		return e.createLvolVolume(ctx, spec)
	}
	if spec.SizeBytes == 0 {
		return Volume{}, false, errorf(ErrInvalid, "volume %q: size must be more than 0", spec.Name)
	}
	if spec.Thin {
		return Volume{}, false, errorf(ErrInvalid, "volume %q: pool %q is an extent pool: thin volumes need a volume store pool (strata pool create --format lvol)", spec.Name, spec.Pool)
	}
	j, created, err := e.createVolume(spec)
	if err != nil {
		return Volume{}, false, err
	}
	v, err := e.await(ctx, spec.Name, j, "its space to be cleared")
	return v, created, err
}

// createVolume records a new volume and starts clearing its space, or
// finds the volume spec asks for. It returns the job to wait for, if any.
func (e *Engine) createVolume(spec VolumeSpec) (*job, bool, error) {
	if err := e.begin(); err != nil {
		return nil, false, err
	}
	defer e.mu.Unlock()
	if v, ok := e.st.volumes[spec.Name]; ok {
		cur := e.volumeView(spec.Name)
		if v.Pool != spec.Pool || cur.SizeBytes != spec.SizeBytes {
			return nil, false, errorf(ErrConflict, "volume %q exists in pool %q with size %d bytes", spec.Name, v.Pool, cur.SizeBytes)
		}
		lv := e.volumes[spec.Name]
		j := lv.job
		switch {
		case j == nil || j.op != workCreate:
			return nil, false, nil // online (perhaps growing): nothing to wait for
		case !j.running():
			return e.startJob(spec.Name, lv, v, resumeFrom(v, j)), false, nil
		}
		return j, false, nil
	}
	p, ok := e.st.pools[spec.Pool]
	if !ok {
		return nil, false, errorf(ErrNotFound, "pool %q not found", spec.Pool)
	}
	if what := e.nameTaken(spec.Name); what != "" {
		return nil, false, errorf(ErrConflict, "volume %q: the name is taken by %s", spec.Name, what)
	}
	lp := e.pools[spec.Pool]
	if lp.err != nil {
		return nil, false, errorf(ErrConflict, "pool %q is faulted: %v", spec.Pool, lp.err)
	}
	bs := uint64(p.BlockSize)
	if spec.SizeBytes%bs != 0 {
		return nil, false, errorf(ErrInvalid, "volume %q: size %d is not a multiple of pool %q's block size %d", spec.Name, spec.SizeBytes, spec.Pool, bs)
	}
	k := kinds[KindExtent]
	rec := volumeRecord{
		Name: spec.Name, Pool: spec.Pool, Kind: KindExtent, UUID: textUUID(bdev.NewUUID()), NGUID: hexID(bdev.NewUUID()), Serial: newSerial(),
		Work: workRecord{Op: workCreate},
	}
	p, err := k.create(e.st, p, &rec, spec.SizeBytes/bs)
	if err != nil {
		return nil, false, err
	}
	next := e.st.clone()
	next.pools[spec.Pool] = p
	next.volumes[spec.Name] = rec
	if err := e.commit(next); err != nil {
		return nil, false, err
	}
	lv := &liveVolume{kind: k}
	e.volumes[spec.Name] = lv
	e.log.Info("volume created", "volume", spec.Name, "pool", spec.Pool, "size_bytes", spec.SizeBytes)
	return e.startJob(spec.Name, lv, rec, rec.Work), true, nil
}

// newSerial returns a controller serial number: 20 hex digits.
func newSerial() string {
	var b [serialLen / 2]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b[:])
}

// ResizeVolume grows a volume to sizeBytes in place: the blocks after it in
// its pool must be free. Shrinking is refused (it would cut off data a
// host may be using); the same size is a no-op. The new size is recorded
// first (state resizing, the volume online at its old size), the new space
// cleared in the background, and then the volume's device grows under a
// quiesce: whoever has it open (a share's target) sees the new size from
// its next I/O on, and hears of it through the device's resize event.
// ResizeVolume returns then; if ctx ends first it returns an error of kind
// ErrInterrupted, and the resize goes on. Asking again for the size a
// volume is growing to waits for it (resuming it if it had stopped short).
func (e *Engine) ResizeVolume(ctx context.Context, name string, sizeBytes uint64) (Volume, error) {
	e.mu.Lock()
	v, ok := e.st.volumes[name]
	e.mu.Unlock()
	if ok && v.Kind == KindLvol {
		return e.resizeLvolVolume(ctx, name, sizeBytes)
	}
	j, err := e.resizeVolume(name, sizeBytes)
	if err != nil {
		return Volume{}, err
	}
	return e.await(ctx, name, j, "its new space to be cleared")
}

// resizeVolume records a volume's new size and starts clearing its new
// space. It returns the job to wait for, if any.
func (e *Engine) resizeVolume(name string, sizeBytes uint64) (*job, error) {
	if err := e.begin(); err != nil {
		return nil, err
	}
	defer e.mu.Unlock()
	v, ok := e.st.volumes[name]
	if !ok {
		return nil, errorf(ErrNotFound, "volume %q not found", name)
	}
	lv := e.volumes[name]
	if lv.dev == nil {
		return nil, e.unavailable(name)
	}
	p := e.st.pools[v.Pool]
	bs := uint64(p.BlockSize)
	if j := lv.job; j != nil {
		switch {
		case sizeBytes != j.target*bs:
			return nil, errorf(ErrConflict, "volume %q is growing to %d bytes (%d%% of the new space cleared): resize it to that size to wait for it", name, j.target*bs, j.percent())
		case j.running():
			return j, nil
		}
		return e.startJob(name, lv, v, resumeFrom(v, j)), nil
	}
	cur := lv.kind.blocks(v) * bs
	switch {
	case sizeBytes%bs != 0 || sizeBytes == 0:
		return nil, errorf(ErrInvalid, "volume %q: size %d is not a positive multiple of the block size %d", name, sizeBytes, bs)
	case sizeBytes < cur:
		return nil, errorf(ErrInvalid, "volume %q: shrinking from %d to %d bytes is refused: it would cut off data", name, cur, sizeBytes)
	case sizeBytes == cur:
		return nil, nil
	}
	w := workRecord{Op: workResize, OnlineBlocks: lv.kind.blocks(v)}
	p, err := lv.kind.grow(e.st, p, &v, sizeBytes/bs)
	if err != nil {
		return nil, err
	}
	v.Work = w
	next := e.st.clone()
	next.pools[v.Pool] = p
	next.volumes[name] = v
	if err := e.commit(next); err != nil {
		return nil, err
	}
	e.log.Info("volume resizing", "volume", name, "from_bytes", cur, "to_bytes", sizeBytes)
	return e.startJob(name, lv, v, w), nil
}

// DeleteVolume frees a volume's space. A shared volume, or one with
// channels open, is refused. A volume being created or resized has its
// work stopped first: DeleteVolume waits for that (or for ctx: then the
// volume is not deleted, and its work stays stopped until it is asked for
// again), so nothing writes into the space once it is free.
func (e *Engine) DeleteVolume(ctx context.Context, name string) error {
	// Not while a share of it is being made (see CreateShare).
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	for {
		if err := e.begin(); err != nil {
			return err
		}
		if _, ok := e.st.volumes[name]; !ok {
			e.mu.Unlock()
			return errorf(ErrNotFound, "volume %q not found", name)
		}
		if sh, ok := e.st.shares[name]; ok {
			e.mu.Unlock()
			return errorf(ErrConflict, "volume %q is shared as %s: remove the share first", name, sh.NQN)
		}
		if e.st.volumes[name].Kind == KindLvol {
			e.mu.Unlock()
			return e.deleteLvolVolume(name)
		}
		lv := e.volumes[name]
		if lv.dev != nil {
			if n := lv.dev.OpenChannels(); n > 0 {
				e.mu.Unlock()
				return errorf(ErrConflict, "volume %q is in use: %d channels open", name, n)
			}
		}
		j := lv.job
		if j == nil || !j.running() {
			break
		}
		// A CreateVolume or ResizeVolume may restart the work meanwhile:
		// look again.
		if err := e.stopJob(ctx, name, j); err != nil {
			return err
		}
	}
	defer e.mu.Unlock()
	v, lv := e.st.volumes[name], e.volumes[name]
	next := e.st.clone()
	p, err := lv.kind.free(next.pools[v.Pool], v)
	if err != nil {
		return err
	}
	next.pools[v.Pool] = p
	delete(next.volumes, name)
	if err := e.commit(next); err != nil {
		return err
	}
	delete(e.volumes, name)
	e.log.Info("volume deleted", "volume", name, "pool", v.Pool)
	if lv.dev != nil {
		if err := lv.dev.Close(); err != nil {
			return fmt.Errorf("engine: volume %s deleted, but its device did not close: %w", name, err)
		}
	}
	return nil
}
