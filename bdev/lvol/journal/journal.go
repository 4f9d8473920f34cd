// Package journal is the volume store's write-ahead journal: records of
// metadata changes appended to the ring of journal blocks in a pool's
// journal region (bdev/lvol/format), written from one reactor with group
// commit, and read back in order after a crash.
//
// Appending: a record goes into the open block; the block is written as
// soon as no other journal write is in flight, so records that arrive
// while one is in flight share the next write (group commit). A record's
// done runs once its block is written, durably if the record asked for
// FUA (the block is then written FUA, after a Flush if blocks before it
// were written without: a run is replayed only as far as its first lost
// block, so a durable record needs every block before it durable too).
// Sync runs its callback once every
// record appended before it is written, for the store to flush the
// device after: a host's Flush thus covers the records its writes needed.
// A failed journal write fails every record not yet written and every
// later one: the store must stop trusting its metadata (fault).
//
// The journal never overwrites what a checkpoint has not covered: Used
// says how much of the ring a run has filled, and Append fails with
// ErrFull once it would wrap onto the run's first block; the store
// checkpoints before that, at a point Pos gives while appends go on,
// and once the checkpoint is durable moves the run's start there
// (Checkpointed).
package journal

import (
	"errors"
	"fmt"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/internal/iomem"
)

// ErrFull is a record's error when the run has filled the ring.
var ErrFull = errors.New("journal: full: checkpoint first")

// Ring says where a journal lives.
type Ring struct {
	Off    uint64   // byte offset of the journal region
	Blocks uint64   // its length in metadata blocks
	Pool   [16]byte // the pool's UUID, in every block
}

// block is one journal block being filled, written or free.
type block struct {
	j       *Journal
	buf     []byte // format.MetaBlockSize bytes, off the Go heap
	payload []byte // the records so far (a prefix of buf's payload area)
	fua     bool
	waiters []func(error)
	req     bdev.Request
}

// Journal appends to a ring on one reactor's channel of the pool device.
// Reactor only, like the channel.
type Journal struct {
	ch   *bdev.Channel
	ring Ring
	bs   uint64

	mem   []*iomem.Region // the blocks' memory, grown a chunk at a time
	free  []*block
	open  *block
	queue []*block // sealed, to write in order
	busy  bool     // a block write is in flight

	pos, seq uint64 // where the next sealed block goes, and its sequence
	start    uint64 // the sequence of the run's first block
	dirty    bool   // a block was written without FUA since the last flush
	flush    bdev.Request
	syncs    []func(error)
	err      error
}

// chunkBlocks is how many blocks of memory the journal maps at a time:
// the open one, one in flight and those waiting behind it, more when a
// burst outruns the device.
const chunkBlocks = 64

// New returns a journal on ch (the pool device's channel on the reactor it
// is used from) for ring; Start begins a run.
func New(ch *bdev.Channel, ring Ring) (*Journal, error) {
	if ring.Blocks < 2 {
		return nil, fmt.Errorf("journal: a ring of %d blocks", ring.Blocks)
	}
	j := &Journal{ch: ch, ring: ring, bs: uint64(ch.Info().BlockSize)}
	j.flush.Op, j.flush.Callback = bdev.OpFlush, j.flushed
	if err := j.grow(); err != nil {
		return nil, err
	}
	return j, nil
}

// grow maps another chunk of blocks.
func (j *Journal) grow() error {
	mem, err := iomem.Map(chunkBlocks * format.MetaBlockSize)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.mem = append(j.mem, mem)
	for i := range chunkBlocks {
		b := &block{j: j, buf: mem.Bytes()[i*format.MetaBlockSize : (i+1)*format.MetaBlockSize]}
		b.req.Callback = b.written
		j.free = append(j.free, b)
	}
	return nil
}

// Close releases the journal's memory; nothing may be in flight.
func (j *Journal) Close() error {
	if j.busy {
		return errors.New("journal: closed with a write in flight")
	}
	var errs []error
	for _, m := range j.mem {
		errs = append(errs, m.Unmap())
	}
	return errors.Join(errs...)
}

// Start begins a run at ring block pos with sequence seq: what a
// checkpoint names, past every sequence the ring holds (Replay's
// NextSeq). Nothing may be pending.
func (j *Journal) Start(pos, seq uint64) {
	j.pos, j.seq, j.start = pos%j.ring.Blocks, seq, seq
}

// Checkpointed moves the run's start to the block of sequence seq (a
// point Pos gave, now covered by a durable checkpoint): the blocks before
// it may be overwritten. Appends may have gone on since Pos.
func (j *Journal) Checkpointed(seq uint64) error {
	if seq < j.start || seq > j.seq {
		return fmt.Errorf("journal: checkpointed at sequence %d, outside the run's %d to %d", seq, j.start, j.seq)
	}
	j.start = seq
	return nil
}

// Pos returns the ring block and the sequence the next block will have:
// where a checkpoint taken now would have the journal continue.
func (j *Journal) Pos() (pos, seq uint64) { return j.pos, j.seq }

// Used returns how many blocks of the ring the run holds, the open one
// included.
func (j *Journal) Used() uint64 {
	n := j.seq - j.start
	if j.open != nil {
		n++
	}
	return n
}

// Append adds a record and calls done once it is written (durably, with
// fua), or with the error that stopped it.
func (j *Journal) Append(typ format.RecordType, body []byte, fua bool, done func(error)) {
	if j.err != nil {
		done(j.err)
		return
	}
	if j.open != nil {
		if p, ok := format.AppendRecord(j.open.payload, typ, body); ok {
			j.open.payload = p
			j.add(j.open, fua, done)
			j.kick()
			return
		}
		j.seal()
	}
	if j.seq-j.start+1 >= j.ring.Blocks {
		// Full: one block stays free so that the run never reaches its
		// own start.
		done(ErrFull)
		return
	}
	if len(j.free) == 0 {
		if err := j.grow(); err != nil {
			done(err)
			return
		}
	}
	b := j.free[len(j.free)-1]
	j.free = j.free[:len(j.free)-1]
	b.payload, _ = format.AppendRecord(b.buf[format.HeaderSize:format.HeaderSize], typ, body)
	j.open = b
	j.add(b, fua, done)
	j.kick()
}

func (j *Journal) add(b *block, fua bool, done func(error)) {
	b.fua = b.fua || fua
	b.waiters = append(b.waiters, done)
}

// Sync calls done once every record appended so far is written.
func (j *Journal) Sync(done func(error)) {
	switch {
	case j.err != nil:
		done(j.err)
	case !j.busy && j.open == nil && len(j.queue) == 0:
		done(nil)
	default:
		j.syncs = append(j.syncs, done)
		j.kick()
	}
}

// seal closes the open block: it takes the run's next position and
// sequence and waits in the queue.
func (j *Journal) seal() {
	b := j.open
	j.open = nil
	format.Block(b.buf).Seal(format.KindJournal, j.seq, j.ring.Pool, len(b.payload))
	bpb := format.MetaBlockSize / j.bs
	b.req.Op, b.req.LBA, b.req.Blocks = bdev.OpWrite, j.ring.Off/j.bs+j.pos*bpb, uint32(bpb)
	b.req.Buf, b.req.FUA = b.buf, b.fua
	j.pos, j.seq = (j.pos+1)%j.ring.Blocks, j.seq+1
	j.queue = append(j.queue, b)
}

// kick writes the next block if none is in flight.
func (j *Journal) kick() {
	if j.busy || j.err != nil {
		return
	}
	if len(j.queue) == 0 {
		if j.open == nil {
			return
		}
		j.seal()
	}
	b := j.queue[0]
	j.busy = true
	if b.fua && j.dirty {
		j.ch.Submit(&j.flush) // the blocks before it durable first
		return
	}
	j.queue = j.queue[1:]
	j.dirty = j.dirty || !b.fua
	j.ch.Submit(&b.req)
}

// flushed is the callback of the flush before a FUA block.
func (j *Journal) flushed(req *bdev.Request) {
	j.busy = false
	if req.Status != bdev.StatusOK {
		j.err = fmt.Errorf("journal: flush: %v", req.Status)
		j.failAll()
		return
	}
	j.dirty = false
	j.kick()
}

// written is a block write's callback.
func (b *block) written(req *bdev.Request) {
	j := b.j
	j.busy = false
	var err error
	if req.Status != bdev.StatusOK {
		err = fmt.Errorf("journal: writing block at byte %d: %v", req.LBA*j.bs, req.Status)
		j.err = err
	}
	waiters := b.waiters
	b.waiters, b.fua, b.payload = b.waiters[:0], false, nil
	j.free = append(j.free, b)
	for _, w := range waiters {
		w(err)
	}
	if j.err != nil {
		j.failAll()
		return
	}
	if !j.busy && j.open == nil && len(j.queue) == 0 {
		syncs := j.syncs
		j.syncs = nil
		for _, s := range syncs {
			s(nil)
		}
	}
	j.kick()
}

// failAll fails what waits once a journal write has failed.
func (j *Journal) failAll() {
	pending := j.queue
	if j.open != nil {
		pending = append(pending, j.open)
		j.open = nil
	}
	j.queue = nil
	for _, b := range pending {
		for _, w := range b.waiters {
			w(j.err)
		}
		b.waiters, b.fua, b.payload = b.waiters[:0], false, nil
		j.free = append(j.free, b)
	}
	syncs := j.syncs
	j.syncs = nil
	for _, s := range syncs {
		s(j.err)
	}
}

// Run is what Replay found.
type Run struct {
	End     uint64 // the ring block after the run's last
	Records int
	// NextSeq is past every sequence any block of the ring holds: the
	// next run starts with it, so no older block can follow its own.
	NextSeq uint64
	// Stop is why the run ended (nil: it filled the ring); a blank, torn
	// or older block is the normal end of a journal after a crash.
	Stop error
}

// Replay reads the run that starts at ring block pos with sequence seq,
// through read (ring block i, as format.MetaBlockSize bytes), and calls
// fn with each record in order. A record block that checks but does not
// divide into records is corruption: Replay returns the error, having
// told fn of the records before it.
func Replay(read func(i uint64) ([]byte, error), ring Ring, pos, seq uint64, fn func(format.RecordType, []byte)) (Run, error) {
	blocks := make([]format.Block, ring.Blocks)
	run := Run{NextSeq: seq}
	for i := range ring.Blocks {
		b, err := read(i)
		if err != nil {
			return run, fmt.Errorf("journal: read block %d: %w", i, err)
		}
		blocks[i] = format.Block(b)
		if blocks[i].Check(format.KindJournal, ring.Pool, ring.Off+i*format.MetaBlockSize) == nil {
			run.NextSeq = max(run.NextSeq, blocks[i].Seq()+1)
		}
	}
	n, stop := format.JournalRun(func(i uint64) format.Block { return blocks[i] }, ring.Blocks, pos, seq, ring.Pool, ring.Off)
	run.End, run.Stop = (pos+n)%ring.Blocks, stop
	for k := range n {
		i := (pos + k) % ring.Blocks
		err := format.Records(blocks[i].Payload(), ring.Off+i*format.MetaBlockSize, func(t format.RecordType, body []byte) bool {
			fn(t, body)
			run.Records++
			return true
		})
		if err != nil {
			return run, err
		}
	}
	return run, nil
}
