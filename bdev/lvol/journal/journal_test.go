package journal

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/lvol/format"
	"github.com/strata-storage/strata/bdev/powerloss"
	"github.com/strata-storage/strata/reactor"
)

var pool = [16]byte{7, 7, 7}

// fixture is a journal of ring blocks at byte 8192 of a power-loss device,
// driven on one reactor.
type fixture struct {
	dev  *powerloss.Device
	r    *reactor.Reactor
	c    *bdevtest.Client
	j    *Journal
	ring Ring
}

func newFixture(t *testing.T, blocks uint64) *fixture {
	t.Helper()
	dev, err := powerloss.New("pool", 8<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { dev.Close() })
	f := &fixture{dev: dev, r: bdevtest.Reactors(t).Get(0), ring: Ring{Off: 8192, Blocks: blocks, Pool: pool}}
	f.c = bdevtest.Open(t, dev, f.r)
	f.on(t, func() {
		f.j, err = New(f.c.Ch, f.ring)
		require.NoError(t, err)
	})
	t.Cleanup(func() { f.on(t, func() { f.j.Close() }) })
	return f
}

func (f *fixture) on(t *testing.T, fn func()) {
	t.Helper()
	require.NoError(t, f.r.Call(func(*reactor.Reactor) error { fn(); return nil }))
}

// appendAll appends records i (a body naming i) with fua as given and
// waits until every one is done; it returns each one's error.
func (f *fixture) appendAll(t *testing.T, from int, fua []bool) []error {
	t.Helper()
	errs := make([]error, len(fua))
	done := make(chan struct{}, len(fua))
	f.on(t, func() {
		for k, fu := range fua {
			body := binary.LittleEndian.AppendUint32(nil, uint32(from+k))
			body = append(body, make([]byte, (from+k)%300)...)
			f.j.Append(1, body, fu, func(err error) { errs[k] = err; done <- struct{}{} })
		}
	})
	for range fua {
		<-done
	}
	return errs
}

// replay reads the ring back from the device and returns the record
// numbers in order.
func (f *fixture) replay(t *testing.T, pos, seq uint64) ([]int, Run) {
	t.Helper()
	got, run, err := f.replayErr(t, pos, seq)
	require.NoError(t, err)
	return got, run
}

// replayErr is replay returning Replay's error.
func (f *fixture) replayErr(t *testing.T, pos, seq uint64) ([]int, Run, error) {
	t.Helper()
	var got []int
	region := bdevtest.Buffers(t, int(f.ring.Blocks)*format.MetaBlockSize)
	st := f.c.Do(t, bdev.OpRead, f.ring.Off/512, uint32(len(region)/512), region)
	require.Equal(t, bdev.StatusOK, st)
	run, err := Replay(func(i uint64) ([]byte, error) {
		if i >= f.ring.Blocks {
			return nil, fmt.Errorf("block %d of %d", i, f.ring.Blocks)
		}
		return region[i*format.MetaBlockSize : (i+1)*format.MetaBlockSize], nil
	}, f.ring, pos, seq, func(typ format.RecordType, body []byte) {
		require.EqualValues(t, 1, typ)
		got = append(got, int(binary.LittleEndian.Uint32(body)))
	})
	return got, run, err
}

// Records come back in order, however many share a block; records that
// arrive while a write is in flight share the next one.
func TestAppendAndReplay(t *testing.T) {
	f := newFixture(t, 64)
	f.on(t, func() { f.j.Start(0, 1) })
	before := f.dev.Stats().WriteOps
	errs := f.appendAll(t, 0, make([]bool, 500))
	for _, err := range errs {
		require.NoError(t, err)
	}
	writes := f.dev.Stats().WriteOps - before
	require.Less(t, writes, uint64(100), "group commit: far fewer block writes than records")
	got, run := f.replay(t, 0, 1)
	require.Len(t, got, 500)
	for i, n := range got {
		require.Equal(t, i, n)
	}
	require.Equal(t, 500, run.Records)
	require.Error(t, run.Stop, "ended by a blank block")
	var used uint64
	f.on(t, func() { used = f.j.Used() })
	require.Equal(t, run.End, used)
	require.Equal(t, uint64(1)+used, run.NextSeq)
}

// Power cuts at many points: what replays is always a prefix of what was
// appended, in order, and holds every record acknowledged with FUA.
func TestPowerLossKeepsAPrefixWithEveryFUARecord(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		f := newFixture(t, 256)
		rng := rand.New(rand.NewPCG(seed, 1))
		f.on(t, func() { f.j.Start(3, 10) })
		n := 0
		lastFUA := -1
		for batch := rng.IntN(6) + 1; batch > 0; batch-- {
			fua := make([]bool, rng.IntN(80)+1)
			for k := range fua {
				fua[k] = rng.IntN(10) == 0
				if fua[k] {
					lastFUA = n + k
				}
			}
			for _, err := range f.appendAll(t, n, fua) {
				require.NoError(t, err)
			}
			n += len(fua)
		}
		f.dev.PowerLoss(seed, 0.5)
		got, _ := f.replay(t, 3, 10)
		for i, k := range got {
			require.Equal(t, i, k, "seed %d: a prefix, in order", seed)
		}
		require.LessOrEqual(t, len(got), n)
		require.Greater(t, len(got), lastFUA, "seed %d: record %d was acknowledged with FUA", seed, lastFUA)
	}
}

// A run after a crash starts past every sequence the ring holds: records
// of the crashed run that a cut left past the new run's end never follow
// it at the next replay.
func TestNewRunNeverReplaysTheOldOne(t *testing.T) {
	f := newFixture(t, 64)
	f.on(t, func() { f.j.Start(0, 1) })
	fua := make([]bool, 400)
	fua[len(fua)-1] = true
	f.appendAll(t, 0, fua) // many blocks, all durable: the last record is FUA
	f.dev.PowerLoss(1, 0)
	got, run := f.replay(t, 0, 1)
	require.Len(t, got, 400)
	// The store checkpoints what it replayed and starts a new run at the
	// run's end, past every sequence.
	f.on(t, func() { f.j.Start(run.End, run.NextSeq) })
	f.appendAll(t, 1000, []bool{true, true})
	got, _ = f.replay(t, run.End, run.NextSeq)
	require.Equal(t, []int{1000, 1001}, got)

	// Had the new run started with a sequence from inside the old one,
	// a stale block would have followed it: the rule is what stops that.
	f.on(t, func() { f.j.Start(0, 1) })
	f.appendAll(t, 2000, []bool{true})
	got, _ = f.replay(t, 0, 1)
	require.Greater(t, len(got), 1, "a stale block follows a run that reused sequences")
}

// A block of the run that was durable and is then lost or damaged is
// corruption, not the journal's end: a block written after it says it
// was durable. Replay names the lost block; a torn tail (nothing durable
// after it: TestPowerLossKeepsAPrefixWithEveryFUARecord) is not refused.
func TestLostDurableBlockIsCorruption(t *testing.T) {
	f := newFixture(t, 64)
	f.on(t, func() { f.j.Start(0, 1) })
	fua := make([]bool, 200)
	fua[len(fua)-1] = true
	f.appendAll(t, 0, fua)                 // blocks 0..k, durable
	f.appendAll(t, 200, make([]bool, 200)) // later blocks say so
	_, whole := f.replay(t, 0, 1)
	require.Greater(t, whole.End, uint64(3))

	flip := bdevtest.Buffers(t, 512)
	lba := (f.ring.Off + format.MetaBlockSize) / 512 // ring block 1
	require.Equal(t, bdev.StatusOK, f.c.Do(t, bdev.OpRead, lba, 1, flip))
	flip[100] ^= 0x10
	require.Equal(t, bdev.StatusOK, f.c.Do(t, bdev.OpWrite, lba, 1, flip))
	_, run, err := f.replayErr(t, 0, 1)
	var ce *format.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, f.ring.Off+format.MetaBlockSize, ce.Offset, "the error names the lost block: %v", err)
	require.Equal(t, uint64(1), run.End)
}

// Replaying from an older checkpoint whose run a newer one's has
// followed is refused: the blocks of the later run name it.
func TestLaterRunPastAnOlderCheckpointIsCorruption(t *testing.T) {
	f := newFixture(t, 64)
	f.on(t, func() { f.j.Start(0, 1) })
	f.appendAll(t, 0, make([]bool, 100))
	_, run := f.replay(t, 0, 1)
	f.on(t, func() { f.j.Start(run.End, run.NextSeq+5) })
	f.appendAll(t, 1000, []bool{true})
	_, _, err := f.replayErr(t, 0, 1)
	var ce *format.CorruptError
	require.ErrorAs(t, err, &ce)
	require.Equal(t, f.ring.Off+run.End*format.MetaBlockSize, ce.Offset, "%v", err)
	got, _ := f.replay(t, run.End, run.NextSeq+5)
	require.Equal(t, []int{1000}, got)
}

// The run fills the ring but one block, then refuses: the store must
// checkpoint first.
func TestFullRingRefuses(t *testing.T) {
	f := newFixture(t, 4)
	f.on(t, func() { f.j.Start(0, 1) })
	var full error
	for i := 0; full == nil && i < 100; i++ {
		errs := f.appendAll(t, i*40, make([]bool, 40))
		for _, err := range errs {
			if err != nil {
				full = err
			}
		}
	}
	require.ErrorIs(t, full, ErrFull)
	var used uint64
	f.on(t, func() { used = f.j.Used() })
	require.LessOrEqual(t, used, uint64(3))
}

// A failed journal write fails its records, every later one and Sync.
func TestWriteFailureIsSticky(t *testing.T) {
	f := newFixture(t, 16)
	f.on(t, func() { f.j.Start(0, 1) })
	require.NoError(t, f.appendAll(t, 0, []bool{false})[0])
	// The channel closes under the journal: its next write fails.
	f.on(t, func() { f.c.Ch.Close() })
	require.Error(t, f.appendAll(t, 1, []bool{false})[0])
	require.Error(t, f.appendAll(t, 2, []bool{true})[0])
	synced := make(chan error, 1)
	f.on(t, func() { f.j.Sync(func(err error) { synced <- err }) })
	require.Error(t, <-synced)
}

// A burst that fills more blocks than are written while it lasts (all
// appended before the first write completes) is held in memory, not
// refused: only the ring's room limits a run.
func TestBurstPastTheBufferedBlocks(t *testing.T) {
	f := newFixture(t, 512)
	f.on(t, func() { f.j.Start(0, 1) })
	errs := f.appendAll(t, 0, make([]bool, 3000)) // about 200 blocks in one task
	for i, err := range errs {
		require.NoError(t, err, "record %d", i)
	}
	got, _ := f.replay(t, 0, 1)
	require.Len(t, got, 3000)
}

// A run checkpointed as it goes laps the ring many times: each
// Checkpointed frees the blocks before its point, and replay from the
// last point finds exactly the records appended after it. A point outside
// the run is refused.
func TestCheckpointedRunLapsTheRing(t *testing.T) {
	f := newFixture(t, 8)
	f.on(t, func() { f.j.Start(0, 1) })
	var pos, seq uint64
	next := 0
	for lap := range 12 {
		f.on(t, func() { pos, seq = f.j.Pos() })
		n := 20 + lap*7
		for i, err := range f.appendAll(t, next, make([]bool, n)) {
			require.NoError(t, err, "lap %d record %d", lap, i)
		}
		synced := make(chan error, 1)
		f.on(t, func() { f.j.Sync(func(err error) { synced <- err }) })
		require.NoError(t, <-synced)
		got, _ := f.replay(t, pos, seq)
		require.Len(t, got, n, "lap %d", lap)
		require.Equal(t, next, got[0])
		require.Equal(t, next+n-1, got[n-1])
		next += n
		// The records are now covered: the run starts at the point after
		// them, and Used counts only what followed.
		f.on(t, func() {
			p, s := f.j.Pos()
			require.NoError(t, f.j.Checkpointed(s))
			require.Zero(t, f.j.Used())
			require.Error(t, f.j.Checkpointed(s+1), "a point past the run")
			require.Error(t, f.j.Checkpointed(seq), "a point before the run's start")
			pos, seq = p, s
		})
	}
}

// A flush of the device that covers every block written (the store's,
// for a fill or a host's Flush) makes them durable: a FUA record after
// it needs no flush of its own, and the block after says so in its lag.
func TestFlushedCoversWhatWasWritten(t *testing.T) {
	f := newFixture(t, 64)
	f.on(t, func() { f.j.Start(0, 1) })
	f.appendAll(t, 0, make([]bool, 3)) // written, not durable
	var to uint64
	f.on(t, func() { to = f.j.Written() })
	require.Equal(t, bdev.StatusOK, f.c.Do(t, bdev.OpFlush, 0, 0, nil))
	f.on(t, func() { f.j.Flushed(to) })
	before := f.dev.Stats().FlushOps
	f.appendAll(t, 3, []bool{true})
	require.Equal(t, before, f.dev.Stats().FlushOps, "a FUA record after a covering flush flushed again")

	region := bdevtest.Buffers(t, int(f.ring.Blocks)*format.MetaBlockSize)
	require.Equal(t, bdev.StatusOK, f.c.Do(t, bdev.OpRead, f.ring.Off/512, uint32(len(region)/512), region))
	_, run := f.replay(t, 0, 1)
	last := format.Block(region[(run.End-1)*format.MetaBlockSize : run.End*format.MetaBlockSize])
	require.Equal(t, to, last.Seq(), "the FUA record's block follows the flushed ones")
	require.EqualValues(t, 1, last.DurableLag(), "it says every block before it is durable")
}
