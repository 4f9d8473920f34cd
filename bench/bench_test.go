package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/malloc"
)

func mallocChannel(t *testing.T, size uint64) (*bdev.Channel, *bdevtest.Client) {
	d, err := malloc.New("ram", size, 512)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	return c.Ch, c
}

func TestPatternsParse(t *testing.T) {
	for _, p := range []Pattern{Read, Write, RandRead, RandWrite, RandRW} {
		got, err := ParsePattern(p.String())
		require.NoError(t, err)
		require.Equal(t, p, got)
	}
	_, err := ParsePattern("sideways")
	require.Error(t, err)
	require.True(t, RandRW.Random())
	require.False(t, Write.Random())
}

func TestJobValidate(t *testing.T) {
	ok := Job{Pattern: RandRead, BlockSize: 4096, QueueDepth: 8, IOs: 1}
	require.NoError(t, ok.Validate(512, 1<<20))
	for name, mut := range map[string]func(*Job){
		"block size":  func(j *Job) { j.BlockSize = 1000 },
		"qd":          func(j *Job) { j.QueueDepth = 0 },
		"no stop":     func(j *Job) { j.IOs = 0 },
		"read pct":    func(j *Job) { j.ReadPct = 101 },
		"span":        func(j *Job) { j.Span = 512 },
		"bad pattern": func(j *Job) { j.Pattern = 9 },
		"offset":      func(j *Job) { j.Offset = 100 },
		"offset end":  func(j *Job) { j.Offset = 1 << 20 },
		"past offset": func(j *Job) { j.Offset = 1<<20 - 512 },
		"stride":      func(j *Job) { j.Stride = 512 },
	} {
		j := ok
		mut(&j)
		require.Error(t, j.Validate(512, 1<<20), name)
	}
	// A remote namespace's block size comes from its target: 0 must be an
	// error, not a division by zero.
	require.Error(t, ok.Validate(0, 1<<20))
}

func TestStampCheck(t *testing.T) {
	b := make([]byte, 4096)
	Stamp(b, 77, 1)
	require.True(t, Check(b, 77, 1))
	require.False(t, Check(b, 78, 1), "wrong LBA")
	require.False(t, Check(b, 77, 2), "wrong seed")
	b[1000] ^= 1
	require.False(t, Check(b, 77, 1), "flipped bit")
	require.False(t, Check(make([]byte, 4096), 0, 0), "zeroes")
}

func TestRunCountsIOs(t *testing.T) {
	ch, _ := mallocChannel(t, 8<<20)
	for _, p := range []Pattern{Read, Write, RandRead, RandWrite, RandRW} {
		res, err := RunLocal(ch, Job{Pattern: p, BlockSize: 4096, QueueDepth: 16, IOs: 5000, ReadPct: 50})
		require.NoError(t, err)
		require.EqualValues(t, 5000, res.IOs, "%v", p)
		require.EqualValues(t, 5000*4096, res.Bytes)
		require.Positive(t, res.IOPS)
		require.Zero(t, res.Errors)
		require.LessOrEqual(t, res.LatP50Us, res.LatP99Us)
		require.LessOrEqual(t, res.LatP99Us, res.LatMaxUs)
	}
	res, err := RunLocal(ch, Job{Pattern: RandRead, BlockSize: 4096, QueueDepth: 4, Duration: 50 * time.Millisecond})
	require.NoError(t, err)
	require.GreaterOrEqual(t, res.Elapsed, 50*time.Millisecond)
	var text, js bytes.Buffer
	require.NoError(t, res.WriteText(&text))
	require.Contains(t, text.String(), "IOPS")
	require.NoError(t, res.WriteJSON(&js))
	require.Contains(t, js.String(), `"lat_p999_us"`)
}

// Offset moves the span and Stride spaces sequential I/O: a pass writes
// exactly one block per stride from the offset on, and a second pass over
// the span goes round the same blocks.
func TestOffsetAndStride(t *testing.T) {
	ch, c := mallocChannel(t, 4<<20)
	const off, stride, n = 64 << 10, 16 << 10, 8
	job := Job{Pattern: Write, BlockSize: 4096, QueueDepth: 4, IOs: 2 * n, Span: n * stride, Offset: off, Stride: stride, Verify: true, Seed: 5}
	res, err := RunLocal(ch, job)
	require.NoError(t, err)
	require.EqualValues(t, 2*n, res.IOs)
	buf := bdevtest.Buffers(t, 4096)
	for lba := uint64(0); lba < (4<<20)/512; lba += 8 {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, 8, buf))
		at := lba * 512
		written := at >= off && at < off+n*stride && (at-off)%stride == 0
		require.Equal(t, written, Check(buf[:512], lba, 5), "byte %d", at)
		if !written {
			require.Equal(t, make([]byte, 4096), buf, "byte %d", at)
		}
	}
}

// Verification passes on good data and catches one corrupted block.
func TestVerifyCatchesCorruption(t *testing.T) {
	ch, c := mallocChannel(t, 4<<20)
	job := Job{Pattern: RandRW, BlockSize: 8192, QueueDepth: 8, IOs: 4000, ReadPct: 70, Verify: true, Seed: 9, Span: 1 << 20}
	require.NoError(t, Prefill(ch, job))
	res, err := RunLocal(ch, job)
	require.NoError(t, err)
	require.Zero(t, res.Mismatches)

	// Overwrite one 512-byte block behind the generator's back.
	junk := bdevtest.Buffers(t, 512)
	bdevtest.Fill(junk, 3)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 777, 1, junk))
	full := Job{Pattern: Read, BlockSize: 8192, QueueDepth: 8, IOs: (1 << 20) / 8192, Verify: true, Seed: 9, Span: 1 << 20}
	res, err = RunLocal(ch, full)
	require.NoError(t, err)
	require.EqualValues(t, 1, res.Mismatches, "exactly the corrupted block")
}

// The generator allocates nothing per I/O: ten times the I/Os cost no more
// allocations.
func TestGeneratorAllocatesNothingPerIO(t *testing.T) {
	ch, _ := mallocChannel(t, 8<<20)
	run := func(ios uint64) float64 {
		return testing.AllocsPerRun(3, func() {
			if _, err := RunLocal(ch, Job{Pattern: RandRW, ReadPct: 50, BlockSize: 4096, QueueDepth: 8, IOs: ios}); err != nil {
				panic(err)
			}
		})
	}
	small, large := run(1000), run(10000)
	require.InDelta(t, small, large, 5, "allocations must not grow with the I/O count")
}
