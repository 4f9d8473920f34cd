package engine_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/engine"
)

// storePool makes a volume store pool of 64 KiB clusters on a 64 MiB
// file, and returns the file's path.
func (f *fixture) storePool(t *testing.T, e *engine.Engine, name string) string {
	t.Helper()
	img := filepath.Join(f.dir, name+".img")
	p, created, err := e.CreatePool(ctx, engine.PoolSpec{Name: name, URI: f.img(name + ".img?size=64MiB"), Format: engine.FormatLvol, ClusterSize: 64 << 10})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, engine.FormatLvol, p.Format)
	require.Equal(t, uint64(64<<10), p.ClusterSize)
	return img
}

// Volume store volumes (thick, thin, a clone of a snapshot) through the
// engine: their sizes and allocation in the views, their data, and all of
// it back after a restart from the pool's device alone (the state file
// holds no volume of the pool).
func TestVolumeStorePool(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	f.storePool(t, e, "s")
	thick := mustVolume(t, e, "thick", "s", 1<<20)
	require.False(t, thick.Thin)
	require.Equal(t, uint64(1<<20), thick.AllocatedBytes)
	thin, created, err := e.CreateVolume(ctx, engine.VolumeSpec{Name: "thin", Pool: "s", SizeBytes: 32 << 20, Thin: true})
	require.NoError(t, err)
	require.True(t, created)
	require.True(t, thin.Thin)
	require.Zero(t, thin.AllocatedBytes)
	_, created, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "thin", Pool: "s", SizeBytes: 32 << 20, Thin: true})
	require.NoError(t, err)
	require.False(t, created, "asked again")
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "thin", Pool: "s", SizeBytes: 16 << 20, Thin: true})
	require.ErrorIs(t, err, engine.ErrConflict)

	dev, err := e.VolumeDevice("thin")
	require.NoError(t, err)
	before := bytes.Repeat([]byte{0xa1}, 8192)
	write(t, dev, f.g.Get(0), 100, before)
	v, err := e.Volume("thin")
	require.NoError(t, err)
	require.Equal(t, uint64(64<<10), v.AllocatedBytes)
	p, err := e.Pool("s")
	require.NoError(t, err)
	require.Equal(t, uint64(1<<20+64<<10), p.AllocatedBytes)
	require.Equal(t, uint64(33<<20), p.CommittedBytes)

	sn, created, err := e.CreateSnapshot(ctx, engine.SnapshotSpec{Volume: "thin", Name: "snap"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "thin", sn.Volume)
	after := bytes.Repeat([]byte{0xb2}, 8192)
	write(t, dev, f.g.Get(0), 100, after)
	clone, created, err := e.CreateVolume(ctx, engine.VolumeSpec{Name: "clone", Snapshot: "snap"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, "s", clone.Pool)
	require.Equal(t, "snap", clone.Parent)
	require.True(t, clone.Thin)
	cdev, err := e.VolumeDevice("clone")
	require.NoError(t, err)
	require.Equal(t, before, read(t, cdev, f.g.Get(0), 100, len(before)), "the clone holds the snapshot's data")
	require.Equal(t, after, read(t, dev, f.g.Get(0), 100, len(after)))

	snaps, err := e.Snapshots("thin")
	require.NoError(t, err)
	require.Len(t, snaps, 1)
	_, _, err = e.CreateSnapshot(ctx, engine.SnapshotSpec{Volume: "thick", Name: "thin"})
	require.ErrorIs(t, err, engine.ErrConflict, "a snapshot's name is not a volume's")
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "snap", Pool: "s", SizeBytes: 1 << 20})
	require.ErrorIs(t, err, engine.ErrConflict, "a volume's name is not a snapshot's")

	// Shrink and grow.
	_, err = e.ResizeVolume(ctx, "thin", 16<<20)
	require.NoError(t, err)
	v, err = e.Volume("thin")
	require.NoError(t, err)
	require.Equal(t, uint64(16<<20), v.SizeBytes)
	require.Equal(t, uint64(16<<20), dev.Info().Size(), "the device shrank")

	_, _, err = e.CreateShare(ctx, shareSpec("clone"))
	require.NoError(t, err)
	require.NoError(t, e.Close())
	st, err := os.ReadFile(filepath.Join(f.dir, engine.StateFile))
	require.NoError(t, err)
	require.NotContains(t, string(st), `"thick"`, "the pool's device holds its volumes")

	e = f.open(t, false)
	vols := e.Volumes()
	require.Len(t, vols, 3)
	require.Equal(t, "clone", vols[0].Name)
	require.Equal(t, clone.UUID, vols[0].UUID)
	require.Equal(t, thick.UUID, vols[1].UUID)
	require.Equal(t, thin.UUID, vols[2].UUID)
	require.Equal(t, uint64(16<<20), vols[2].SizeBytes)
	dev, err = e.VolumeDevice("thin")
	require.NoError(t, err)
	require.Equal(t, after, read(t, dev, f.g.Get(0), 100, len(after)))
	require.Eventually(t, func() bool {
		sh, err := e.Share("clone")
		return err == nil && sh.State == engine.StateExported
	}, 5*time.Second, 5*time.Millisecond)

	// Deleting: the shared clone is refused, the pool with volumes or
	// snapshots is refused; a snapshot goes while its clone lives.
	require.ErrorIs(t, e.DeleteVolume(ctx, "clone"), engine.ErrConflict)
	require.NoError(t, e.DeleteSnapshot(ctx, "snap"))
	cdev, err = e.VolumeDevice("clone")
	require.NoError(t, err)
	require.Equal(t, before, read(t, cdev, f.g.Get(0), 100, len(before)), "the clone keeps what it needs")
	require.NoError(t, e.DeleteShare(ctx, "clone"))
	for _, name := range []string{"clone", "thin", "thick"} {
		require.NoError(t, e.DeleteVolume(ctx, name))
	}
	faults, err := e.CheckPool("s")
	require.NoError(t, err)
	require.Empty(t, faults)
	require.Eventually(t, func() bool { p, _ := e.Pool("s"); return p.AllocatedBytes == 0 }, 5*time.Second, time.Millisecond)
	require.NoError(t, e.DeletePool(ctx, "s"))
}

// A volume store pool's device copied elsewhere is imported into a fresh
// data directory with its volumes and their identities; formatting over
// a store is refused, and so is importing a device that holds none or
// whose names clash with the engine's.
func TestImportVolumeStorePool(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	img := f.storePool(t, e, "s")
	v := mustVolume(t, e, "vol", "s", 2<<20)
	dev, err := e.VolumeDevice("vol")
	require.NoError(t, err)
	data := bytes.Repeat([]byte{0x5c}, 4096)
	write(t, dev, f.g.Get(0), 7, data)
	_, _, err = e.CreateSnapshot(ctx, engine.SnapshotSpec{Volume: "vol", Name: "vol-snap"})
	require.NoError(t, err)
	require.NoError(t, e.Close())

	g := newFixture(t)
	moved := filepath.Join(g.dir, "moved.img")
	copyFile(t, img, moved)
	e2 := g.open(t, false)
	_, _, err = e2.CreatePool(ctx, engine.PoolSpec{Name: "m", URI: "uring://" + moved, Format: engine.FormatLvol})
	require.ErrorIs(t, err, engine.ErrConflict, "formatting over a store")
	require.ErrorContains(t, err, "import")
	blank := filepath.Join(g.dir, "blank.img")
	_, _, err = e2.CreatePool(ctx, engine.PoolSpec{Name: "b", URI: "uring://" + blank + "?size=8MiB", Import: true})
	require.ErrorIs(t, err, engine.ErrInvalid, "nothing to import")

	p, created, err := e2.CreatePool(ctx, engine.PoolSpec{Name: "m", URI: "uring://" + moved, Import: true})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, 1, p.Volumes)
	require.Equal(t, 1, p.Snapshots)
	got, err := e2.Volume("vol")
	require.NoError(t, err)
	require.Equal(t, v.UUID, got.UUID)
	require.Equal(t, v.Serial, got.Serial)
	dev, err = e2.VolumeDevice("vol")
	require.NoError(t, err)
	require.Equal(t, data, read(t, dev, g.g.Get(0), 7, len(data)))

	// A second copy clashes with the names the first brought.
	again := filepath.Join(g.dir, "again.img")
	copyFile(t, img, again)
	_, _, err = e2.CreatePool(ctx, engine.PoolSpec{Name: "n", URI: "uring://" + again, Import: true})
	require.ErrorIs(t, err, engine.ErrConflict)
	require.True(t, strings.Contains(err.Error(), `volume "vol"`), err.Error())
}

// closedStorePool makes a volume store pool "s" with a volume "a" in a
// data directory, closes its engine and returns the image's path.
func closedStorePool(t *testing.T) (*fixture, string) {
	t.Helper()
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	img := f.storePool(t, e, "s")
	mustVolume(t, e, "a", "s", 1<<20)
	require.NoError(t, e.Close())
	return f, img
}

// A volume store pool whose device now holds another store is faulted,
// never served.
func TestVolumeStorePoolChecksItsDevice(t *testing.T) {
	f, img := closedStorePool(t)

	other := newFixture(t)
	eo := other.open(t, false)
	otherImg := other.storePool(t, eo, "o")
	mustVolume(t, eo, "b", "o", 1<<20)
	require.NoError(t, eo.Close())
	copyFile(t, otherImg, img)

	e := f.open(t, false)
	p, err := e.Pool("s")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, p.State)
	require.Contains(t, p.Error, "not this pool's")
	require.Empty(t, e.Volumes())
	// The other store checks: what faulted the pool is said instead.
	faults, err := e.CheckPool("s")
	require.NoError(t, err)
	require.Len(t, faults, 1)
	require.Contains(t, faults[0], "not this pool's")
}

// A pool whose store will not open is checked offline: its device is
// read, never written, and the check names the damaged blocks.
func TestCheckFaultedVolumeStorePool(t *testing.T) {
	f, img := closedStorePool(t)
	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	raw[100] ^= 1  // superblock slot 0
	raw[4196] ^= 1 // slot 1
	require.NoError(t, os.WriteFile(img, raw, 0o600))

	e := f.open(t, false)
	p, err := e.Pool("s")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, p.State)
	faults, err := e.CheckPool("s")
	require.NoError(t, err)
	all := strings.Join(faults, "\n")
	require.Contains(t, all, "superblock at byte 0:")
	require.Contains(t, all, "superblock at byte 4096:")
	after, err := os.ReadFile(img)
	require.NoError(t, err)
	require.True(t, bytes.Equal(raw, after), "the check wrote to the device")
	p, err = e.Pool("s")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, p.State, "a check does not bring a pool up")
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// Volumes and snapshots asked for under one name at once, outside the
// engine's mutex while the store works: exactly one of them is made, the
// others are refused as conflicts (or, asking for the same snapshot, told
// it is there), and the state and the store agree.
func TestConcurrentMakersOfOneName(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	f.storePool(t, e, "s")
	mustVolume(t, e, "base", "s", 1<<20)
	const makers = 8
	errs := make(chan error, makers)
	made := make(chan string, makers)
	for i := range makers {
		go func() {
			var created bool
			var err error
			if i%2 == 0 {
				_, created, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "x", Pool: "s", SizeBytes: uint64(i+1) << 20, Thin: i%4 == 0})
			} else {
				_, created, err = e.CreateSnapshot(ctx, engine.SnapshotSpec{Volume: "base", Name: "x"})
			}
			if created {
				made <- fmt.Sprintf("maker %d", i)
			}
			errs <- err
		}()
	}
	conflicts := 0
	for range makers {
		if err := <-errs; err != nil {
			require.ErrorIs(t, err, engine.ErrConflict)
			conflicts++
		}
	}
	close(made)
	var winners []string
	for w := range made {
		winners = append(winners, w)
	}
	require.Len(t, winners, 1, "exactly one maker of the name")
	// The others are refused, or told an identical snapshot is there.
	require.Positive(t, conflicts)
	_, verr := e.Volume("x")
	snaps, err := e.Snapshots("base")
	require.NoError(t, err)
	require.True(t, (verr == nil) != (len(snaps) == 1), "the name is a volume or a snapshot, once")
	faults, err := e.CheckPool("s")
	require.NoError(t, err)
	require.Empty(t, faults)
}
