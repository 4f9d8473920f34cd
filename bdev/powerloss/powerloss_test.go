package powerloss

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
)

func TestConformance(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device {
		d, err := New("pl", 32<<20, 512)
		require.NoError(t, err)
		t.Cleanup(func() { d.Close() })
		return d
	}, true)
}

func fixture(t *testing.T, bs uint32) (*Device, *bdevtest.Client) {
	t.Helper()
	d, err := New("pl", 8<<20, bs)
	require.NoError(t, err)
	t.Cleanup(func() { d.Close() })
	require.True(t, d.Info().VolatileCache, "hosts must know to flush")
	return d, bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
}

func block(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }

func readBack(t *testing.T, c *bdevtest.Client, lba uint64, n int, bs int) []byte {
	t.Helper()
	got := bdevtest.Buffers(t, n*bs)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, uint32(n), got))
	return got
}

func put(t *testing.T, c *bdevtest.Client, lba uint64, data []byte, bs int, fua bool) {
	t.Helper()
	buf := bdevtest.Buffers(t, len(data))
	copy(buf, data)
	var st bdev.Status
	if fua {
		st = c.StartFUA(lba, uint32(len(data)/bs), buf).Wait(t)
	} else {
		st = c.Do(t, bdev.OpWrite, lba, uint32(len(data)/bs), buf)
	}
	require.Equal(t, bdev.StatusOK, st)
}

// A power cut keeps what was flushed or written FUA and loses what was
// only cached; reads before it see the cache.
func TestPowerLossKeepsOnlyWhatWasDurable(t *testing.T) {
	const bs = 512
	d, c := fixture(t, bs)
	put(t, c, 0, block(1, bs), bs, false)
	put(t, c, 1, block(2, bs), bs, false)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	put(t, c, 1, block(3, bs), bs, false)   // over a flushed block: lost
	put(t, c, 2, block(4, bs), bs, true)    // FUA: kept
	put(t, c, 3, block(5, 2*bs), bs, false) // lost
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpUnmap, 0, 1, nil))
	require.Equal(t, append(append(block(0, bs), block(3, bs)...), block(4, bs)...), readBack(t, c, 0, 3, bs),
		"reads see the cache")
	require.Equal(t, 3, d.Cached())

	d.PowerLoss(1, 0)
	require.Zero(t, d.Cached())
	want := append(append(append(block(1, bs), block(2, bs)...), block(4, bs)...), block(0, 2*bs)...)
	require.Equal(t, want, readBack(t, c, 0, 5, bs))
}

// A FUA write supersedes what was cached for its blocks: older data never
// comes back at the cut, even when the cut keeps every cached write.
func TestFUASupersedesTheCache(t *testing.T) {
	const bs = 4096
	d, c := fixture(t, bs)
	put(t, c, 7, block(0xa, 2*bs), bs, false)
	put(t, c, 8, block(0xb, bs), bs, true)
	require.Equal(t, append(block(0xa, bs), block(0xb, bs)...), readBack(t, c, 7, 2, bs))
	d.PowerLoss(1, 1)
	require.Equal(t, append(block(0xa, bs), block(0xb, bs)...), readBack(t, c, 7, 2, bs))
}

// A cut that keeps every cached write is a flush; a cut that keeps some
// tears writes on sector boundaries: a 4 KiB block comes back part old,
// part new, each sector whole.
func TestPowerLossTearsOnSectors(t *testing.T) {
	const bs = 4096
	d, c := fixture(t, bs)
	put(t, c, 0, block(0x11, bs), bs, false)
	d.PowerLoss(1, 1)
	require.Equal(t, block(0x11, bs), readBack(t, c, 0, 1, bs))

	torn := false
	for seed := uint64(1); seed < 64 && !torn; seed++ {
		put(t, c, 0, block(0x11, bs), bs, true) // the medium's old data
		put(t, c, 0, block(0x22, bs), bs, false)
		d.PowerLoss(seed, 0.5)
		got := readBack(t, c, 0, 1, bs)
		var olds, news int
		for s := 0; s < bs; s += Sector {
			sec := got[s : s+Sector]
			switch {
			case bytes.Equal(sec, block(0x11, Sector)):
				olds++
			case bytes.Equal(sec, block(0x22, Sector)):
				news++
			default:
				t.Fatalf("seed %d: sector %d is neither old nor new: %x", seed, s/Sector, sec[:8])
			}
		}
		torn = olds > 0 && news > 0
	}
	require.True(t, torn, "no seed tore the block")
}

// The same seed cuts the same way: a crash test that fails can be
// replayed.
func TestPowerLossIsReproducible(t *testing.T) {
	const bs = 512
	run := func() []byte {
		d, c := fixture(t, bs)
		for i := range 64 {
			put(t, c, uint64(i%16), block(byte(i), bs), bs, false)
		}
		d.PowerLoss(42, 0.5)
		return readBack(t, c, 0, 16, bs)
	}
	require.Equal(t, run(), run())
}

// A device that dies takes its quota of requests, then fails every one
// and changes nothing; what it took before stays cached for the cut.
func TestDieAfter(t *testing.T) {
	const bs = 512
	d, c := fixture(t, bs)
	d.DieAfter(2)
	put(t, c, 0, block(1, bs), bs, false)
	put(t, c, 1, block(2, bs), bs, false)
	buf := bdevtest.Buffers(t, bs)
	copy(buf, block(3, bs))
	require.Equal(t, bdev.StatusNotReady, c.Do(t, bdev.OpWrite, 0, 1, buf))
	require.Equal(t, bdev.StatusNotReady, c.Do(t, bdev.OpFlush, 0, 0, nil))
	require.Equal(t, bdev.StatusNotReady, c.Do(t, bdev.OpRead, 0, 1, buf))
	require.Equal(t, 2, d.Cached(), "the flush did not happen")
	d.Revive()
	require.Equal(t, block(1, bs), readBack(t, c, 0, 1, bs), "the failed write changed nothing")
	d.PowerLoss(1, 1)
	require.Equal(t, block(2, bs), readBack(t, c, 1, 1, bs))
}
