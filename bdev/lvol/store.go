// Package lvol is the volume store: a pool device that describes itself
// (docs/lvstore-format.md), carved into thick and thin volumes, each a
// block device of its own.
//
// The store's tables (tables.go) belong to its metadata reactor and
// change only by journal records, each applied once its journal block is
// written: what the tables say is what the device would say after a
// crash, once the pool is flushed. Volumes' I/O runs on every reactor
// and reads the maps without a lock (volume.go); what needs the tables
// to change (a thin volume's first write into a cluster, copy on write,
// unmapping a cluster) goes to the metadata reactor (fill.go). Control
// operations (ops.go) run one at a time from any goroutine.
package lvol

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/bdev/lvol/journal"
	"github.com/strata-storage/strata/internal/iomem"
	"github.com/strata-storage/strata/reactor"
)

// Store is an open volume store.
type Store struct {
	dev bdev.Device
	r   *reactor.Reactor // the metadata reactor
	ch  *bdev.Channel    // the pool's channel on it
	sb  format.Superblock
	bs  uint64
	// csBlocks is a cluster in the device's blocks, dataLBA where the
	// data region starts.
	csBlocks, dataLBA uint64
	halfBlocks        uint64 // each half of the metadata region

	ctl sync.Mutex // one control operation at a time

	// The metadata reactor's.
	t           *tables
	j           *journal.Journal
	ringBlocks  uint64
	fl          flusher
	half        int    // the half holding the newest durable checkpoint
	ckptSeq     uint64 // the next checkpoint's first sequence
	ckptBusy    bool
	paused      bool // appends wait for a checkpoint's point
	ckptWaiters []func(error)
	ckptNext    []func(error) // for a checkpoint after the one running
	queued      []commitReq
	meta        *iomem.Region // checkpoint writes
	metaReq     bdev.Request
	metaDone    func(error)
	metaRest    []byte
	metaOff     uint64
	// metaBound bounds the bytes of a checkpoint of the tables now: the
	// last one measured, and what records applied since may add
	// (metaRoom). metaExact: it is the last measure, no record applied
	// since.
	metaBound uint64
	metaExact bool
	err       error // the fault that stopped the store's metadata
	closed    bool
	fills     fillState
	grace     grace

	// epoch is the data path's grace-period epoch (grace.go).
	epoch atomic.Uint64
	dur   durability

	mu       sync.Mutex // guards what follows
	backends []*backend
	open     map[uint32]*Volume
}

// ErrClosedStore reports an operation on a store being closed.
var ErrClosedStore = errors.New("lvol: store closed")

// CreateOptions are the choices made when a pool is formatted.
type CreateOptions struct {
	ClusterSize uint64 // 0: format.DefaultClusterSize
}

// Create formats dev as a new, empty volume store (a fresh pool UUID) and
// opens it with r as its metadata reactor. Whatever dev held is gone.
func Create(dev bdev.Device, r *reactor.Reactor, opts CreateOptions) (*Store, error) {
	if opts.ClusterSize == 0 {
		opts.ClusterSize = format.DefaultClusterSize
	}
	in := dev.Info()
	layout, err := format.NewLayout(in.Size(), in.BlockSize, opts.ClusterSize)
	if err != nil {
		return nil, err
	}
	s := &Store{dev: dev, r: r, sb: format.Superblock{
		Pool: bdev.NewUUID(), Seq: 1, Created: time.Now().UnixNano(), Layout: layout,
	}}
	s.setLayout()
	s.t = newTables(layout.ClusterSize, layout.Clusters)
	s.ckptSeq = 1
	if s.ch, err = bdev.Open(dev, r); err != nil {
		return nil, err
	}
	err = s.format()
	if cerr := r.Call(func(*reactor.Reactor) error { return s.ch.Close() }); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("lvol: format %s: %w", in.Name, err)
	}
	return Open(dev, r)
}

// format writes an empty checkpoint into half A, then the superblocks:
// the superblock is what makes the device a pool, so it comes last. Both
// slots are written, so that none left by an earlier pool names another.
func (s *Store) format() error {
	bio, err := newBlockIO(s.ch)
	if err != nil {
		return err
	}
	defer bio.close()
	ckpt, err := s.encodeCheckpoint(0, 1)
	if err != nil {
		return err
	}
	if err := bio.write(s.halfOff(0), ckpt); err != nil {
		return err
	}
	if err := bio.flush(); err != nil {
		return err
	}
	slots := make([]byte, format.SuperblockBytes)
	for i := range format.SuperblockSlots {
		s.sb.Encode(format.Block(slots[i*format.MetaBlockSize : (i+1)*format.MetaBlockSize]))
	}
	if err := bio.write(0, slots); err != nil {
		return err
	}
	return bio.flush()
}

func (s *Store) setLayout() {
	s.bs = uint64(s.sb.BlockSize)
	s.csBlocks = s.sb.ClusterSize / s.bs
	s.dataLBA = s.sb.DataOff / s.bs
	s.halfBlocks = s.sb.MetaLen / format.MetaBlockSize / 2
	s.ringBlocks = s.sb.JournalLen / format.MetaBlockSize
	s.open = make(map[uint32]*Volume)
}

func (s *Store) halfOff(h int) uint64 {
	return s.sb.MetaOff + uint64(h)*s.halfBlocks*format.MetaBlockSize
}

func (s *Store) ring() journal.Ring {
	return journal.Ring{Off: s.sb.JournalOff, Blocks: s.ringBlocks, Pool: s.sb.Pool}
}

// Pool returns the pool's UUID.
func (s *Store) Pool() bdev.UUID { return s.sb.Pool }

// Layout returns where the pool keeps what.
func (s *Store) Layout() format.Layout { return s.sb.Layout }

// start makes the store live on its reactor once its tables are loaded:
// the journal's run from pos, seq, the hooks of freed clusters. Called on
// the metadata reactor.
func (s *Store) start(pos, seq uint64) error {
	j, err := journal.New(s.ch, s.ring())
	if err != nil {
		return err
	}
	if s.meta, err = iomem.Map(ioChunk); err != nil {
		j.Close()
		return fmt.Errorf("lvol: %w", err)
	}
	s.j = j
	j.Start(pos, seq)
	s.dur.volatile = s.ch.Info().VolatileCache
	s.fl.init(s.ch, &s.dur, j)
	s.metaReq.Callback = s.metaWritten
	s.fills.init()
	s.grace.init(s)
	s.t.freed = s.freed
	return nil
}

// run runs op on the metadata reactor and waits for the done it is
// given: control operations, which wait for their records.
func (s *Store) run(op func(done func(error))) error {
	res := make(chan error, 1)
	err := s.r.Post(reactor.TaskFunc(func(*reactor.Reactor) {
		switch {
		case s.closed:
			res <- ErrClosedStore
			return
		case s.err != nil:
			res <- s.err
			return
		}
		op(func(err error) { res <- err })
	}))
	if err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-s.r.Done():
		return reactor.ErrStopped
	}
}

// fault stops the store's metadata: a journal or checkpoint write failed,
// or a record would not apply (a bug). Reads and writes in place go on;
// nothing that changes the tables does.
func (s *Store) fault(err error) {
	if s.err != nil {
		return
	}
	s.err = fmt.Errorf("lvol: pool %s faulted: %w", s.sb.Pool, err)
	// Writes waiting for a grace period's clusters wait for nothing now:
	// a faulted store frees none. They fail (onFill), after the step
	// that faulted it.
	if len(s.fills.spaceWait) > 0 {
		s.r.Defer(reactor.TaskFunc(func(*reactor.Reactor) { s.spaceFreed() }))
	}
}

// Err returns the fault that stopped the store's metadata, or nil.
func (s *Store) Err() error {
	var err error
	s.r.Call(func(*reactor.Reactor) error { err = s.err; return nil })
	return err
}

// commitReq is a batch of records waiting for room in the journal.
type commitReq struct {
	recs []format.Record
	fua  bool
	done func(error)
}

// blocksFor bounds the journal blocks records take: a block wastes less
// than the largest record.
func blocksFor(recs []format.Record) uint64 {
	var n uint64
	for i := range recs {
		n += uint64(format.RecordHead + len(recs[i].Encode()))
	}
	per := uint64(format.MaxPayload - format.RecordHead - format.VolumeSize)
	return (n+per-1)/per + 1
}

// commit appends records, applies each to the tables once its block is
// written, and calls done after the last (durably, with fua) or with the
// first error. Records wait while a checkpoint takes its point or the
// journal has no room. Metadata reactor only.
func (s *Store) commit(recs []format.Record, fua bool, done func(error)) {
	if s.err != nil {
		done(s.err)
		return
	}
	need := blocksFor(recs)
	if need+2 >= s.ringBlocks {
		done(fmt.Errorf("lvol: a change of %d records needs %d journal blocks; the journal has %d", len(recs), need, s.ringBlocks))
		return
	}
	if s.paused || s.j.Used()+need+1 >= s.ringBlocks {
		s.queued = append(s.queued, commitReq{recs, fua, done})
		s.checkpoint(nil)
		return
	}
	for i := range recs {
		rec := &recs[i]
		last := i == len(recs)-1
		recFUA := fua && last
		s.j.Append(rec.Type, rec.Encode(), recFUA, func(err error) {
			switch {
			case s.err != nil:
				err = s.err
			case err != nil:
				s.fault(err)
			default:
				if !recFUA {
					s.dur.written()
				}
				s.metaBound += metaGrowth(rec)
				s.metaExact = false
				if aerr := s.t.apply(rec); aerr != nil {
					s.fault(fmt.Errorf("a record of type %d would not apply: %w", rec.Type, aerr))
					err = s.err
				} else if recFUA {
					// Its block was FUA, the blocks before it flushed
					// first: every record applied is durable.
					s.dur.covered(s.dur.snapshot())
				}
			}
			if done != nil && (last || err != nil) {
				d := done
				done = nil // told once: of the first error, or after the last
				d(err)
			}
		})
	}
	if s.j.Used() >= s.ringBlocks/2 {
		s.checkpoint(nil)
	}
}

// writeTables writes the tables as checkpoint blocks from sequence seq
// under head, each handed to put.
func (s *Store) writeTables(seq uint64, head format.CheckpointHead, put func(format.Block) error) error {
	w, err := format.NewCheckpointWriter(s.sb.Pool, seq, head, put)
	if err == nil {
		err = s.t.writeCheckpoint(w)
	}
	if err == nil {
		err = w.Close()
	}
	return err
}

// encodeCheckpoint writes the tables as a checkpoint whose head points
// the journal at pos, seq; it fails if it outgrows a half of the metadata
// region.
func (s *Store) encodeCheckpoint(pos, seq uint64) ([]byte, error) {
	var out []byte
	limit := s.halfBlocks * format.MetaBlockSize
	head := format.CheckpointHead{JournalPos: pos, JournalSeq: seq, NextVolumeID: s.t.nextID}
	err := s.writeTables(s.ckptSeq, head, func(b format.Block) error {
		if uint64(len(out))+format.MetaBlockSize > limit {
			return fmt.Errorf("lvol: the tables outgrow the metadata region's half of %d bytes", limit)
		}
		out = append(out, b...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.ckptSeq += uint64(len(out)) / format.MetaBlockSize
	s.metaBound, s.metaExact = uint64(len(out)), true
	return out, nil
}

// checkpoint writes the tables into the other half while the journal
// goes on: appends wait only while the records before the checkpoint's
// point are written (and so applied); once the checkpoint is durable the
// journal's run starts at that point. done (nil: none) runs once a
// checkpoint begun after the call is durable. Metadata reactor only.
func (s *Store) checkpoint(done func(error)) {
	if s.ckptBusy {
		if done != nil {
			s.ckptNext = append(s.ckptNext, done)
		}
		return
	}
	if done != nil {
		s.ckptWaiters = append(s.ckptWaiters, done)
	}
	s.ckptBusy, s.paused = true, true
	s.j.Sync(func(err error) {
		var seq uint64
		var buf []byte
		if err == nil {
			var pos uint64
			pos, seq = s.j.Pos()
			buf, err = s.encodeCheckpoint(pos, seq)
		}
		s.paused = false
		if err != nil {
			s.fault(err)
			s.checkpointed(err)
			return
		}
		s.releaseQueued()
		s.writeMeta(s.halfOff(1-s.half), buf, func(err error) {
			if err != nil {
				s.fault(err)
				s.checkpointed(err)
				return
			}
			s.fl.flush(func(err error) {
				if err == nil {
					err = s.j.Checkpointed(seq)
				}
				if err != nil {
					s.fault(err)
				} else {
					s.half = 1 - s.half
				}
				s.checkpointed(err)
			})
		})
	})
}

// checkpointed ends a checkpoint: its waiters are told, and another one
// starts if records still wait for room or someone asked meanwhile.
func (s *Store) checkpointed(err error) {
	waiters := s.ckptWaiters
	s.ckptWaiters, s.ckptBusy = s.ckptNext, false
	s.ckptNext = nil
	for _, w := range waiters {
		w(err)
	}
	if s.err != nil {
		s.releaseQueued()
		for _, w := range s.ckptWaiters {
			w(s.err)
		}
		s.ckptWaiters = nil
		return
	}
	if len(s.queued) > 0 || len(s.ckptWaiters) > 0 {
		next := s.ckptWaiters
		s.ckptWaiters = nil
		s.checkpoint(nil)
		s.ckptWaiters = append(s.ckptWaiters, next...)
	}
}

// releaseQueued commits the records that waited, in order (commit queues
// them again if the journal still has no room).
func (s *Store) releaseQueued() {
	q := s.queued
	s.queued = nil
	for _, c := range q {
		s.commit(c.recs, c.fua, c.done)
	}
}

// writeMeta writes buf at byte off of the pool through the store's
// metadata buffer, a chunk at a time. Metadata reactor only; one at a
// time.
func (s *Store) writeMeta(off uint64, buf []byte, done func(error)) {
	s.metaOff, s.metaRest, s.metaDone = off, buf, done
	s.metaNext()
}

func (s *Store) metaNext() {
	if len(s.metaRest) == 0 {
		d := s.metaDone
		s.metaDone = nil
		d(nil)
		return
	}
	n := min(len(s.metaRest), ioChunk)
	copy(s.meta.Bytes(), s.metaRest[:n])
	s.metaReq.Op, s.metaReq.LBA, s.metaReq.Blocks = bdev.OpWrite, s.metaOff/s.bs, uint32(uint64(n)/s.bs)
	s.metaReq.Buf, s.metaReq.FUA = s.meta.Bytes()[:n], false
	s.metaRest, s.metaOff = s.metaRest[n:], s.metaOff+uint64(n)
	s.ch.Submit(&s.metaReq)
}

func (s *Store) metaWritten(req *bdev.Request) {
	if err := req.Status.Err(); err != nil {
		d := s.metaDone
		s.metaDone, s.metaRest = nil, nil
		d(fmt.Errorf("lvol: writing a checkpoint at byte %d: %w", req.LBA*s.bs, err))
		return
	}
	s.metaNext()
}

// Close checkpoints the store (the next open replays nothing) and
// releases it; its volumes must be closed first. The device stays open.
func (s *Store) Close() error {
	s.ctl.Lock()
	defer s.ctl.Unlock()
	var closed bool
	s.r.Call(func(*reactor.Reactor) error { closed = s.closed; return nil })
	if closed {
		return ErrClosedStore
	}
	s.mu.Lock()
	n := len(s.open)
	s.mu.Unlock()
	if n > 0 {
		return fmt.Errorf("lvol: closing pool %s with %d volumes open", s.sb.Pool, n)
	}
	err := s.run(func(done func(error)) { s.checkpoint(done) })
	// What is still on its way (a grace period's flush, a checkpoint's
	// write) finishes before the channel closes.
	for {
		var busy bool
		if cerr := s.r.Call(func(*reactor.Reactor) error {
			busy = s.ckptBusy || s.grace.busy || s.fl.busy || s.fills.busy()
			return nil
		}); cerr != nil {
			return errors.Join(err, cerr)
		}
		if !busy {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cerr := s.r.Call(func(*reactor.Reactor) error {
		s.closed = true
		return errors.Join(s.j.Close(), s.meta.Unmap(), s.fills.close(), s.ch.Close())
	})
	return errors.Join(err, cerr)
}
