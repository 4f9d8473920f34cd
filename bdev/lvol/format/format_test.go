package format

import (
	"encoding/binary"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

var pool = [16]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

func testSuperblock(t *testing.T) Superblock {
	t.Helper()
	l, err := NewLayout(10<<30, 4096, DefaultClusterSize)
	require.NoError(t, err)
	return Superblock{Pool: pool, Seq: 7, Created: 1764633600e9, Layout: l}
}

// The header and superblock fields sit at the offsets the format's tables
// in docs/lvstore-format.md give.
func TestSuperblockByteOffsets(t *testing.T) {
	s := testSuperblock(t)
	b := Block(make([]byte, MetaBlockSize))
	s.Encode(b)
	le := binary.LittleEndian
	for _, f := range []struct {
		name string
		got  uint64
		want uint64
	}{
		{"kind @8", uint64(le.Uint16(b[8:])), uint64(KindSuperblock)},
		{"version @10", uint64(le.Uint16(b[10:])), Version},
		{"flags @12", uint64(le.Uint32(b[12:])), 0},
		{"sequence @16", le.Uint64(b[16:]), 7},
		{"payload length @40", uint64(le.Uint32(b[40:])), 80},
		{"block size @48", uint64(le.Uint32(b[48:])), 4096},
		{"cluster size @56", le.Uint64(b[56:]), DefaultClusterSize},
		{"device bytes @64", le.Uint64(b[64:]), 10 << 30},
		{"journal offset @72", le.Uint64(b[72:]), SuperblockBytes},
		{"journal length @80", le.Uint64(b[80:]), s.JournalLen},
		{"metadata offset @88", le.Uint64(b[88:]), s.MetaOff},
		{"metadata length @96", le.Uint64(b[96:]), s.MetaLen},
		{"data offset @104", le.Uint64(b[104:]), s.DataOff},
		{"clusters @112", le.Uint64(b[112:]), s.Clusters},
		{"created @120", le.Uint64(b[120:]), uint64(s.Created)},
	} {
		require.Equal(t, f.want, f.got, f.name)
	}
	require.Equal(t, "STRATALV", string(b[:8]))
	require.Equal(t, pool[:], []byte(b[24:40]))
	require.Equal(t, make([]byte, crcOff-128), []byte(b[128:crcOff]), "reserved bytes are zero")
}

func TestSuperblockRoundTrip(t *testing.T) {
	s := testSuperblock(t)
	b := Block(make([]byte, MetaBlockSize))
	s.Encode(b)
	got, err := DecodeSuperblock(b, 0, 10<<30)
	require.NoError(t, err)
	require.Equal(t, s, got)
	_, err = DecodeSuperblock(b, 0, 5<<30)
	require.ErrorIs(t, err, ErrCorrupt, "a device smaller than the layout")
	require.ErrorContains(t, err, "laid out for")
}

// No byte of a superblock can change unseen: every single-byte flip is
// caught, and the error says which block.
func TestEveryFlipIsCaught(t *testing.T) {
	s := testSuperblock(t)
	b := Block(make([]byte, MetaBlockSize))
	s.Encode(b)
	for i := range b {
		b[i] ^= 0x40
		_, err := DecodeSuperblock(b, 1, 10<<30)
		require.ErrorIs(t, err, ErrCorrupt, "byte %d", i)
		require.ErrorContains(t, err, "superblock at byte 4096")
		b[i] ^= 0x40
	}
}

// A torn superblock (its first half new, the rest old) is refused, and
// the other slot is the pool's; both bad is an error that names both.
func TestNewestSuperblockSurvivesATornSlot(t *testing.T) {
	s := testSuperblock(t)
	slots := make([]byte, SuperblockBytes)
	s.Encode(Block(slots[:MetaBlockSize]))
	next := s
	next.Seq++
	next.Encode(Block(slots[MetaBlockSize:]))
	got, err := NewestSuperblock(slots, 10<<30)
	require.NoError(t, err)
	require.Equal(t, next.Seq, got.Seq, "the newest")

	newer := next
	newer.Seq++
	torn := Block(make([]byte, MetaBlockSize))
	newer.Encode(torn)
	copy(slots[:MetaBlockSize/2], torn[:MetaBlockSize/2])
	got, err = NewestSuperblock(slots, 10<<30)
	require.NoError(t, err)
	require.Equal(t, next.Seq, got.Seq, "the torn slot is not trusted")

	slots[MetaBlockSize+100] ^= 1
	_, err = NewestSuperblock(slots, 10<<30)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "slot 0")
	require.ErrorContains(t, err, "slot 1")

	_, err = NewestSuperblock(make([]byte, SuperblockBytes), 10<<30)
	require.ErrorIs(t, err, ErrNotPool, "a blank device")
}

func TestSlotsOfTwoPoolsAreCorruption(t *testing.T) {
	s := testSuperblock(t)
	slots := make([]byte, SuperblockBytes)
	s.Encode(Block(slots[:MetaBlockSize]))
	other := s
	other.Pool[0] ^= 1
	other.Encode(Block(slots[MetaBlockSize:]))
	_, err := NewestSuperblock(slots, 10<<30)
	require.ErrorIs(t, err, ErrCorrupt)
	require.ErrorContains(t, err, "two pools")
}

func TestBlockCheck(t *testing.T) {
	b := Block(make([]byte, MetaBlockSize))
	copy(b[HeaderSize:], "journal records")
	b.Seal(KindJournal, 42, pool, 15)
	require.NoError(t, b.Check(KindJournal, pool, 8192))
	require.Equal(t, "journal records", string(b.Payload()))
	require.EqualValues(t, 42, b.Seq())
	require.ErrorContains(t, b.Check(KindCheckpoint, pool, 8192), "a journal block")
	other := pool
	other[15]++
	require.ErrorContains(t, b.Check(KindJournal, other, 8192), "of pool")
	var ce *CorruptError
	require.True(t, errors.As(b.Check(KindCheckpoint, pool, 8192), &ce))
	require.EqualValues(t, 8192, ce.Offset)
}

func TestNewLayout(t *testing.T) {
	for _, tc := range []struct {
		device  uint64
		bs      uint32
		cluster uint64
	}{
		{64 << 20, 512, 64 << 10},
		{1 << 30, 4096, DefaultClusterSize},
		{10 << 40, 4096, 4 << 20},
		{3<<30 + 12345, 512, DefaultClusterSize},
	} {
		l, err := NewLayout(tc.device, tc.bs, tc.cluster)
		require.NoError(t, err, "%+v", tc)
		require.NoError(t, l.Check())
		require.Zero(t, l.DataOff%tc.cluster)
		require.LessOrEqual(t, l.ClusterOffset(l.Clusters), tc.device, "the last cluster ends on the device")
		require.Greater(t, tc.device-l.ClusterOffset(l.Clusters-1), uint64(0))
		require.GreaterOrEqual(t, l.MetaLen, l.Clusters*metaPerCluster, "room for the checkpoints")
		overhead, limit := float64(l.DataOff)/float64(tc.device), 0.02
		if tc.device < 1<<30 {
			limit = 0.05 // the journal's and metadata region's minimums
		}
		require.Less(t, overhead, limit, "%+v: %.3f of the device is metadata", tc, overhead)
	}
	for _, bad := range []struct {
		device  uint64
		bs      uint32
		cluster uint64
		want    string
	}{
		{1 << 30, 8192, DefaultClusterSize, "block size"},
		{1 << 30, 4096, 3 << 20, "cluster size"},
		{1 << 30, 4096, 32 << 10, "cluster size"},
		{2 << 20, 4096, DefaultClusterSize, "holds no"},
	} {
		_, err := NewLayout(bad.device, bad.bs, bad.cluster)
		require.ErrorContains(t, err, bad.want, "%+v", bad)
	}
}

func TestLayoutCheckRefusesOverlaps(t *testing.T) {
	good, err := NewLayout(1<<30, 4096, DefaultClusterSize)
	require.NoError(t, err)
	for name, mutate := range map[string]func(*Layout){
		"superblocks": func(l *Layout) { l.JournalOff = 4096 },
		"journal":     func(l *Layout) { l.MetaOff = l.JournalOff },
		"metadata":    func(l *Layout) { l.DataOff = l.MetaOff },
		"aligned":     func(l *Layout) { l.DataOff += 4096 },
		"fit":         func(l *Layout) { l.Clusters++ },
		"whole":       func(l *Layout) { l.JournalLen -= 512 },
		"no clusters": func(l *Layout) { l.Clusters = 0 },
	} {
		l := good
		mutate(&l)
		require.Error(t, l.Check(), name)
	}
}

// FuzzDecodeSuperblock: whatever the slots hold, decoding never panics,
// and what it accepts has a layout that checks and encodes back to the
// same bytes.
func FuzzDecodeSuperblock(f *testing.F) {
	l, _ := NewLayout(1<<30, 4096, DefaultClusterSize)
	s := Superblock{Pool: pool, Seq: 1, Layout: l}
	b := Block(make([]byte, MetaBlockSize))
	s.Encode(b)
	f.Add([]byte(b), uint64(1<<30))
	f.Add(make([]byte, MetaBlockSize), uint64(1<<30))
	f.Fuzz(func(t *testing.T, in []byte, deviceBytes uint64) {
		blk := Block(make([]byte, MetaBlockSize))
		copy(blk, in)
		// Reseal what the fuzzer wrote, so that it reaches the checks past
		// the checksum.
		if len(in) < MetaBlockSize {
			binary.LittleEndian.PutUint32(blk[crcOff:], crcOf(blk))
		}
		s, err := DecodeSuperblock(blk, 0, deviceBytes)
		if err != nil {
			return
		}
		if err := s.Layout.Check(); err != nil {
			t.Fatalf("accepted a layout that does not check: %v", err)
		}
		again := Block(make([]byte, MetaBlockSize))
		s.Encode(again)
		if string(again) != string(blk) {
			t.Fatal("an accepted superblock does not encode back to its bytes")
		}
	})
}

// The figures docs/lvstore-format.md gives for a 1 TiB pool.
func TestLayoutOfATebibyte(t *testing.T) {
	l, err := NewLayout(1<<40, 4096, DefaultClusterSize)
	require.NoError(t, err)
	require.EqualValues(t, 64<<20, l.JournalLen)
	require.EqualValues(t, 32<<20, l.MetaLen)
	require.Less(t, float64(l.DataOff)/float64(1<<40), 0.0001, "under 0.01% of the pool")
}

// A journal block's durable lag sits at byte 44 and is covered by the
// checksum; any other kind with bytes set there is refused.
func TestDurableLagOffset(t *testing.T) {
	b := Block(make([]byte, MetaBlockSize))
	b.SealJournal(90, pool, 0, 7)
	require.Equal(t, uint32(7), binary.LittleEndian.Uint32(b[44:]))
	require.Equal(t, uint32(7), b.DurableLag())
	require.NoError(t, b.Check(KindJournal, pool, 0))
	b[44] ^= 2
	require.ErrorIs(t, b.Check(KindJournal, pool, 0), ErrCorrupt, "the lag is under the checksum")

	c := Block(make([]byte, MetaBlockSize))
	c.Seal(KindCheckpoint, 90, pool, 0)
	binary.LittleEndian.PutUint32(c[44:], 7)
	binary.LittleEndian.PutUint32(c[crcOff:], crcOf(c))
	require.ErrorIs(t, c.Check(KindCheckpoint, pool, 0), ErrCorrupt, "a lag in a checkpoint block")
}
