package engine_test

// Tests of the volumes' device work (clearing new space) in the
// background: over pools whose unmaps are slowed or held by bdev/fault.

import (
	"bytes"
	"context"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/fault"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/engine/enginetest"
)

// faultScheme is the URI scheme of faultPools: fault:///path?size=...
// is a uring:// file device under a fault device.
const faultScheme = "fault"

// faultPools makes the fault pools of a test and keeps them by pool name,
// so that the test injects rules; rules set before a pool opens (at Open)
// are injected first.
type faultPools struct {
	mu    sync.Mutex
	devs  map[string]*fault.Device
	rules []fault.Rule
}

type faultPool struct {
	*fault.Device
	base bdev.Device
}

func (p faultPool) Close() error { return errors.Join(p.Device.Close(), p.base.Close()) }

func (fp *faultPools) create(name string, u *url.URL) (bdev.Device, error) {
	fu := *u
	fu.Scheme = file.Scheme
	base, err := file.FromURI(name+"-base", &fu)
	if err != nil {
		return nil, err
	}
	d := fault.New(name, base, fault.Options{})
	fp.mu.Lock()
	defer fp.mu.Unlock()
	for _, r := range fp.rules {
		d.Inject(r)
	}
	fp.devs[name] = d
	return faultPool{Device: d, base: base}, nil
}

func (fp *faultPools) dev(name string) *fault.Device {
	fp.mu.Lock()
	defer fp.mu.Unlock()
	return fp.devs[name]
}

// openFault opens an engine whose pools may also be fault:// ones.
func (f *fixture) openFault(t *testing.T, fp *faultPools) *engine.Engine {
	t.Helper()
	devs := engine.DefaultDevices()
	devs[faultScheme] = fp.create
	e, err := engine.Open(engine.Config{DataDir: f.dir, Reactors: f.g, SampleInterval: -1, Exporter: f.x, Devices: devs})
	require.NoError(t, err)
	return e
}

// faultEngine opens an engine whose pool p is a 64 MiB file under a fault
// device (returned), closed by the test's cleanup.
func faultEngine(t *testing.T) (*fixture, *engine.Engine, *fault.Device) {
	t.Helper()
	f := newFixture(t)
	fp := newFaultPools()
	e := f.openFault(t, fp)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	mustPool(t, e, "p", "fault://"+filepath.Join(f.dir, "p.img")+"?size=64MiB")
	return f, e, fp.dev("p")
}

func newFaultPools(rules ...fault.Rule) *faultPools {
	return &faultPools{devs: map[string]*fault.Device{}, rules: rules}
}

func slowUnmaps(d time.Duration) fault.Rule {
	return fault.Rule{Ops: []bdev.Op{bdev.OpUnmap}, Delay: d}
}

// quick runs fn and requires it to return well within the time a step of
// the slowed work takes: it did not wait behind that work.
func quick[T any](t *testing.T, fn func() T) T {
	t.Helper()
	start := time.Now()
	v := fn()
	require.Less(t, time.Since(start), 150*time.Millisecond, "waited behind a long operation (device work, an export)")
	return v
}

// waitState polls volume name until its state is want.
func waitState(t *testing.T, e *engine.Engine, name, want string) engine.Volume {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		v, err := e.Volume(name)
		if err == nil && v.State == want {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume %s: want state %s, have %+v (%v)", name, want, v, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type created struct {
	v   engine.Volume
	err error
}

func createAsync(ctx context.Context, e *engine.Engine, spec engine.VolumeSpec) chan created {
	c := make(chan created, 1)
	go func() {
		v, _, err := e.CreateVolume(ctx, spec)
		c <- created{v, err}
	}()
	return c
}

// While a new volume's space is cleared, reads and other mutations go on,
// the volume shows as creating with its progress, and nothing can use it.
func TestReadsAndMutationsDoNotWaitForZeroing(t *testing.T) {
	_, e, pool := faultEngine(t)
	mustPool(t, e, "q", "malloc:///?size=8MiB")
	pool.Inject(slowUnmaps(300 * time.Millisecond)) // 3 steps of 16 MiB: ~1 s

	res := createAsync(ctx, e, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 48 << 20})
	v := waitState(t, e, "v", engine.StateCreating)
	require.Equal(t, uint64(48<<20), v.SizeBytes)
	require.Equal(t, &engine.Progress{DoneBytes: v.Progress.DoneBytes, TotalBytes: 48 << 20, TargetSizeBytes: 48 << 20}, v.Progress)
	require.Less(t, v.Progress.DoneBytes, v.Progress.TotalBytes)

	vols := quick(t, e.Volumes)
	require.Len(t, vols, 1)
	require.Equal(t, engine.StateCreating, vols[0].State)
	quick(t, e.Pools)
	quick(t, e.Status)
	quick(t, e.Shares)
	w := quick(t, func() engine.Volume { return mustVolume(t, e, "w", "q", 1<<20) })
	require.Equal(t, engine.StateOnline, w.State)
	require.NoError(t, quick(t, func() error {
		_, _, err := e.CreateHost(ctx, engine.HostSpec{Name: "h", NQN: "nqn.2024-01.io.example:h"})
		return err
	}))
	require.NoError(t, quick(t, func() error { _, _, err := e.CreateShare(ctx, shareSpec("w")); return err }))

	_, err := e.VolumeDevice("v")
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "is being created")
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "is being created")
	_, err = e.ResizeVolume(ctx, "v", 64<<20)
	require.ErrorIs(t, err, engine.ErrConflict)

	r := <-res
	require.NoError(t, r.err)
	require.Equal(t, engine.StateOnline, r.v.State)
	require.Nil(t, r.v.Progress)
	require.Equal(t, uint64(48<<20), r.v.SizeBytes)
	_, err = e.VolumeDevice("v")
	require.NoError(t, err)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
}

// A caller whose context ends stops waiting; the creation goes on, survives
// a restart in the middle, and the volume comes online.
func TestCreateVolumeContextEnds(t *testing.T) {
	f := newFixture(t)
	fp := newFaultPools(slowUnmaps(200 * time.Millisecond))
	e := f.openFault(t, fp)
	mustPool(t, e, "p", "fault://"+filepath.Join(f.dir, "p.img")+"?size=64MiB")
	spec := engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 64 << 20}

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, err := e.CreateVolume(short, spec)
	require.Less(t, time.Since(start), 150*time.Millisecond)
	require.ErrorIs(t, err, engine.ErrInterrupted)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "goes on in the background")
	v, err := e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateCreating, v.State)

	// Close stops the work after its step; Open resumes it.
	require.NoError(t, e.Close())
	e = f.openFault(t, fp)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	require.Equal(t, engine.StateCreating, quick(t, func() engine.Volume { v, _ := e.Volume("v"); return v }).State)
	v, made, err := e.CreateVolume(ctx, spec)
	require.NoError(t, err, "asking again waits for it")
	require.False(t, made)
	require.Equal(t, engine.StateOnline, v.State)
}

// After a crash in the middle of clearing a volume's space, Open resumes
// from the last checkpoint, and the volume shows nothing the pool held
// before: kill -9 is modelled by the state file as it was at the crash,
// and by old data in every block past its checkpoint.
func TestZeroingResumesAfterCrash(t *testing.T) {
	f := newFixture(t)
	const bs = 4096
	const size = 1<<30 + 256<<20 // a checkpoint (1 GiB) and more
	hold := fault.Rule{Ops: []bdev.Op{bdev.OpUnmap}, From: (1<<30 + 32<<20) / bs, To: size / bs, Hang: true}
	fp := newFaultPools()
	e := f.openFault(t, fp)
	img := filepath.Join(f.dir, "p.img")
	mustPool(t, e, "p", "fault://"+img+"?size=2GiB")
	remove := fp.dev("p").Inject(hold)

	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	_, _, err := e.CreateVolume(short, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: size})
	require.ErrorIs(t, err, engine.ErrInterrupted)
	for {
		v, err := e.Volume("v")
		require.NoError(t, err)
		if v.Progress.DoneBytes == 1<<30+32<<20 {
			break // held at the next unmap
		}
		time.Sleep(5 * time.Millisecond)
	}
	path := filepath.Join(f.dir, engine.StateFile)
	atCrash, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(atCrash), `"done_blocks": 262144`, "a checkpoint at 1 GiB")
	remove()
	fp.dev("p").Release()
	require.NoError(t, e.Close())

	// What the crash left: the state file then, and old data past the
	// checkpoint (the work was at most that far, as far as anyone knows).
	require.NoError(t, os.WriteFile(path, atCrash, 0o600))
	old := bytes.Repeat([]byte{0xa5}, bs)
	pf, err := os.OpenFile(img, os.O_WRONLY, 0)
	require.NoError(t, err)
	for _, off := range []int64{1<<30 + 20<<20, size - bs} {
		_, err := pf.WriteAt(old, off)
		require.NoError(t, err)
	}
	require.NoError(t, pf.Close())

	fp.rules = []fault.Rule{slowUnmaps(30 * time.Millisecond)}
	e = f.openFault(t, fp)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	v, err := e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateCreating, v.State)
	require.GreaterOrEqual(t, v.Progress.DoneBytes, uint64(1<<30), "resumed from its checkpoint")
	_, err = e.VolumeDevice("v")
	require.ErrorIs(t, err, engine.ErrConflict, "not exposed before its space is clear")

	waitState(t, e, "v", engine.StateOnline)
	dev, err := e.VolumeDevice("v")
	require.NoError(t, err)
	zero := make([]byte, bs)
	for _, off := range []uint64{1<<30 + 20<<20, size - bs} {
		require.Equal(t, zero, read(t, dev, f.g.Get(0), off/bs, bs), "old data at %d", off)
	}
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"work"`, "no work left")
}

// Deleting a volume still being created stops its work and waits for it:
// nothing writes into the space once it is free.
func TestDeleteWhileCreating(t *testing.T) {
	_, e, pool := faultEngine(t)
	remove := pool.Inject(fault.Rule{Ops: []bdev.Op{bdev.OpUnmap}, Hang: true})
	res := createAsync(ctx, e, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 64 << 20})
	waitState(t, e, "v", engine.StateCreating)
	for pool.Faults() == 0 {
		time.Sleep(time.Millisecond)
	}

	// Its work is held in an unmap: the delete waits, here until its ctx
	// ends, and the volume stays.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	err := e.DeleteVolume(short, "v")
	require.ErrorIs(t, err, engine.ErrInterrupted)
	require.ErrorContains(t, err, "not deleted")
	remove()
	pool.Release()
	r := <-res
	require.ErrorContains(t, r.err, "stopped for the volume's deletion", "the creator hears why")
	v, err := e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, v.State, "created only in part")
	require.Contains(t, v.Error, "create it again to resume")
	require.NoError(t, e.DeleteVolume(ctx, "v"))
	unmaps := pool.Stats().UnmapOps
	p, err := e.Pool("p")
	require.NoError(t, err)
	require.Equal(t, p.CapacityBytes, p.FreeBytes)
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, unmaps, pool.Stats().UnmapOps, "no unmap after the delete")

	// Slowed, not held: a delete waits for the step in flight.
	pool.Inject(slowUnmaps(100 * time.Millisecond))
	res = createAsync(ctx, e, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 64 << 20})
	waitState(t, e, "v", engine.StateCreating)
	require.NoError(t, e.DeleteVolume(ctx, "v"))
	// The creator wakes before or after the deletion is recorded.
	err = (<-res).err
	require.True(t, errors.Is(err, engine.ErrNotFound) || errors.Is(err, engine.ErrConflict), "%v", err)
	unmaps = pool.Stats().UnmapOps
	time.Sleep(150 * time.Millisecond)
	require.Equal(t, unmaps, pool.Stats().UnmapOps, "no unmap after the delete")
	require.Empty(t, e.Volumes())
}

// A volume growing stays in service at its old size, shows its progress,
// and has its new size once the new space is clear.
func TestResizeProgress(t *testing.T) {
	_, e, pool := faultEngine(t)
	mustVolume(t, e, "v", "p", 16<<20)
	dev, err := e.VolumeDevice("v")
	require.NoError(t, err)
	pool.Inject(slowUnmaps(200 * time.Millisecond))

	res := make(chan error, 1)
	go func() { _, err := e.ResizeVolume(ctx, "v", 64<<20); res <- err }()
	v := waitState(t, e, "v", engine.StateResizing)
	require.Equal(t, uint64(16<<20), v.SizeBytes, "hosts see the old size meanwhile")
	require.Equal(t, uint64(48<<20), v.Progress.TotalBytes)
	require.Equal(t, uint64(64<<20), v.Progress.TargetSizeBytes)
	require.Equal(t, uint64(16<<20), quick(t, func() bdev.Info { d, _ := e.VolumeDevice("v"); return d.Info() }).Size())
	_, err = e.ResizeVolume(ctx, "v", 32<<20)
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "is growing to 67108864 bytes")
	p, _ := e.Pool("p")
	require.Equal(t, uint64(0), p.FreeBytes, "the new space is taken at once")

	require.NoError(t, <-res)
	v, err = e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateOnline, v.State)
	require.Equal(t, uint64(64<<20), v.SizeBytes)
	require.Equal(t, uint64(64<<20), dev.Info().Size(), "the same device, grown")
}

// Work that fails on the device stops short, says so, and resumes when it
// is asked for again.
func TestFailedWorkResumes(t *testing.T) {
	_, e, pool := faultEngine(t)
	spec := engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 32 << 20}

	pool.Inject(fault.Rule{Ops: []bdev.Op{bdev.OpUnmap}, From: 16 << 20 / 4096, To: 32 << 20 / 4096, Fail: bdev.StatusWriteFault, Count: 1})
	_, _, err := e.CreateVolume(ctx, spec)
	require.ErrorIs(t, err, engine.ErrDevice)
	require.ErrorContains(t, err, "write fault")
	v, err := e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, v.State)
	require.Contains(t, v.Error, "create it again to resume")
	require.Equal(t, uint64(16<<20), v.Progress.DoneBytes)
	_, err = e.VolumeDevice("v")
	require.ErrorContains(t, err, "was not created")
	v, made, err := e.CreateVolume(ctx, spec)
	require.NoError(t, err)
	require.False(t, made)
	require.Equal(t, engine.StateOnline, v.State)

	pool.Inject(fault.Rule{Ops: []bdev.Op{bdev.OpUnmap}, Fail: bdev.StatusWriteFault, Count: 1})
	_, err = e.ResizeVolume(ctx, "v", 48<<20)
	require.ErrorIs(t, err, engine.ErrDevice)
	v, err = e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateOnline, v.State, "in service at its old size")
	require.Equal(t, uint64(32<<20), v.SizeBytes)
	require.Contains(t, v.Error, "resize it again to resume")
	_, err = e.ResizeVolume(ctx, "v", 64<<20)
	require.ErrorIs(t, err, engine.ErrConflict, "another size while one is owed")
	v, err = e.ResizeVolume(ctx, "v", 48<<20)
	require.NoError(t, err)
	require.Equal(t, uint64(48<<20), v.SizeBytes)
	require.Empty(t, v.Error)
	require.Nil(t, v.Progress)
}

// blockingExporter holds AddSubsystem until released.
type blockingExporter struct {
	*enginetest.Exporter
	entered, release chan struct{}
}

func (x *blockingExporter) AddSubsystem(ctx context.Context, spec engine.SubsystemSpec) error {
	x.entered <- struct{}{}
	select {
	case <-x.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	return x.Exporter.AddSubsystem(ctx, spec)
}

// The exporter is not called under the lock reads take: a slow export
// holds up no read and no unrelated mutation, and it gets the caller's
// context.
func TestSlowExportDoesNotBlockReads(t *testing.T) {
	f := newFixture(t)
	x := &blockingExporter{Exporter: f.x, entered: make(chan struct{}), release: make(chan struct{})}
	e, err := engine.Open(engine.Config{DataDir: f.dir, Reactors: f.g, SampleInterval: -1, Exporter: x})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)

	res := make(chan error, 1)
	go func() { _, _, err := e.CreateShare(ctx, shareSpec("v")); res <- err }()
	<-x.entered
	// Released in a second anyway: an engine that waits for the export
	// under its lock fails the checks below instead of deadlocking.
	release := sync.OnceFunc(func() { close(x.release) })
	time.AfterFunc(time.Second, release)
	quick(t, e.Shares)
	quick(t, e.Volumes)
	quick(t, e.Status)
	quick(t, func() engine.Volume { return mustVolume(t, e, "w", "p", 1<<20) })
	require.NoError(t, quick(t, func() error { _, err := e.ResizeVolume(ctx, "w", 2<<20); return err }))
	release()
	require.NoError(t, <-res)
	sh, err := e.Share("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateExported, sh.State)

	// The caller's context reaches the exporter.
	x.release = make(chan struct{})
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	go func() { <-x.entered }()
	_, _, err = e.CreateShare(short, shareSpec("w"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, engine.ErrExport)
	_, err = e.Share("w")
	require.ErrorIs(t, err, engine.ErrNotFound)
}
