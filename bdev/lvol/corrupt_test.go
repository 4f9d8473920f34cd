package lvol

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/reactor"
)

// corruptImage is a pool file with thick, thin, snapshot and clone
// volumes, and what each reads.
type corruptImage struct {
	path     string
	want     map[string][]byte
	before   map[string][]byte // before the last write, whose record is the journal's last block
	pool     [16]byte
	halves   [2]uint64 // byte offsets of the checkpoint halves
	half     uint64    // their length in bytes
	ring     journalRing
	liveFrom uint64 // the first sequence of the journal's live run
}

type journalRing struct{ off, len uint64 }

const corruptVolume = 1 << 20

// makeCorruptImage builds the image; crashed leaves the store as a kill
// would, with a live journal run after its checkpoint, else it closes
// the store (a checkpoint of everything).
func makeCorruptImage(t *testing.T, crashed, reopened bool) *corruptImage {
	t.Helper()
	img := &corruptImage{path: filepath.Join(t.TempDir(), "pool.img")}
	dev, err := file.Open("pool", file.Options{Path: img.path, Size: 16 << 20})
	require.NoError(t, err)
	defer dev.Close()
	g := bdevtest.Reactors(t)
	r := g.Get(0)
	s, err := Create(dev, r, CreateOptions{ClusterSize: poolCluster})
	require.NoError(t, err)
	for _, spec := range []VolumeSpec{{Name: "thick", Size: corruptVolume / 2}, {Name: "thin", Size: corruptVolume, Thin: true}} {
		_, err := s.CreateVolume(spec)
		require.NoError(t, err)
	}
	// Enough volume records that a checkpoint spans blocks.
	for i := range 24 {
		_, err := s.CreateVolume(VolumeSpec{Name: fmt.Sprintf("empty-%02d", i), Size: corruptVolume, Thin: true})
		require.NoError(t, err)
	}
	const bs = 4096
	cb := uint64(poolCluster / bs)
	write := func(name string, lba uint64, seed uint64) {
		v, err := s.OpenVolume(name)
		require.NoError(t, err)
		c := bdevtest.Open(t, v, r)
		buf := bdevtest.Buffers(t, bs)
		bdevtest.Fill(buf, seed)
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lba, 1, buf))
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return c.Ch.Close() }))
		require.NoError(t, v.Close())
	}
	for k := range uint64(8) {
		write("thin", k*2*cb+k%3, 10+k)
		write("thick", k*cb+1, 20+k)
	}
	_, _, err = s.Snapshot(context.Background(), "thin", "snap")
	require.NoError(t, err)
	write("thin", 1, 40) // copy on write
	_, err = s.Clone("snap", VolumeSpec{Name: "clone", Size: corruptVolume})
	require.NoError(t, err)
	write("clone", 2*cb+5, 50)
	if reopened {
		// Crashed and opened again: the open's checkpoint names a new
		// run, past the old one, and the old checkpoint is still there.
		crash(t, s)
		s, err = Open(dev, r)
		require.NoError(t, err)
	}
	img.before = img.read(t, s, r)
	write("thin", 15*cb, 60) // a first write: the last record
	img.want = img.read(t, s, r)

	img.pool = s.sb.Pool
	img.halves = [2]uint64{s.halfOff(0), s.halfOff(1)}
	img.half = s.halfBlocks * format.MetaBlockSize
	img.ring = journalRing{s.sb.JournalOff, s.sb.JournalLen}
	require.NoError(t, r.Call(func(*reactor.Reactor) error { _, img.liveFrom = s.j.Pos(); img.liveFrom -= s.j.Used(); return nil }))
	if crashed {
		crash(t, s)
	} else {
		require.NoError(t, s.Close())
		img.liveFrom = math.MaxUint64 // the close's checkpoint covers the whole journal
	}
	return img
}

func (img *corruptImage) read(t *testing.T, s *Store, r *reactor.Reactor) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, vi := range s.Volumes() {
		v, err := s.OpenVolume(vi.Name)
		require.NoError(t, err)
		c := bdevtest.Open(t, v, r)
		buf := bdevtest.Buffers(t, int(vi.Size))
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, uint32(vi.Size/4096), buf), vi.Name)
		out[vi.Name] = bytes.Clone(buf)
		require.NoError(t, r.Call(func(*reactor.Reactor) error { return c.Ch.Close() }))
		require.NoError(t, v.Close())
	}
	return out
}

// target is a metadata block to damage, and what must follow.
type target struct {
	name   string
	off    uint64
	expect string // "open": opens, reads want; "before": opens, reads before; "refuse": refused naming the block; "either"
	slot   int    // a superblock slot's number, else -1
}

// targets lists every metadata block that holds something: both
// superblock slots, every checkpoint block that checks, every journal
// block that checks.
func (img *corruptImage) targets(t *testing.T) []target {
	t.Helper()
	raw, err := os.ReadFile(img.path)
	require.NoError(t, err)
	block := func(off uint64) format.Block { return format.Block(raw[off : off+format.MetaBlockSize]) }
	var out []target
	for i := range format.SuperblockSlots {
		out = append(out, target{fmt.Sprintf("superblock slot %d", i), uint64(i) * format.MetaBlockSize, "open", i})
	}
	for h, base := range img.halves {
		for off := base; off < base+img.half; off += format.MetaBlockSize {
			if block(off).Check(format.KindCheckpoint, img.pool, off) == nil {
				// The older half may stand in, with the journal after it
				// (through the run a reopen began, when it continues the
				// old one's sequences: journal.Replay refuses one that
				// does not, TestLaterRunPastAnOlderCheckpointIsCorruption).
				out = append(out, target{fmt.Sprintf("checkpoint %c block %d", 'A'+h, (off-base)/format.MetaBlockSize), off, "either", -1})
			}
		}
	}
	var last uint64
	var lastOff uint64
	var journal []target
	for off := img.ring.off; off < img.ring.off+img.ring.len; off += format.MetaBlockSize {
		b := block(off)
		if b.Check(format.KindJournal, img.pool, off) != nil {
			continue
		}
		expect := "open" // stale: before the live run
		if b.Seq() >= img.liveFrom {
			expect = "refuse" // a later block says it was durable
		} else if b.Seq()%4 != 0 {
			continue // stale blocks are all alike: a sample of them
		}
		if b.Seq() >= last {
			last, lastOff = b.Seq(), off
		}
		journal = append(journal, target{fmt.Sprintf("journal block %d (sequence %d)", (off-img.ring.off)/format.MetaBlockSize, b.Seq()), off, expect, -1})
	}
	for i := range journal {
		if journal[i].off == lastOff && journal[i].expect == "refuse" {
			// Nothing after it: a torn tail, as far as anything on the
			// device can tell; the store opens without its record.
			journal[i].expect = "before"
		}
	}
	return append(out, journal...)
}

// Every kind of metadata block, damaged by a bit flip, in the image a
// clean close leaves and in the one a kill leaves: the store refuses to
// open with an error naming the block, or opens (another superblock slot,
// the older checkpoint and the journal after it stand in) and serves
// exactly the data that was written, and a torn journal tail loses only
// its own record. The offline check reads the damaged image without
// changing a byte and reports the damage it cannot work around.
func TestCorruptMetadataIsNeverTrusted(t *testing.T) {
	for _, c := range []struct{ crashed, reopened bool }{{false, false}, {true, false}, {true, true}} {
		crashed := c.crashed
		t.Run(fmt.Sprintf("crashed=%v/reopened=%v", c.crashed, c.reopened), func(t *testing.T) {
			img := makeCorruptImage(t, c.crashed, c.reopened)
			targets := img.targets(t)
			kinds := map[string]int{}
			for _, tg := range targets {
				kinds[strings.Fields(tg.name)[0]+" "+tg.expect]++
			}
			t.Logf("%d targets: %v", len(targets), kinds)
			if !crashed || c.reopened {
				require.Greater(t, kinds["checkpoint either"], 2, "checkpoints of more than one block")
			}
			if crashed {
				require.Equal(t, 1, kinds["journal before"], "the crashed image has a live journal run")
			}
			if crashed && !c.reopened {
				require.Positive(t, kinds["journal refuse"], "the live run is many blocks long")
			}

			for i, tg := range targets {
				t.Run(strings.ReplaceAll(tg.name, " ", "_"), func(t *testing.T) {
					img.damaged(t, tg, i)
				})
			}
		})
	}
}

func (img *corruptImage) damaged(t *testing.T, tg target, i int) {
	raw, err := os.ReadFile(img.path)
	require.NoError(t, err)
	at := tg.off + uint64(i*131+17)%(format.MetaBlockSize-4)
	raw[at] ^= 1 << (i % 8)
	path := filepath.Join(t.TempDir(), "damaged.img")
	require.NoError(t, os.WriteFile(path, raw, 0o600))
	dev, err := file.Open("pool", file.Options{Path: path})
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	r := bdevtest.Reactors(t).Get(0)
	named := fmt.Sprintf("byte %d", tg.off)

	faults, err := Check(dev, r)
	require.NoError(t, err)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, sha256.Sum256(raw), sha256.Sum256(after), "the check wrote to the device")
	if tg.slot >= 0 {
		require.NotEmpty(t, faults, "a damaged superblock slot goes unreported")
		require.Contains(t, fmt.Sprint(faults), fmt.Sprintf("superblock slot %d", tg.slot))
	}

	s, err := Open(dev, r)
	if err != nil {
		require.Contains(t, []string{"refuse", "either"}, tg.expect, "refused: %v", err)
		require.Contains(t, err.Error(), named, "the error does not name the damaged block")
		require.NotEmpty(t, faults, "the check passes a store that will not open")
		require.Contains(t, fmt.Sprint(faults), named)
		return
	}
	t.Cleanup(func() { s.Close() })
	require.NotEqual(t, "refuse", tg.expect, "opened over a damaged block of the journal's live run")
	want := img.want
	if tg.expect == "before" {
		want = img.before
	}
	got := img.read(t, s, r)
	require.Len(t, got, len(want))
	for name, w := range want {
		require.True(t, bytes.Equal(w, got[name]), "volume %s reads other data than was written", name)
	}
	requireChecks(t, s)
}
