package format

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// writeCheckpoint writes a checkpoint of the given volumes, runs and one
// long list, and returns its blocks.
func writeCheckpoint(t *testing.T, seq uint64, list []uint32) []Block {
	t.Helper()
	var blocks []Block
	w, err := NewCheckpointWriter(pool, seq, CheckpointHead{JournalPos: 5, JournalSeq: 900, NextVolumeID: 4}, func(b Block) error {
		blocks = append(blocks, append(Block(nil), b...))
		return nil
	})
	require.NoError(t, err)
	for id := uint32(1); id <= 3; id++ {
		v := testVolume()
		v.ID, v.Parent, v.Name = id, 0, fmt.Sprintf("vol%d", id)
		require.NoError(t, w.Volume(&v))
	}
	require.NoError(t, w.Run(MapRun{Volume: 1, LC: 0, PC: 100, Count: 10240}))
	require.NoError(t, w.Run(MapRun{Volume: 2, LC: 7, PC: 50000, Count: 1}))
	require.NoError(t, w.List(3, 1000, list))
	require.NoError(t, w.Close())
	return blocks
}

func readAll(blocks []Block, half uint64) (string, uint64, error) {
	var log string
	seq, err := ReadCheckpoint(func(i uint64) (Block, error) {
		if i < uint64(len(blocks)) {
			return blocks[i], nil
		}
		return Block(make([]byte, MetaBlockSize)), nil
	}, half, pool, 1<<20, CheckpointReader{
		Head:   func(h CheckpointHead) error { log += fmt.Sprintf("head %+v;", h); return nil },
		Volume: func(v Volume) error { log += fmt.Sprintf("vol %d %s;", v.ID, v.Name); return nil },
		Run:    func(r MapRun) error { log += fmt.Sprintf("run %+v;", r); return nil },
		List: func(vol uint32, lc uint64, e []uint32) error {
			log += fmt.Sprintf("list %d %d %d..%d;", vol, lc, e[0], e[len(e)-1])
			return nil
		},
	})
	return log, seq, err
}

func longList() []uint32 {
	list := make([]uint32, 2500) // past one item
	for i := range list {
		list[i] = uint32(7 * (i + 1))
	}
	return list
}

func TestCheckpointRoundTrip(t *testing.T) {
	blocks := writeCheckpoint(t, 40, longList())
	require.Greater(t, len(blocks), 2, "the list spans blocks")
	for i, b := range blocks {
		require.EqualValues(t, 40+i, b.Seq())
	}
	log, seq, err := readAll(blocks, 64)
	require.NoError(t, err)
	require.EqualValues(t, 40, seq)
	n := MaxListEntries
	require.Equal(t, "head {JournalPos:5 JournalSeq:900 NextVolumeID:4};vol 1 vol1;vol 2 vol2;vol 3 vol3;"+
		"run {Volume:1 LC:0 PC:100 Count:10240};run {Volume:2 LC:7 PC:50000 Count:1};"+
		fmt.Sprintf("list 3 1000 7..%d;", 7*n)+
		fmt.Sprintf("list 3 %d %d..%d;", 1000+n, 7*(n+1), 7*2*n)+
		fmt.Sprintf("list 3 %d %d..%d;", 1000+2*n, 7*(2*n+1), 7*2500), log)

	// What follows the end (an older, longer checkpoint's blocks) is not
	// read.
	older := writeCheckpoint(t, 1, append(longList(), longList()...))
	mixed := append(append([]Block(nil), blocks...), older[len(blocks):]...)
	_, seq, err = readAll(mixed, 64)
	require.NoError(t, err)
	require.EqualValues(t, 40, seq)
}

// A checkpoint cut short by a crash (its last blocks old, blank or torn)
// is refused; so are damaged items.
func TestCheckpointCutShortIsRefused(t *testing.T) {
	blocks := writeCheckpoint(t, 40, longList())
	older := writeCheckpoint(t, 1, longList())
	for name, mutate := range map[string]func([]Block) []Block{
		"blank tail": func(b []Block) []Block { return b[:len(b)-1] },
		"older tail": func(b []Block) []Block { return append(b[:len(b)-1], older[len(b)-1]) },
		"torn block": func(b []Block) []Block { b[1][HeaderSize+9] ^= 1; return b },
		"no head": func(b []Block) []Block {
			p, _ := AppendRecord(nil, ItemVolume, make([]byte, VolumeSize))
			copy(b[0][HeaderSize:], p)
			b[0].Seal(KindCheckpoint, 40, pool, len(p))
			return b
		},
		"bad run": func(b []Block) []Block {
			var body [runSize]byte // zero clusters
			p, _ := AppendRecord(nil, ItemHead, make([]byte, headSize))
			p, _ = AppendRecord(p, ItemMapRun, body[:])
			copy(b[0][HeaderSize:], p)
			b[0].Seal(KindCheckpoint, 40, pool, len(p))
			return b
		},
		"miscounted end": func(b []Block) []Block {
			last := b[len(b)-1]
			p := last.Payload()
			binary.LittleEndian.PutUint64(p[len(p)-8:], 1)
			last.Seal(KindCheckpoint, last.Seq(), pool, len(p))
			return b
		},
	} {
		c := make([]Block, len(blocks))
		for i := range blocks {
			c[i] = append(Block(nil), blocks[i]...)
		}
		_, _, err := readAll(mutate(c), 64)
		require.ErrorIs(t, err, ErrCorrupt, name)
	}
}

// FuzzReadCheckpoint: one block of anything, sealed, never panics the
// reader.
func FuzzReadCheckpoint(f *testing.F) {
	blocks := writeCheckpointF(f)
	f.Add([]byte(blocks[0].Payload()))
	f.Add([]byte{1, 0, 20, 0})
	f.Fuzz(func(t *testing.T, payload []byte) {
		if len(payload) > MaxPayload {
			return
		}
		b := Block(make([]byte, MetaBlockSize))
		copy(b[HeaderSize:], payload)
		b.Seal(KindCheckpoint, 1, pool, len(payload))
		readAll([]Block{b}, 1)
	})
}

func writeCheckpointF(f *testing.F) []Block {
	var blocks []Block
	w, _ := NewCheckpointWriter(pool, 1, CheckpointHead{}, func(b Block) error {
		blocks = append(blocks, append(Block(nil), b...))
		return nil
	})
	w.Run(MapRun{Volume: 1, PC: 1, Count: 2})
	w.List(1, 0, []uint32{1, 2, 3})
	w.Close()
	return blocks
}
