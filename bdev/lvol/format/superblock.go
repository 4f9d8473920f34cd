package format

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A pool's device begins with two superblock slots (SuperblockSlots):
// the newest valid one, by sequence, is the pool's. A layout change
// writes the other slot, so a torn write leaves the previous one.
const (
	SuperblockSlots = 2
	// SuperblockBytes is the space the slots take at the device's start.
	SuperblockBytes = SuperblockSlots * MetaBlockSize
)

// Superblock payload offsets (docs/lvstore-format.md, "Superblock").
const (
	sbBlockSize   = HeaderSize + 0  // 4: the device's block size
	sbReserved    = HeaderSize + 4  // 4: zero
	sbClusterSize = HeaderSize + 8  // 8
	sbDeviceBytes = HeaderSize + 16 // 8: the device size the layout is for
	sbJournalOff  = HeaderSize + 24 // 8
	sbJournalLen  = HeaderSize + 32 // 8
	sbMetaOff     = HeaderSize + 40 // 8
	sbMetaLen     = HeaderSize + 48 // 8
	sbDataOff     = HeaderSize + 56 // 8
	sbClusters    = HeaderSize + 64 // 8
	sbCreated     = HeaderSize + 72 // 8: Unix nanoseconds
	sbPayload     = 80
)

// Layout is where a pool keeps what: byte offsets and lengths on its
// device, every region MetaBlockSize aligned, the data region
// cluster aligned, in this order: superblocks, journal, metadata
// (checkpoints of the store's tables), data.
type Layout struct {
	BlockSize   uint32
	ClusterSize uint64
	DeviceBytes uint64
	JournalOff  uint64
	JournalLen  uint64
	MetaOff     uint64
	MetaLen     uint64
	DataOff     uint64
	Clusters    uint64
}

// Sizing of the regions NewLayout makes.
const (
	journalMin = 1 << 20
	journalMax = 64 << 20
	// metaPerCluster is the metadata region per data cluster: two
	// checkpoints (A and B) of cluster maps whose entries are 4 bytes, for
	// up to four times as many mapped clusters as the pool has (thin
	// volumes overcommit, snapshots share), with room to spare.
	metaPerCluster = 2 * 4 * 4
	metaMin        = 1 << 20
)

// NewLayout lays a pool out on a device of deviceBytes bytes with blocks
// of blockSize and clusters of clusterSize.
func NewLayout(deviceBytes uint64, blockSize uint32, clusterSize uint64) (Layout, error) {
	l := Layout{BlockSize: blockSize, ClusterSize: clusterSize, DeviceBytes: deviceBytes}
	if err := l.checkSizes(); err != nil {
		return Layout{}, err
	}
	l.JournalOff = SuperblockBytes
	l.JournalLen = alignUp(min(max(deviceBytes/256, journalMin), journalMax), MetaBlockSize)
	l.MetaOff = l.JournalOff + l.JournalLen
	// The data region's clusters set the metadata region's size, which
	// sets where the data region starts: a bound, then the fit.
	clusters := deviceBytes / clusterSize
	l.MetaLen = alignUp(max(clusters*metaPerCluster, metaMin), MetaBlockSize)
	l.DataOff = alignUp(l.MetaOff+l.MetaLen, clusterSize)
	if l.DataOff >= deviceBytes || (deviceBytes-l.DataOff)/clusterSize == 0 {
		return Layout{}, fmt.Errorf("format: a %d-byte device holds no %d-byte cluster past its metadata (%d bytes)", deviceBytes, clusterSize, l.DataOff)
	}
	l.Clusters = (deviceBytes - l.DataOff) / clusterSize
	return l, l.Check()
}

func (l *Layout) checkSizes() error {
	if l.BlockSize < 512 || l.BlockSize > MetaBlockSize || l.BlockSize&(l.BlockSize-1) != 0 {
		return fmt.Errorf("format: block size %d: a pool needs a power of two from 512 to %d", l.BlockSize, MetaBlockSize)
	}
	if !validClusterSize(l.ClusterSize) {
		return fmt.Errorf("format: cluster size %d: want a power of two from %d to %d", l.ClusterSize, MinClusterSize, MaxClusterSize)
	}
	return nil
}

// Check verifies the layout's invariants: what a loader checks before it
// reads any region.
func (l *Layout) Check() error {
	if err := l.checkSizes(); err != nil {
		return err
	}
	for _, r := range []struct {
		name     string
		off, len uint64
	}{{"journal", l.JournalOff, l.JournalLen}, {"metadata", l.MetaOff, l.MetaLen}} {
		if r.off%MetaBlockSize != 0 || r.len%MetaBlockSize != 0 || r.len == 0 {
			return fmt.Errorf("format: %s region at %d, %d bytes: not whole metadata blocks", r.name, r.off, r.len)
		}
	}
	switch {
	case l.JournalOff < SuperblockBytes:
		return fmt.Errorf("format: journal at %d overlaps the superblocks", l.JournalOff)
	case l.MetaOff < l.JournalOff+l.JournalLen:
		return fmt.Errorf("format: metadata region at %d overlaps the journal", l.MetaOff)
	case l.DataOff < l.MetaOff+l.MetaLen:
		return fmt.Errorf("format: data region at %d overlaps the metadata region", l.DataOff)
	case l.DataOff%l.ClusterSize != 0:
		return fmt.Errorf("format: data region at %d not aligned to the %d-byte cluster", l.DataOff, l.ClusterSize)
	case l.Clusters == 0:
		return fmt.Errorf("format: no clusters")
	case l.Clusters > (l.DeviceBytes-min(l.DataOff, l.DeviceBytes))/l.ClusterSize:
		return fmt.Errorf("format: %d clusters from byte %d do not fit in %d bytes", l.Clusters, l.DataOff, l.DeviceBytes)
	}
	return nil
}

// ClusterOffset returns the byte offset of data cluster c.
func (l *Layout) ClusterOffset(c uint64) uint64 { return l.DataOff + c*l.ClusterSize }

// Superblock is what the superblock says: the pool and its layout.
type Superblock struct {
	Pool    [16]byte
	Seq     uint64
	Created int64 // Unix nanoseconds
	Layout
}

// Encode writes s as a sealed superblock into b (MetaBlockSize bytes).
func (s *Superblock) Encode(b Block) {
	clear(b)
	le := binary.LittleEndian
	le.PutUint32(b[sbBlockSize:], s.BlockSize)
	le.PutUint64(b[sbClusterSize:], s.ClusterSize)
	le.PutUint64(b[sbDeviceBytes:], s.DeviceBytes)
	le.PutUint64(b[sbJournalOff:], s.JournalOff)
	le.PutUint64(b[sbJournalLen:], s.JournalLen)
	le.PutUint64(b[sbMetaOff:], s.MetaOff)
	le.PutUint64(b[sbMetaLen:], s.MetaLen)
	le.PutUint64(b[sbDataOff:], s.DataOff)
	le.PutUint64(b[sbClusters:], s.Clusters)
	le.PutUint64(b[sbCreated:], uint64(s.Created))
	b.Seal(KindSuperblock, s.Seq, s.Pool, sbPayload)
}

// DecodeSuperblock checks b, read from slot slot of a device of
// deviceBytes bytes, as a superblock and decodes it: a *CorruptError
// when the block or its layout cannot be trusted.
func DecodeSuperblock(b Block, slot int, deviceBytes uint64) (Superblock, error) {
	off := uint64(slot) * MetaBlockSize
	if err := b.Check(KindSuperblock, [16]byte{}, off); err != nil {
		return Superblock{}, err
	}
	if n := len(b.Payload()); n != sbPayload {
		return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: off, Reason: fmt.Sprintf("payload of %d bytes, not %d", n, sbPayload)}
	}
	le := binary.LittleEndian
	if le.Uint32(b[sbReserved:]) != 0 {
		return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: off, Reason: "reserved field set"}
	}
	s := Superblock{Pool: b.Pool(), Seq: b.Seq(), Created: int64(le.Uint64(b[sbCreated:])), Layout: Layout{
		BlockSize: le.Uint32(b[sbBlockSize:]), ClusterSize: le.Uint64(b[sbClusterSize:]),
		DeviceBytes: le.Uint64(b[sbDeviceBytes:]),
		JournalOff:  le.Uint64(b[sbJournalOff:]), JournalLen: le.Uint64(b[sbJournalLen:]),
		MetaOff: le.Uint64(b[sbMetaOff:]), MetaLen: le.Uint64(b[sbMetaLen:]),
		DataOff: le.Uint64(b[sbDataOff:]), Clusters: le.Uint64(b[sbClusters:]),
	}}
	if s.Pool == ([16]byte{}) {
		return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: off, Reason: "no pool UUID"}
	}
	if err := s.Layout.Check(); err != nil {
		return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: off, Reason: err.Error()}
	}
	if s.DeviceBytes > deviceBytes {
		return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: off,
			Reason: fmt.Sprintf("laid out for %d bytes; the device has %d", s.DeviceBytes, deviceBytes)}
	}
	return s, nil
}

// NewestSuperblock picks the pool's superblock from its slots (read from
// the device's first SuperblockBytes): the valid one with the highest
// sequence. Both invalid is an error naming each slot's fault; two valid
// slots of different pools are corruption, not a choice.
func NewestSuperblock(slots []byte, deviceBytes uint64) (Superblock, error) {
	var best Superblock
	var errs [SuperblockSlots]error
	found := false
	for i := range SuperblockSlots {
		s, err := DecodeSuperblock(Block(slots[i*MetaBlockSize:(i+1)*MetaBlockSize]), i, deviceBytes)
		if errs[i] = err; err != nil {
			continue
		}
		switch {
		case !found:
			best, found = s, true
		case s.Pool != best.Pool:
			return Superblock{}, &CorruptError{Kind: KindSuperblock, Offset: uint64(i) * MetaBlockSize,
				Reason: fmt.Sprintf("slots name two pools, %x and %x", best.Pool, s.Pool)}
		case s.Seq > best.Seq:
			best = s
		}
	}
	if !found {
		if !hasMagic(slots[:MetaBlockSize]) && !hasMagic(slots[MetaBlockSize:SuperblockBytes]) {
			return Superblock{}, ErrNotPool
		}
		return Superblock{}, fmt.Errorf("format: no valid superblock: slot 0: %w; slot 1: %w", errs[0], errs[1])
	}
	return best, nil
}

// ErrNotPool reports a device whose superblock slots hold no volume
// store at all (not even a damaged one).
var ErrNotPool = errors.New("format: not a Strata volume store")

func hasMagic(b []byte) bool { return [8]byte(b[:8]) == Magic }

func alignUp(n, a uint64) uint64 { return (n + a - 1) / a * a }
