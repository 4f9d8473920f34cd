package lvol

import (
	"context"
	"fmt"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/format"
)

// Snapshots and clones.
//
// A snapshot is a read-only volume whose map is the volume's as it was:
// the two share the map's pages (clmap), and every cluster they both map
// has a reference count of 2, so the volume's next write there goes to
// the metadata reactor and is copied on write into a cluster of its own.
// A clone is a thin volume whose map starts as its snapshot's. Every map
// is resolved (a read is one lookup, whatever the chain of snapshots and
// clones behind it), so nothing depends on a snapshot's being there:
// deleting one drops its references, and what the volume, its other
// snapshots or its clones still map stays theirs (kept, never merged).
// Likewise a volume shrinks whatever its snapshots hold: they keep their
// own references to the tail.

// Snapshot takes a snapshot named name of volume: what every write
// acknowledged before the call holds, durable (the pool is flushed
// before the snapshot's record). An open volume's I/O is quiesced from
// before the flush until the record is durable; paused says for how
// long.
func (s *Store) Snapshot(ctx context.Context, volume, name string) (vi VolumeInfo, paused time.Duration, err error) {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	src, err := s.Volume(volume)
	if err != nil {
		return VolumeInfo{}, 0, err
	}
	if src.Snapshot {
		return VolumeInfo{}, 0, fmt.Errorf("lvol: %q is a snapshot: snapshot a volume or a clone", volume)
	}
	rec := format.Volume{
		Flags: format.VolumeSnapshot, Size: src.Size, Parent: src.ID,
		UUID: bdev.NewUUID(), NGUID: bdev.NewUUID(), Serial: serial(),
		Created: time.Now().UnixNano(), Name: name,
	}
	if src.Thin {
		rec.Flags |= format.VolumeThin
	}
	s.mu.Lock()
	dev := s.open[src.ID]
	s.mu.Unlock()
	start := time.Now()
	if dev != nil {
		if err := dev.Quiesce(ctx); err != nil {
			return VolumeInfo{}, 0, fmt.Errorf("lvol: snapshot of %q: %w", volume, err)
		}
		defer dev.Resume()
	}
	err = s.run(func(done func(error)) {
		if s.t.vols[src.ID] == nil {
			done(fmt.Errorf("%w: %q", ErrNotFound, volume))
			return
		}
		if err := s.admitNew(&rec); err != nil {
			done(err)
			return
		}
		s.fl.flush(func(err error) {
			if err != nil {
				done(err)
				return
			}
			s.commit([]format.Record{{Type: format.RecSnapshot, Volume: rec}}, true, func(err error) {
				s.created(rec.ID, &vi, err, done)
			})
		})
	})
	paused = time.Since(start)
	if err != nil {
		return VolumeInfo{}, paused, fmt.Errorf("lvol: snapshot %q of %q: %w", name, volume, err)
	}
	return vi, paused, nil
}

// Clone makes a writable thin volume whose content is snapshot's; size 0
// is the snapshot's size, anything else must not be smaller.
func (s *Store) Clone(snapshot string, spec VolumeSpec) (VolumeInfo, error) {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	src, err := s.Volume(snapshot)
	if err != nil {
		return VolumeInfo{}, err
	}
	if !src.Snapshot {
		return VolumeInfo{}, fmt.Errorf("lvol: clone %q of %q: %q is no snapshot", spec.Name, snapshot, snapshot)
	}
	if spec.Size == 0 {
		spec.Size = src.Size
	}
	if spec.Size < src.Size || spec.Size%s.bs != 0 {
		return VolumeInfo{}, fmt.Errorf("lvol: clone %q of %d bytes: whole %d-byte blocks, at least its snapshot's %d", spec.Name, spec.Size, s.bs, src.Size)
	}
	rec := format.Volume{
		Flags: format.VolumeThin, Size: spec.Size, Parent: src.ID, UUID: spec.UUID, NGUID: spec.NGUID,
		Serial: serial(), Created: time.Now().UnixNano(), Name: spec.Name,
	}
	for _, u := range []*[16]byte{&rec.UUID, &rec.NGUID} {
		if *u == ([16]byte{}) {
			*u = bdev.NewUUID()
		}
	}
	var vi VolumeInfo
	err = s.run(func(done func(error)) {
		if s.t.vols[src.ID] == nil {
			done(fmt.Errorf("%w: %q", ErrNotFound, snapshot))
			return
		}
		if err := s.admitNew(&rec); err != nil {
			done(err)
			return
		}
		s.commit([]format.Record{{Type: format.RecClone, Volume: rec}}, true, func(err error) {
			s.created(rec.ID, &vi, err, done)
		})
	})
	if err != nil {
		return VolumeInfo{}, fmt.Errorf("lvol: clone %q of %q: %w", spec.Name, snapshot, err)
	}
	return vi, nil
}
