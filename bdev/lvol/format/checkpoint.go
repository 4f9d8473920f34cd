package format

import (
	"encoding/binary"
	"fmt"
)

// A checkpoint is the store's tables written whole into one of the
// metadata region's halves (A, the first, and B), alternately: a run of
// checkpoint blocks from the half's start, with consecutive sequences
// from the checkpoint's own, whose payloads are items framed as journal
// records. It opens with a head item and is valid only up to and with
// its end item: a checkpoint cut short by a crash has none, and the other
// half's older one is the store's.
//
// Item types.
const (
	ItemHead    RecordType = 1 // the checkpoint's head: CheckpointHead
	ItemVolume  RecordType = 2 // a volume record (VolumeSize bytes)
	ItemMapRun  RecordType = 3 // clusters mapped to consecutive physical clusters
	ItemMapList RecordType = 4 // clusters mapped one by one
	ItemEnd     RecordType = 5 // the end: the number of items before it
)

// CheckpointHead opens a checkpoint: where the journal continues after it
// and the store's counters.
type CheckpointHead struct {
	JournalPos, JournalSeq uint64 // the journal's run after this checkpoint
	NextVolumeID           uint32
}

const headSize = 20

// MapRun maps Count clusters of a volume from logical cluster LC to the
// physical clusters from PC on.
type MapRun struct {
	Volume uint32
	LC     uint64
	PC     uint32
	Count  uint32
}

const runSize = 20

// mapListHead is a map list item's fixed part: the volume and the first
// logical cluster; 4-byte entries (physical cluster plus one, 0 none)
// follow.
const mapListHead = 12

// MaxListEntries is the most entries one map list item holds.
const MaxListEntries = (MaxRecordBody - mapListHead) / 4

// CheckpointWriter packs a checkpoint's items into blocks, each sealed
// block handed to its put callback, which writes it to the half's next
// block.
type CheckpointWriter struct {
	pool  [16]byte
	seq   uint64
	buf   Block
	items uint64
	put   func(Block) error
}

// NewCheckpointWriter starts a checkpoint whose first block has sequence
// seq, each sealed block handed to put, in order; the head item first.
func NewCheckpointWriter(pool [16]byte, seq uint64, head CheckpointHead, put func(Block) error) (*CheckpointWriter, error) {
	w := &CheckpointWriter{pool: pool, seq: seq, buf: Block(make([]byte, MetaBlockSize)), put: put}
	var b [headSize]byte
	le := binary.LittleEndian
	le.PutUint64(b[0:], head.JournalPos)
	le.PutUint64(b[8:], head.JournalSeq)
	le.PutUint32(b[16:], head.NextVolumeID)
	return w, w.item(ItemHead, b[:])
}

// Volume adds a volume record.
func (w *CheckpointWriter) Volume(v *Volume) error {
	if err := v.Check(); err != nil {
		return err
	}
	var b [VolumeSize]byte
	v.Encode(b[:])
	return w.item(ItemVolume, b[:])
}

// Run adds a run of mapped clusters.
func (w *CheckpointWriter) Run(r MapRun) error {
	if r.Count == 0 {
		return nil
	}
	return w.item(ItemMapRun, encodeRun(r))
}

func encodeRun(r MapRun) []byte {
	b := make([]byte, runSize)
	le := binary.LittleEndian
	le.PutUint32(b[0:], r.Volume)
	le.PutUint64(b[4:], r.LC)
	le.PutUint32(b[12:], r.PC)
	le.PutUint32(b[16:], r.Count)
	return b
}

// decodeRun decodes a run of runSize bytes; a run of no clusters, or of
// clusters past the 32-bit entries' reach, is refused.
func decodeRun(b []byte) (MapRun, error) {
	le := binary.LittleEndian
	run := MapRun{Volume: le.Uint32(b[0:]), LC: le.Uint64(b[4:]), PC: le.Uint32(b[12:]), Count: le.Uint32(b[16:])}
	if run.Count == 0 || uint64(run.PC)+uint64(run.Count) > 1<<32-1 {
		return run, fmt.Errorf("format: a map run of %d clusters from %d", run.Count, run.PC)
	}
	return run, nil
}

// List adds entries of a volume's map from logical cluster lc, one by one
// (entries are physical clusters plus one; 0: none), in as many items as
// it takes.
func (w *CheckpointWriter) List(volume uint32, lc uint64, entries []uint32) error {
	for len(entries) > 0 {
		n := min(len(entries), MaxListEntries)
		b := make([]byte, mapListHead+4*n)
		le := binary.LittleEndian
		le.PutUint32(b[0:], volume)
		le.PutUint64(b[4:], lc)
		for i, e := range entries[:n] {
			le.PutUint32(b[mapListHead+4*i:], e)
		}
		if err := w.item(ItemMapList, b); err != nil {
			return err
		}
		entries, lc = entries[n:], lc+uint64(n)
	}
	return nil
}

// Close adds the end item and hands the last block over.
func (w *CheckpointWriter) Close() error {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], w.items)
	if err := w.item(ItemEnd, b[:]); err != nil {
		return err
	}
	return w.flush()
}

func (w *CheckpointWriter) item(typ RecordType, body []byte) error {
	payload := w.buf[HeaderSize:HeaderSize:crcOff]
	if n := binary.LittleEndian.Uint32(w.buf[hdrLen:]); n > 0 {
		payload = w.buf[HeaderSize : HeaderSize+n : crcOff]
	}
	p, ok := AppendRecord(payload, typ, body)
	if !ok {
		if err := w.flush(); err != nil {
			return err
		}
		p, _ = AppendRecord(w.buf[HeaderSize:HeaderSize:crcOff], typ, body)
	}
	binary.LittleEndian.PutUint32(w.buf[hdrLen:], uint32(len(p)))
	if typ != ItemEnd {
		w.items++
	}
	return nil
}

// flush seals the block being filled and hands it to put.
func (w *CheckpointWriter) flush() error {
	n := int(binary.LittleEndian.Uint32(w.buf[hdrLen:]))
	if n == 0 {
		return nil
	}
	w.buf.Seal(KindCheckpoint, w.seq, w.pool, n)
	w.seq++
	err := w.put(w.buf)
	w.buf = Block(make([]byte, MetaBlockSize))
	return err
}

// CheckpointReader is told a checkpoint's items, in order.
type CheckpointReader struct {
	Head   func(CheckpointHead) error
	Volume func(Volume) error
	Run    func(MapRun) error
	List   func(volume uint32, lc uint64, entries []uint32) error
}

// ReadCheckpoint reads a checkpoint from a half of the metadata region
// (read returns its block i; off is the half's byte offset): the blocks
// from the first, whose sequence it takes as the checkpoint's, while they
// check with consecutive sequences, up to the end item. It returns the
// checkpoint's sequence; a checkpoint with no head, cut short before its
// end item, or with items that do not decode is a *CorruptError (the
// store then takes the other half's).
func ReadCheckpoint(read func(i uint64) (Block, error), blocks uint64, pool [16]byte, off uint64, r CheckpointReader) (uint64, error) {
	var first uint64
	var items uint64
	for i := range blocks {
		b, err := read(i)
		if err != nil {
			return 0, err
		}
		boff := off + i*MetaBlockSize
		if err := b.Check(KindCheckpoint, pool, boff); err != nil {
			return 0, err
		}
		if i == 0 {
			first = b.Seq()
		} else if b.Seq() != first+i {
			return 0, &CorruptError{Kind: KindCheckpoint, Offset: boff, Reason: fmt.Sprintf("sequence %d, not %d: the checkpoint was cut short", b.Seq(), first+i)}
		}
		var end bool
		var ierr error
		err = Records(b.Payload(), boff, func(t RecordType, body []byte) bool {
			if end {
				ierr = fmt.Errorf("an item after the end")
				return false
			}
			if items == 0 && t != ItemHead {
				ierr = fmt.Errorf("the first item is of type %d, not the head", t)
				return false
			}
			if t == ItemEnd {
				end = true
				if len(body) != 8 || binary.LittleEndian.Uint64(body) != items {
					ierr = fmt.Errorf("the end counts %x items; %d came", body, items)
				}
				return ierr == nil
			}
			items++
			ierr = r.item(t, body, items == 1)
			return ierr == nil
		})
		if err != nil {
			return 0, err
		}
		if ierr != nil {
			return 0, &CorruptError{Kind: KindCheckpoint, Offset: boff, Reason: ierr.Error()}
		}
		if end {
			return first, nil
		}
	}
	return 0, &CorruptError{Kind: KindCheckpoint, Offset: off, Reason: "no end item: the checkpoint was cut short"}
}

func (r *CheckpointReader) item(t RecordType, body []byte, first bool) error {
	le := binary.LittleEndian
	switch {
	case t == ItemHead && first && len(body) == headSize:
		if r.Head == nil {
			return nil
		}
		return r.Head(CheckpointHead{JournalPos: le.Uint64(body[0:]), JournalSeq: le.Uint64(body[8:]), NextVolumeID: le.Uint32(body[16:])})
	case t == ItemVolume && len(body) == VolumeSize:
		v, err := DecodeVolume(body)
		if err != nil || r.Volume == nil {
			return err
		}
		return r.Volume(v)
	case t == ItemMapRun && len(body) == runSize:
		run, err := decodeRun(body)
		if err != nil || r.Run == nil {
			return err
		}
		return r.Run(run)
	case t == ItemMapList && len(body) > mapListHead && (len(body)-mapListHead)%4 == 0:
		entries := make([]uint32, (len(body)-mapListHead)/4)
		for i := range entries {
			entries[i] = le.Uint32(body[mapListHead+4*i:])
		}
		if r.List == nil {
			return nil
		}
		return r.List(le.Uint32(body[0:]), le.Uint64(body[4:]), entries)
	}
	return fmt.Errorf("an item of type %d and %d bytes", t, len(body))
}
