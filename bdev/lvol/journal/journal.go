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
	"math"

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
	seq     uint64 // once sealed
	fua     bool
	waiters []func(error)
	req     bdev.Request
}

// Journal appends to a ring on one reactor's channel of the pool device.
// Reactor only, like the channel.
type Journal struct {
	ch       *bdev.Channel
	ring     Ring
	bs       uint64
	volatile bool // the device has a volatile cache: a write is durable only once flushed

	mem   []*iomem.Region // the blocks' memory, grown a chunk at a time
	free  []*block
	open  *block
	queue []*block // sealed, to write in order
	busy  bool     // a block write is in flight

	pos, seq uint64 // where the next sealed block goes, and its sequence
	start    uint64 // the sequence of the run's first block
	dirty    bool   // a block was written without FUA since the last flush
	// The blocks of the run with sequences below writtenTo are written,
	// below durableTo on stable media (a flush after them, or a FUA
	// block); each block written says so in its header (its durable
	// lag), for Replay to tell a lost block from a torn tail.
	writtenTo, durableTo uint64
	flushTo              uint64 // writtenTo when the journal's flush was submitted
	flush                bdev.Request
	syncs                []func(error)
	err                  error
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
	j := &Journal{ch: ch, ring: ring, bs: uint64(ch.Info().BlockSize), volatile: ch.Info().VolatileCache}
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
	j.writtenTo, j.durableTo = seq, seq
}

// Written returns the sequence past the last block written: a flush
// submitted now makes every block below it durable (Flushed).
func (j *Journal) Written() uint64 { return j.writtenTo }

// Flushed tells the journal that a flush of the device, submitted when
// Written returned to, has completed: the blocks below to are durable.
func (j *Journal) Flushed(to uint64) {
	j.durableTo = max(j.durableTo, to)
	if to == j.writtenTo && !j.busy {
		j.dirty = false // nothing written since: a FUA block needs no flush first
	}
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
	b.seq = j.seq
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
		j.flushTo = j.writtenTo
		j.ch.Submit(&j.flush) // the blocks before it durable first
		return
	}
	j.queue = j.queue[1:]
	j.dirty = j.dirty || !b.fua
	// Sealed now, not when queued: the lag says what is durable as the
	// block goes to the device.
	var lag uint32
	if d := b.seq - (j.durableTo - 1); j.durableTo > j.start && d <= math.MaxUint32 {
		lag = uint32(d)
	}
	format.Block(b.buf).SealJournal(b.seq, j.ring.Pool, len(b.payload), lag)
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
	j.durableTo = max(j.durableTo, j.flushTo)
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
	} else {
		j.writtenTo = b.seq + 1
		if req.FUA || !j.volatile {
			j.durableTo = b.seq + 1 // the blocks before it were flushed first
		}
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
	if stop != nil {
		if err := ring.checkEnd(blocks, run.End, seq+n); err != nil {
			return run, err
		}
	}
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

// checkEnd says whether the run's end, ring block end where sequence next
// was due, is one a crash can leave, or damage. A power cut keeps any
// part of what was not yet flushed, so blocks of the run may follow a
// lost one; but none may say the lost one was durable (its durable lag),
// and no block may be of a later run: runs start past every sequence the
// ring holds, so one exists only if a checkpoint newer than the one
// replayed named it, and that checkpoint was damaged after it was
// durable (replaying the older one would drop what the later run made
// durable).
func (ring Ring) checkEnd(blocks []format.Block, end, next uint64) error {
	at := func(i uint64) uint64 { return ring.Off + i*format.MetaBlockSize }
	for i, b := range blocks {
		if b.Check(format.KindJournal, ring.Pool, at(uint64(i))) != nil || b.Seq() < next {
			continue
		}
		s := b.Seq()
		if k := (uint64(i) + ring.Blocks - end) % ring.Blocks; s-next != k {
			return &format.CorruptError{Kind: format.KindJournal, Offset: at(uint64(i)), Reason: fmt.Sprintf(
				"sequence %d is of a run after the one replayed, which ends at byte %d: the checkpoint that named it is damaged", s, at(end))}
		}
		if lag := uint64(b.DurableLag()); lag > 0 && s-lag >= next {
			return &format.CorruptError{Kind: format.KindJournal, Offset: at(end), Reason: fmt.Sprintf(
				"damaged or lost, though the block at byte %d (sequence %d) was written after it was durable", at(uint64(i)), s)}
		}
	}
	return nil
}
