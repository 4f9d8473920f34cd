package lvol

import (
	"errors"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/bdev/lvol/journal"
	"github.com/strata-storage/strata/reactor"
)

// Open opens the volume store on dev with r as its metadata reactor,
// from the device alone: the newest valid superblock, the newest valid
// checkpoint, the journal's run after it; then it writes a new checkpoint
// (into the other half) so that the run it starts can never be confused
// with what a crash left in the ring, and completes the thick volumes a
// crash cut short. Its time is the metadata's and the journal's, never
// the data's.
func Open(dev bdev.Device, r *reactor.Reactor) (*Store, error) {
	ch, err := bdev.Open(dev, r)
	if err != nil {
		return nil, err
	}
	s := &Store{dev: dev, r: r, ch: ch}
	if err := s.load(); err != nil {
		if s.j != nil {
			r.Call(func(*reactor.Reactor) error { return errors.Join(s.j.Close(), s.meta.Unmap(), s.fills.close()) })
		}
		r.Call(func(*reactor.Reactor) error { return ch.Close() })
		return nil, fmt.Errorf("lvol: open %s: %w", dev.Info().Name, err)
	}
	return s, nil
}

// loaded is what the open path found on the device.
type loaded struct {
	t    *tables
	head format.CheckpointHead
	half int
	// maxSeq is the highest sequence of any checkpoint block either half
	// holds: the next checkpoint starts past it, so that no block of an
	// older one can ever continue it.
	maxSeq uint64
	// passed is why the newer checkpoint did not load, when the older one
	// stands in: torn by a crash as it was written, or damaged.
	passed error
}

func (s *Store) load() error {
	bio, err := newBlockIO(s.ch)
	if err != nil {
		return err
	}
	defer bio.close()
	run, err := s.read(bio, nil)
	if err != nil {
		return err
	}
	// The new run starts past every sequence in the ring; a checkpoint
	// naming it, durable before its first block, is what makes it the
	// journal's.
	ckpt, err := s.encodeCheckpoint(run.End, run.NextSeq)
	if err != nil {
		return err
	}
	if err := bio.write(s.halfOff(1-s.half), ckpt); err != nil {
		return err
	}
	if err := bio.flush(); err != nil {
		return err
	}
	s.half = 1 - s.half
	if err := s.r.Call(func(*reactor.Reactor) error { return s.start(run.End, run.NextSeq) }); err != nil {
		return err
	}
	return s.completeThick()
}

// read loads the tables as the device's metadata has them, writing
// nothing: the newest valid superblock, the newest whole checkpoint, the
// journal's run after it. slots, when not nil, is told of each
// superblock slot's error (nil: it checks).
func (s *Store) read(bio *blockIO, slots func(i int, err error)) (journal.Run, error) {
	in := s.ch.Info()
	buf := make([]byte, format.SuperblockBytes)
	if err := bio.read(0, buf); err != nil {
		return journal.Run{}, err
	}
	var err error
	if s.sb, err = format.NewestSuperblock(buf, in.Size()); err != nil {
		return journal.Run{}, err
	}
	if slots != nil {
		// (Slots naming two pools: NewestSuperblock refused them.)
		for i := range format.SuperblockSlots {
			_, err := format.DecodeSuperblock(format.Block(buf[i*format.MetaBlockSize:(i+1)*format.MetaBlockSize]), i, in.Size())
			slots(i, err)
		}
	}
	if s.sb.BlockSize != in.BlockSize {
		return journal.Run{}, fmt.Errorf("pool laid out for %d-byte blocks on a device of %d", s.sb.BlockSize, in.BlockSize)
	}
	s.setLayout()
	l, err := s.loadCheckpoint(bio)
	if err != nil {
		return journal.Run{}, err
	}
	s.t, s.half, s.ckptSeq = l.t, l.half, l.maxSeq+1
	run, err := s.replay(bio, l.head)
	if err != nil && l.passed != nil {
		err = fmt.Errorf("%w; checkpoint %c stood in for the newer one, which does not load: %w", err, 'A'+l.half, l.passed)
	}
	return run, err
}

// loadCheckpoint reads both halves of the metadata region and loads the
// newest checkpoint that is whole, the other if that one is not.
func (s *Store) loadCheckpoint(bio *blockIO) (loaded, error) {
	var halves [2][]byte
	var first [2]uint64
	var l loaded
	for h := range 2 {
		halves[h] = make([]byte, s.halfBlocks*format.MetaBlockSize)
		if err := bio.read(s.halfOff(h), halves[h]); err != nil {
			return l, err
		}
		for i := range s.halfBlocks {
			b := format.Block(halves[h][i*format.MetaBlockSize : (i+1)*format.MetaBlockSize])
			if b.Check(format.KindCheckpoint, s.sb.Pool, s.halfOff(h)+i*format.MetaBlockSize) != nil {
				continue
			}
			l.maxSeq = max(l.maxSeq, b.Seq())
			if i == 0 {
				first[h] = b.Seq()
			}
		}
	}
	order := []int{0, 1}
	if first[1] > first[0] {
		order = []int{1, 0}
	}
	var errs []error
	for _, h := range order {
		half := halves[h]
		t, head, _, err := loadTables(func(i uint64) (format.Block, error) {
			return format.Block(half[i*format.MetaBlockSize : (i+1)*format.MetaBlockSize]), nil
		}, s.halfBlocks, s.sb.Pool, s.halfOff(h), s.sb.ClusterSize, s.sb.Clusters)
		if err == nil {
			l.t, l.head, l.half = t, head, h
			l.passed = errors.Join(errs...)
			return l, nil
		}
		errs = append(errs, fmt.Errorf("checkpoint %c: %w", 'A'+h, err))
	}
	return l, fmt.Errorf("no valid checkpoint: %w", errors.Join(errs...))
}

// replay applies the journal's run after the checkpoint to the tables. A
// record that does not decode or apply is corruption: the store is not
// opened (`strata pool check` says what is wrong).
func (s *Store) replay(bio *blockIO, head format.CheckpointHead) (journal.Run, error) {
	ring := s.ring()
	if head.JournalPos >= ring.Blocks {
		return journal.Run{}, fmt.Errorf("the checkpoint points the journal at block %d of %d", head.JournalPos, ring.Blocks)
	}
	region := make([]byte, s.sb.JournalLen)
	if err := bio.read(s.sb.JournalOff, region); err != nil {
		return journal.Run{}, err
	}
	var bad error
	n := 0
	run, err := journal.Replay(func(i uint64) ([]byte, error) {
		return region[i*format.MetaBlockSize : (i+1)*format.MetaBlockSize], nil
	}, ring, head.JournalPos, head.JournalSeq, func(typ format.RecordType, body []byte) {
		if bad != nil {
			return
		}
		n++
		rec, err := format.DecodeRecord(typ, body)
		if err == nil {
			err = s.t.apply(&rec)
		}
		if err != nil {
			bad = fmt.Errorf("journal record %d after the checkpoint: %w", n, err)
		}
	})
	return run, errors.Join(err, bad)
}

// completeThick maps the rest of every thick volume a crash cut short
// (its record kept, not all its runs): thick volumes are always whole.
func (s *Store) completeThick() error {
	return s.run(func(done func(error)) {
		var ids []uint32
		for _, id := range s.t.ids() {
			if v := s.t.vols[id]; !v.thin() && !v.snapshot() && v.mapped < v.m.Clusters() {
				ids = append(ids, id)
			}
		}
		var next func(error)
		next = func(err error) {
			if err != nil || len(ids) == 0 {
				done(err)
				return
			}
			id := ids[0]
			ids = ids[1:]
			s.mapThick(id, next)
		}
		next(nil)
	})
}

// Check reads the volume store on dev as Open would, writing nothing,
// and returns every fault it finds: a superblock slot that does not
// check, metadata the store would refuse to open with (the error names
// the block), or tables that break an invariant. None: the store checks.
// It is the offline `strata pool check`, for a pool that is not open (a
// faulted one, whose store would not open, included); an open store
// checks its live tables with Store.Check.
func Check(dev bdev.Device, r *reactor.Reactor) ([]error, error) {
	var faults []error
	err := offline(dev, r, func(s *Store, bio *blockIO) error {
		_, err := s.read(bio, func(i int, err error) {
			if err != nil {
				faults = append(faults, fmt.Errorf("superblock slot %d (byte %d): %w", i, i*format.MetaBlockSize, err))
			}
		})
		switch {
		case errors.Is(err, ErrNotPool):
			return fmt.Errorf("lvol: check %s: %w", dev.Info().Name, err)
		case err != nil:
			faults = append(faults, err)
		default:
			// A thick volume a crash cut short is completed by Open: not
			// a fault.
			faults = append(faults, s.t.check(nil, true)...)
		}
		return nil
	})
	return faults, err
}

// offline runs fn over a store value and a block I/O on dev that no
// running store owns (Probe, Check): they read, and write nothing.
func offline(dev bdev.Device, r *reactor.Reactor, fn func(s *Store, bio *blockIO) error) error {
	ch, err := bdev.Open(dev, r)
	if err != nil {
		return err
	}
	defer r.Call(func(*reactor.Reactor) error { return ch.Close() })
	bio, err := newBlockIO(ch)
	if err != nil {
		return err
	}
	defer bio.close()
	return fn(&Store{dev: dev, r: r, ch: ch}, bio)
}
