package format

import (
	"encoding/binary"
	"fmt"
)

// A journal block's payload is a run of records, each a 4-byte header and
// a body; a record never spans blocks. The journal is a ring of such
// blocks in the journal region, each sealed with the next sequence number:
// replay goes from a checkpoint's position while each block checks and
// its sequence is one more than the last.
const (
	recType    = 0 // 1
	recFlags   = 1 // 1, reserved: 0
	recLen     = 2 // 2: body bytes
	RecordHead = 4
	// MaxRecordBody is the largest body a record may have: one alone in
	// its block.
	MaxRecordBody = MaxPayload - RecordHead
)

// RecordType is what a journal record says; the store defines them. Zero
// is never a record.
type RecordType uint8

// AppendRecord appends a record to a journal block's payload, if it fits
// in one block with what payload holds, and returns the payload and
// whether it did.
func AppendRecord(payload []byte, typ RecordType, body []byte) ([]byte, bool) {
	if typ == 0 || len(body) > MaxRecordBody {
		panic(fmt.Sprintf("format: a record of type %d with %d body bytes", typ, len(body)))
	}
	if len(payload)+RecordHead+len(body) > MaxPayload {
		return payload, false
	}
	var h [RecordHead]byte
	h[recType] = byte(typ)
	binary.LittleEndian.PutUint16(h[recLen:], uint16(len(body)))
	return append(append(payload, h[:]...), body...), true
}

// Records calls fn with each record of a journal block's payload, in
// order, until fn returns false. A payload that does not divide into
// whole records (a zero type, reserved flags set, a body past the end)
// is a *CorruptError naming the block at byte off; the records before
// the fault have been seen.
func Records(payload []byte, off uint64, fn func(RecordType, []byte) bool) error {
	for i := 0; i < len(payload); {
		bad := func(format string, args ...any) error {
			return &CorruptError{Kind: KindJournal, Offset: off, Reason: fmt.Sprintf("record at payload byte %d: ", i) + fmt.Sprintf(format, args...)}
		}
		if len(payload)-i < RecordHead {
			return bad("%d bytes left, less than a record header", len(payload)-i)
		}
		typ, flags := RecordType(payload[i+recType]), payload[i+recFlags]
		n := int(binary.LittleEndian.Uint16(payload[i+recLen:]))
		switch {
		case typ == 0:
			return bad("type 0")
		case flags != 0:
			return bad("reserved flags %#x", flags)
		case n > len(payload)-i-RecordHead:
			return bad("a %d-byte body past the payload's end", n)
		}
		if !fn(typ, payload[i+RecordHead:i+RecordHead+n]) {
			return nil
		}
		i += RecordHead + n
	}
	return nil
}

// JournalRun walks the journal ring, blocks long, from block start whose
// sequence must be seq: it returns how many blocks, in ring order, each
// check as a journal block of pool with the sequence one past the last's
// (at most the whole ring), and why the run ended there, nil when it
// filled the ring. The end of a journal is a block that is blank, torn
// (the write a crash cut), or older (a lap before): the store must make
// sure no later block of an earlier run could ever follow its new ones,
// by starting each run past every sequence the ring holds. read returns
// ring block i; off is the journal region's byte offset.
func JournalRun(read func(i uint64) Block, blocks, start, seq uint64, pool [16]byte, off uint64) (uint64, error) {
	for n := range blocks {
		i := (start + n) % blocks
		b := read(i)
		if err := b.Check(KindJournal, pool, off+i*MetaBlockSize); err != nil {
			return n, err
		}
		if b.Seq() != seq+n {
			return n, fmt.Errorf("format: journal block %d has sequence %d, not %d: the journal ends before it", i, b.Seq(), seq+n)
		}
	}
	return blocks, nil
}
