// Package format is the on-disk format of a volume store (bdev/lvol): the
// superblock that makes a device a pool, and the header every metadata
// block carries. Structures are byte-slice views with accessors, encoded
// little-endian at the offsets docs/lvstore-format.md tables; Check
// functions are what a loader runs before it trusts a block.
//
// Every metadata block (MetaBlockSize bytes) starts with a header naming
// its kind, the pool it belongs to and a sequence number, and ends with a
// CRC32C (Castagnoli) of everything before it: a torn write, a block of
// another pool or of another kind, or bit rot is an error naming the
// block, never data.
package format

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
)

// MetaBlockSize is the size of every metadata block: the superblock, the
// journal's and the checkpoints' blocks. Devices with larger blocks are
// not supported as pools.
const MetaBlockSize = 4096

// Version is the format version this package writes.
const Version = 1

// Cluster sizes a pool may have: the unit of allocation.
const (
	MinClusterSize     = 64 << 10
	MaxClusterSize     = 64 << 20
	DefaultClusterSize = 1 << 20
)

// Kind is the kind of a metadata block.
type Kind uint16

const (
	KindSuperblock Kind = iota + 1
	KindJournal
	KindCheckpoint
)

func (k Kind) String() string {
	switch k {
	case KindSuperblock:
		return "superblock"
	case KindJournal:
		return "journal block"
	case KindCheckpoint:
		return "checkpoint block"
	}
	return fmt.Sprintf("block kind %d", uint16(k))
}

// Magic starts every metadata block.
var Magic = [8]byte{'S', 'T', 'R', 'A', 'T', 'A', 'L', 'V'}

// Header offsets (docs/lvstore-format.md, "Metadata block header").
const (
	hdrMagic   = 0  // 8 bytes
	hdrKind    = 8  // 2
	hdrVersion = 10 // 2
	hdrFlags   = 12 // 4, reserved: zero
	hdrSeq     = 16 // 8
	hdrPool    = 24 // 16
	hdrLen     = 40 // 4: payload bytes
	hdrLag     = 44 // 4: a journal block's durable lag; zero in others
	// HeaderSize is where a block's payload starts.
	HeaderSize = 48
	// crcOff is the CRC32C of bytes [0, crcOff).
	crcOff = MetaBlockSize - 4
	// MaxPayload is the most payload a metadata block carries.
	MaxPayload = crcOff - HeaderSize
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Block is a view of one metadata block.
type Block []byte

// Kind returns the block's kind.
func (b Block) Kind() Kind { return Kind(binary.LittleEndian.Uint16(b[hdrKind:])) }

// Seq returns the block's sequence number.
func (b Block) Seq() uint64 { return binary.LittleEndian.Uint64(b[hdrSeq:]) }

// Pool returns the UUID of the pool the block belongs to.
func (b Block) Pool() [16]byte { return [16]byte(b[hdrPool : hdrPool+16]) }

// Payload returns the block's payload.
func (b Block) Payload() []byte {
	n := min(binary.LittleEndian.Uint32(b[hdrLen:]), MaxPayload)
	return b[HeaderSize : HeaderSize+n]
}

// Seal writes the header and the checksum of a block whose payload (n
// bytes at HeaderSize) is in place; bytes past the payload are zeroed.
func (b Block) Seal(kind Kind, seq uint64, pool [16]byte, n int) { b.seal(kind, seq, pool, n, 0) }

func (b Block) seal(kind Kind, seq uint64, pool [16]byte, n int, lag uint32) {
	if len(b) != MetaBlockSize || n < 0 || n > MaxPayload {
		panic(fmt.Sprintf("format: sealing a %d-byte block with %d payload bytes", len(b), n))
	}
	copy(b[hdrMagic:], Magic[:])
	binary.LittleEndian.PutUint16(b[hdrKind:], uint16(kind))
	binary.LittleEndian.PutUint16(b[hdrVersion:], Version)
	binary.LittleEndian.PutUint32(b[hdrFlags:], 0)
	binary.LittleEndian.PutUint64(b[hdrSeq:], seq)
	copy(b[hdrPool:], pool[:])
	binary.LittleEndian.PutUint32(b[hdrLen:], uint32(n))
	binary.LittleEndian.PutUint32(b[hdrLag:], lag)
	clear(b[HeaderSize+n : crcOff])
	binary.LittleEndian.PutUint32(b[crcOff:], crcOf(b))
}

// DurableLag returns a journal block's durable lag: d > 0 says that every
// block of its run with a sequence up to Seq() - d was on stable media
// when it was written; 0 says nothing.
func (b Block) DurableLag() uint32 { return binary.LittleEndian.Uint32(b[hdrLag:]) }

// SealJournal seals a journal block (Seal) with durable lag lag.
func (b Block) SealJournal(seq uint64, pool [16]byte, n int, lag uint32) {
	b.seal(KindJournal, seq, pool, n, lag)
}

// crcOf returns the checksum a metadata block must carry.
func crcOf(b Block) uint32 { return crc32.Checksum(b[:crcOff], castagnoli) }

// ErrCorrupt matches every *CorruptError with errors.Is.
var ErrCorrupt = errors.New("format: corrupt metadata block")

// CorruptError says why a block is not to be trusted.
type CorruptError struct {
	Kind   Kind   // what the block was read as
	Offset uint64 // its byte offset on the device
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("format: %v at byte %d: %s", e.Kind, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

// Check verifies a block read from byte offset off as a block of kind:
// its checksum first (a torn or rotten block says nothing else worth
// believing), then magic, version, kind, pool (the zero UUID: any, for a
// superblock read before the pool is known), payload length, and that
// everything Seal zeroes is zero, so that a block that checks is one Seal
// wrote.
func (b Block) Check(kind Kind, pool [16]byte, off uint64) error {
	bad := func(format string, args ...any) error {
		return &CorruptError{Kind: kind, Offset: off, Reason: fmt.Sprintf(format, args...)}
	}
	if len(b) != MetaBlockSize {
		return bad("%d bytes, not %d", len(b), MetaBlockSize)
	}
	if got, want := binary.LittleEndian.Uint32(b[crcOff:]), crcOf(b); got != want {
		return bad("checksum %08x, computed %08x (torn or damaged)", got, want)
	}
	if [8]byte(b[hdrMagic:hdrMagic+8]) != Magic {
		return bad("no Strata volume store magic")
	}
	if v := binary.LittleEndian.Uint16(b[hdrVersion:]); v != Version {
		return bad("format version %d; this Strata reads version %d", v, Version)
	}
	if k := b.Kind(); k != kind {
		return bad("a %v", k)
	}
	if p := b.Pool(); pool != ([16]byte{}) && p != pool {
		return bad("a block of pool %x, not %x", p, pool)
	}
	n := binary.LittleEndian.Uint32(b[hdrLen:])
	if n > MaxPayload {
		return bad("payload length %d beyond %d", n, MaxPayload)
	}
	for _, c := range b[HeaderSize+n : crcOff] {
		if c != 0 {
			return bad("bytes past the payload are not zero")
		}
	}
	if binary.LittleEndian.Uint32(b[hdrFlags:]) != 0 || (kind != KindJournal && b.DurableLag() != 0) {
		return bad("reserved header fields set")
	}
	return nil
}

// validClusterSize says whether a pool may have clusters of n bytes: a
// power of two from MinClusterSize to MaxClusterSize.
func validClusterSize(n uint64) bool {
	return n >= MinClusterSize && n <= MaxClusterSize && bits.OnesCount64(n) == 1
}
