package engine_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/engine"
	"github.com/strata-storage/strata/engine/enginetest"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

var ctx = context.Background()

type fixture struct {
	dir string
	g   *reactor.Group
	x   *enginetest.Exporter
}

func newFixture(t *testing.T) *fixture {
	g := bdevtest.Reactors(t)
	return &fixture{dir: t.TempDir(), g: g, x: enginetest.NewExporter(g.Get(0))}
}

// open opens an engine on the fixture's data directory, with the fake
// target unless noTarget; the test's cleanup closes it.
func (f *fixture) open(t *testing.T, noTarget bool) *engine.Engine {
	t.Helper()
	e, err := f.tryOpen(noTarget)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

func (f *fixture) tryOpen(noTarget bool) (*engine.Engine, error) {
	cfg := engine.Config{DataDir: f.dir, Reactors: f.g, SampleInterval: -1}
	if !noTarget {
		cfg.Exporter = f.x
	}
	return engine.Open(cfg)
}

func (f *fixture) img(name string) string { return "uring://" + filepath.Join(f.dir, name) }

// sizedPool makes pool name on a file of size bytes, and returns the
// file's path. No size in the URI: the device is the file as it is (with
// a size, opening it would grow the file back), so a test can shrink it.
func (f *fixture) sizedPool(t *testing.T, e *engine.Engine, name string, size int64) string {
	t.Helper()
	img := filepath.Join(f.dir, name+".img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, size))
	mustPool(t, e, name, f.img(name+".img"))
	return img
}

func mustPool(t *testing.T, e *engine.Engine, name, uri string) engine.Pool {
	t.Helper()
	p, created, err := e.CreatePool(ctx, engine.PoolSpec{Name: name, URI: uri})
	require.NoError(t, err)
	require.True(t, created)
	return p
}

func mustVolume(t *testing.T, e *engine.Engine, name, pool string, size uint64) engine.Volume {
	t.Helper()
	v, created, err := e.CreateVolume(ctx, engine.VolumeSpec{Name: name, Pool: pool, SizeBytes: size})
	require.NoError(t, err)
	require.True(t, created)
	return v
}

func TestPools(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	p := mustPool(t, e, "fast", "malloc:///?size=8MiB")
	require.Equal(t, engine.Pool{
		Name: "fast", URI: "malloc:///?size=8MiB", UUID: p.UUID, State: engine.StateOnline, BlockSize: 4096,
		CapacityBytes: 8 << 20, FreeBytes: 8 << 20, LargestFreeBytes: 8 << 20, Format: engine.FormatExtent,
	}, p)
	again, created, err := e.CreatePool(ctx, engine.PoolSpec{Name: "fast", URI: "malloc:///?size=8MiB"})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, p, again)
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "fast", URI: "malloc:///?size=16MiB"})
	require.ErrorIs(t, err, engine.ErrConflict)

	disk := mustPool(t, e, "disk", f.img("disk.img")+"?size=16MiB")
	require.Equal(t, uint64(16<<20), disk.CapacityBytes)
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "disk2", URI: f.img("./disk.img")})
	require.ErrorIs(t, err, engine.ErrConflict, "two pools on one file")
	require.ErrorContains(t, err, `pool "disk" already uses`)

	for _, tc := range []struct {
		spec engine.PoolSpec
		kind error
		msg  string
	}{
		{engine.PoolSpec{Name: "", URI: "null:///"}, engine.ErrInvalid, "invalid name"},
		{engine.PoolSpec{Name: "a/b", URI: "null:///"}, engine.ErrInvalid, "invalid name"},
		{engine.PoolSpec{Name: "x", URI: ""}, engine.ErrInvalid, "pool URI"},
		{engine.PoolSpec{Name: "x", URI: "tape:///dev/st0"}, engine.ErrInvalid, `unknown scheme "tape"`},
		{engine.PoolSpec{Name: "x", URI: "null:///?colour=red"}, engine.ErrInvalid, "unknown parameter"},
		{engine.PoolSpec{Name: "x", URI: "malloc:///"}, engine.ErrDevice, "needs a size"},
		{engine.PoolSpec{Name: "x", URI: f.img("no/such/dir.img") + "?size=1MiB"}, engine.ErrDevice, "no such file"},
	} {
		_, _, err := e.CreatePool(ctx, tc.spec)
		require.ErrorIs(t, err, tc.kind, "%+v", tc.spec)
		require.ErrorContains(t, err, tc.msg, "%+v", tc.spec)
	}
	require.Len(t, e.Pools(), 2, "failed creations leave nothing behind")

	mustVolume(t, e, "v", "disk", 1<<20)
	err = e.DeletePool(ctx, "disk")
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "holds 1 volumes (v)")
	require.NoError(t, e.DeleteVolume(ctx, "v"))
	require.NoError(t, e.DeletePool(ctx, "disk"))
	require.ErrorIs(t, e.DeletePool(ctx, "disk"), engine.ErrNotFound)
	_, err = e.Pool("disk")
	require.ErrorIs(t, err, engine.ErrNotFound)
	_, err = os.Stat(filepath.Join(f.dir, "disk.img"))
	require.NoError(t, err, "deleting a pool leaves its file")
}

func TestVolumesFirstFitAndResize(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	mustPool(t, e, "p", "malloc:///?size=10MiB")
	a := mustVolume(t, e, "a", "p", 2<<20)
	b := mustVolume(t, e, "b", "p", 3<<20)
	require.Equal(t, uint64(0), a.OffsetBytes)
	require.Equal(t, uint64(2<<20), b.OffsetBytes)
	require.Len(t, a.Serial, 20)
	require.NotEqual(t, a.Serial, b.Serial)
	require.NotEqual(t, a.UUID, b.UUID)
	require.Len(t, a.NGUID, 32)

	// Idempotent, conflicting, invalid.
	same, created, err := e.CreateVolume(ctx, engine.VolumeSpec{Name: "a", Pool: "p", SizeBytes: 2 << 20})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, a, same)
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "a", Pool: "p", SizeBytes: 1 << 20})
	require.ErrorIs(t, err, engine.ErrConflict)
	for _, tc := range []struct {
		spec engine.VolumeSpec
		kind error
		msg  string
	}{
		{engine.VolumeSpec{Name: "c", Pool: "p", SizeBytes: 0}, engine.ErrInvalid, "more than 0"},
		{engine.VolumeSpec{Name: "c", Pool: "p", SizeBytes: 4097}, engine.ErrInvalid, "not a multiple"},
		{engine.VolumeSpec{Name: "c", Pool: "p", SizeBytes: 11 << 20}, engine.ErrInvalid, "larger than pool"},
		{engine.VolumeSpec{Name: "c", Pool: "p", SizeBytes: 6 << 20}, engine.ErrNoSpace, "largest free extent: 5242880"},
		{engine.VolumeSpec{Name: "c", Pool: "nope", SizeBytes: 4096}, engine.ErrNotFound, `pool "nope"`},
		{engine.VolumeSpec{Name: "-c", Pool: "p", SizeBytes: 4096}, engine.ErrInvalid, "invalid name"},
	} {
		_, _, err := e.CreateVolume(ctx, tc.spec)
		require.ErrorIs(t, err, tc.kind, "%+v", tc.spec)
		require.ErrorContains(t, err, tc.msg, "%+v", tc.spec)
	}

	// First fit reuses the hole a left.
	require.NoError(t, e.DeleteVolume(ctx, "a"))
	c := mustVolume(t, e, "c", "p", 1<<20)
	require.Equal(t, uint64(0), c.OffsetBytes)
	pool, err := e.Pool("p")
	require.NoError(t, err)
	require.Equal(t, uint64(6<<20), pool.FreeBytes)
	require.Equal(t, uint64(5<<20), pool.LargestFreeBytes)

	// c grows in place into the 1 MiB before b, and no further.
	grown, err := e.ResizeVolume(ctx, "c", 2<<20)
	require.NoError(t, err)
	require.Equal(t, uint64(2<<20), grown.SizeBytes)
	require.Equal(t, c.UUID, grown.UUID)
	_, err = e.ResizeVolume(ctx, "c", 3<<20)
	require.ErrorIs(t, err, engine.ErrNoSpace)
	require.ErrorContains(t, err, `the space after it is used by volume "b"`)
	_, err = e.ResizeVolume(ctx, "b", 9<<20)
	require.ErrorContains(t, err, "only 5242880 bytes are free after it, up to the end of the pool")
	_, err = e.ResizeVolume(ctx, "c", 1<<20)
	require.ErrorIs(t, err, engine.ErrInvalid)
	require.ErrorContains(t, err, "shrinking")
	_, err = e.ResizeVolume(ctx, "c", 2<<20+512)
	require.ErrorIs(t, err, engine.ErrInvalid)
	same, err = e.ResizeVolume(ctx, "c", 2<<20)
	require.NoError(t, err, "the same size is a no-op")
	require.Equal(t, grown, same)
	_, err = e.ResizeVolume(ctx, "zz", 2<<20)
	require.ErrorIs(t, err, engine.ErrNotFound)
	big, err := e.ResizeVolume(ctx, "b", 8<<20)
	require.NoError(t, err)
	require.Equal(t, uint64(8<<20), big.SizeBytes)
	_, err = e.ResizeVolume(ctx, "b", 8<<20+4096)
	require.ErrorContains(t, err, `it ends at the end of pool "p"`)
	require.ErrorIs(t, e.DeleteVolume(ctx, "zz"), engine.ErrNotFound)
}

// Data a deleted volume leaves behind never shows in a new one, nor in the
// space a volume grows into.
func TestNewSpaceReadsZeroes(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	mustPool(t, e, "p", f.img("p.img")+"?size=4MiB")
	mustVolume(t, e, "old", "p", 1<<20)
	dev, err := e.VolumeDevice("old")
	require.NoError(t, err)
	r := f.g.Get(0)
	buf := bdevtest.Buffers(t, 1<<20)
	bdevtest.Fill(buf, 7)
	write(t, dev, r, 0, buf)
	require.NoError(t, e.DeleteVolume(ctx, "old"))

	mustVolume(t, e, "new", "p", 512<<10)
	dev, err = e.VolumeDevice("new")
	require.NoError(t, err)
	require.True(t, bytes.Equal(make([]byte, 512<<10), read(t, dev, r, 0, 512<<10)), "new volume shows old data")
	_, err = e.ResizeVolume(ctx, "new", 1<<20)
	require.NoError(t, err)
	dev, err = e.VolumeDevice("new")
	require.NoError(t, err)
	require.True(t, bytes.Equal(make([]byte, 1<<20), read(t, dev, r, 0, 1<<20)), "grown space shows old data")
}

func write(t *testing.T, dev bdev.Device, r *reactor.Reactor, lba uint64, buf []byte) {
	t.Helper()
	ch, err := bdev.Open(dev, r)
	require.NoError(t, err)
	c := &bdevtest.Client{Ch: ch}
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, lba, uint32(len(buf)/int(dev.Info().BlockSize)), buf))
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
}

func read(t *testing.T, dev bdev.Device, r *reactor.Reactor, lba uint64, n int) []byte {
	t.Helper()
	ch, err := bdev.Open(dev, r)
	require.NoError(t, err)
	buf := bdevtest.Buffers(t, n)
	c := &bdevtest.Client{Ch: ch}
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, lba, uint32(n/int(dev.Info().BlockSize)), buf))
	require.NoError(t, r.Call(func(*reactor.Reactor) error { return ch.Close() }))
	return bytes.Clone(buf)
}

func shareSpec(vol string) engine.ShareSpec {
	return engine.ShareSpec{Volume: vol, NQN: "nqn.2024-01.io.strata:" + vol, Listeners: []string{"127.0.0.1:4420"}, AllowAnyHost: true}
}

func TestShares(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	v := mustVolume(t, e, "v", "p", 1<<20)
	mustVolume(t, e, "w", "p", 1<<20)

	sh, created, err := e.CreateShare(ctx, engine.ShareSpec{
		Volume: "v", NQN: "nqn.2024-01.io.strata:v", Listeners: []string{"[::1]:4420", "127.0.0.1:4420"},
		Hosts: []string{"nqn.2024-01.io.example:h2", "nqn.2024-01.io.example:h1"},
	})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, engine.Share{
		Name: "v", Volume: "v", NQN: "nqn.2024-01.io.strata:v", Listeners: []string{"127.0.0.1:4420", "[::1]:4420"},
		Hosts: []string{"nqn.2024-01.io.example:h1", "nqn.2024-01.io.example:h2"}, Serial: v.Serial, NSID: 1,
		NamespaceUUID: v.UUID, NGUID: v.NGUID, State: engine.StateExported,
	}, sh)
	spec, ok := f.x.Subsystem("nqn.2024-01.io.strata:v")
	require.True(t, ok)
	require.Equal(t, v.Serial, spec.Serial)
	require.Equal(t, engine.Model, spec.Model)
	require.Equal(t, v.UUID, spec.Namespaces[0].UUID.String())
	require.Equal(t, uint32(engine.VolumeNSID), spec.Namespaces[0].NSID)
	dev, _ := e.VolumeDevice("v")
	require.Equal(t, dev, spec.Namespaces[0].Device)
	require.Equal(t, "127.0.0.1:4420", spec.Listeners[0].String())

	// Same spec in another order: the same share.
	again, created, err := e.CreateShare(ctx, engine.ShareSpec{
		Volume: "v", NQN: "nqn.2024-01.io.strata:v", Listeners: []string{"127.0.0.1:4420", "[::1]:4420"},
		Hosts: []string{"nqn.2024-01.io.example:h1", "nqn.2024-01.io.example:h2"},
	})
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, sh, again)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.ErrorIs(t, err, engine.ErrConflict)
	dup := shareSpec("w")
	dup.NQN = "nqn.2024-01.io.strata:v"
	_, _, err = e.CreateShare(ctx, dup)
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "is used by the share of volume \"v\"")

	f.x.SetSessions("nqn.2024-01.io.strata:v", 3, 1)
	sh, err = e.Share("v")
	require.NoError(t, err)
	require.Equal(t, 3, sh.Connections)
	require.Equal(t, 3, e.Status().Connections)

	err = e.DeleteVolume(ctx, "v")
	require.ErrorIs(t, err, engine.ErrConflict)
	require.ErrorContains(t, err, "remove the share first")

	// A shared volume grows in place: the target's device is the same one,
	// larger.
	_, err = e.ResizeVolume(ctx, "v", 1<<20) // no-op
	require.NoError(t, err)
	require.NoError(t, e.DeleteVolume(ctx, "w"))
	_, err = e.ResizeVolume(ctx, "v", 2<<20)
	require.NoError(t, err)
	spec, _ = f.x.Subsystem("nqn.2024-01.io.strata:v")
	require.Equal(t, uint64(2<<20), spec.Namespaces[0].Device.Info().Size())
	dev, _ = e.VolumeDevice("v")
	require.Equal(t, dev, spec.Namespaces[0].Device)

	require.NoError(t, e.DeleteShare(ctx, "v"))
	require.ErrorIs(t, e.DeleteShare(ctx, "v"), engine.ErrNotFound)
	require.Empty(t, f.x.NQNs())
	require.NoError(t, e.DeleteVolume(ctx, "v"))
	require.Equal(t, []string{"add nqn.2024-01.io.strata:v", "remove nqn.2024-01.io.strata:v"}, f.x.Calls())
}

func TestShareValidation(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	for _, tc := range []struct {
		edit func(*engine.ShareSpec)
		kind error
		msg  string
	}{
		{func(s *engine.ShareSpec) { s.Volume = "nope" }, engine.ErrNotFound, `volume "nope"`},
		{func(s *engine.ShareSpec) { s.NQN = "iqn.2024-01.com.example" }, engine.ErrInvalid, "subsystem NQN"},
		{func(s *engine.ShareSpec) { s.NQN = "nqn.2014-08.org.nvmexpress.discovery" }, engine.ErrInvalid, "discovery"},
		{func(s *engine.ShareSpec) { s.Listeners = nil }, engine.ErrInvalid, "0 listeners"},
		{func(s *engine.ShareSpec) { s.Listeners = []string{"localhost:4420"} }, engine.ErrInvalid, "want an IP address"},
		{func(s *engine.ShareSpec) { s.Listeners = []string{"127.0.0.1"} }, engine.ErrInvalid, "want an IP address"},
		{func(s *engine.ShareSpec) { s.Listeners = []string{"127.0.0.1:0"} }, engine.ErrInvalid, "port 0"},
		{func(s *engine.ShareSpec) { s.Listeners = []string{"127.0.0.1:99999"} }, engine.ErrInvalid, "want an IP address"},
		{func(s *engine.ShareSpec) { s.Listeners = []string{"127.0.0.1:1", "127.0.0.1:1"} }, engine.ErrInvalid, "twice"},
		{func(s *engine.ShareSpec) { s.Hosts = []string{"nqn.2024-01.io.example:h"} }, engine.ErrInvalid, "not both"},
		{func(s *engine.ShareSpec) { s.AllowAnyHost = false }, engine.ErrInvalid, "no host could connect"},
		{func(s *engine.ShareSpec) { s.AllowAnyHost, s.Hosts = false, []string{"bad"} }, engine.ErrInvalid, "host NQN"},
	} {
		spec := shareSpec("v")
		tc.edit(&spec)
		_, _, err := e.CreateShare(ctx, spec)
		require.ErrorIs(t, err, tc.kind, "%+v", spec)
		require.ErrorContains(t, err, tc.msg, "%+v", spec)
	}
	require.Empty(t, f.x.Calls(), "invalid shares never reach the target")

	// Target failures: classified, nothing recorded.
	f.x.FailNext(errors.New("boom"))
	_, _, err := e.CreateShare(ctx, shareSpec("v"))
	require.ErrorIs(t, err, engine.ErrExport)
	require.ErrorContains(t, err, "boom")
	f.x.FailNext(errors.Join(engine.ErrConflict, errors.New("address in use")))
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.ErrorIs(t, err, engine.ErrConflict)
	require.Empty(t, e.Shares())
}

func TestSharesWithoutTarget(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, true)
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	_, _, err := e.CreateShare(ctx, shareSpec("v"))
	require.ErrorIs(t, err, engine.ErrTargetUnavailable)
	require.ErrorContains(t, err, "NVMe-oF target not available")
	require.Empty(t, e.Shares())
	require.False(t, e.ExporterAvailable())
	_, _, err = e.CreateShare(ctx, engine.ShareSpec{Volume: "v", NQN: "bad"})
	require.ErrorIs(t, err, engine.ErrInvalid, "validation comes first")
}

func TestHosts(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	h, created, err := e.CreateHost(ctx, engine.HostSpec{Name: "web1", NQN: "nqn.2024-01.io.example:web1"})
	require.NoError(t, err)
	require.True(t, created)
	require.Equal(t, engine.Host{Name: "web1", NQN: "nqn.2024-01.io.example:web1", Shares: []string{}}, h)
	_, created, err = e.CreateHost(ctx, engine.HostSpec{Name: "web1", NQN: "nqn.2024-01.io.example:web1"})
	require.NoError(t, err)
	require.False(t, created)
	_, _, err = e.CreateHost(ctx, engine.HostSpec{Name: "web1", NQN: "nqn.2024-01.io.example:other"})
	require.ErrorIs(t, err, engine.ErrConflict)
	_, _, err = e.CreateHost(ctx, engine.HostSpec{Name: "web2", NQN: "nqn.2024-01.io.example:web1"})
	require.ErrorIs(t, err, engine.ErrConflict)
	_, _, err = e.CreateHost(ctx, engine.HostSpec{Name: "web2", NQN: "web2"})
	require.ErrorIs(t, err, engine.ErrInvalid)

	mustPool(t, e, "p", "malloc:///?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	spec := shareSpec("v")
	spec.AllowAnyHost, spec.Hosts = false, []string{"nqn.2024-01.io.example:web1"}
	_, _, err = e.CreateShare(ctx, spec)
	require.NoError(t, err)
	h, err = e.Host("web1")
	require.NoError(t, err)
	require.Equal(t, []string{"v"}, h.Shares)
	require.ErrorIs(t, e.DeleteHost(ctx, "web1"), engine.ErrConflict)
	require.NoError(t, e.DeleteShare(ctx, "v"))
	require.NoError(t, e.DeleteHost(ctx, "web1"))
	require.ErrorIs(t, e.DeleteHost(ctx, "web1"), engine.ErrNotFound)
	require.Empty(t, e.Hosts())
}

// Everything comes back after a restart with the same identities, and
// shares are exported again.
func TestRestartRestoresEverything(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	mustPool(t, e, "p", f.img("p.img")+"?size=8MiB")
	v := mustVolume(t, e, "v", "p", 1<<20)
	w := mustVolume(t, e, "w", "p", 2<<20)
	sh, _, err := e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
	_, _, err = e.CreateHost(ctx, engine.HostSpec{Name: "h", NQN: "nqn.2024-01.io.example:h"})
	require.NoError(t, err)
	dev, _ := e.VolumeDevice("w")
	buf := bdevtest.Buffers(t, 64<<10)
	bdevtest.Fill(buf, 3)
	write(t, dev, f.g.Get(0), 5, buf)
	pools, vols, shares, hosts := e.Pools(), e.Volumes(), e.Shares(), e.Hosts()
	require.NoError(t, e.Close())
	require.Empty(t, f.x.NQNs(), "close stops exporting")

	e = f.open(t, false)
	require.Equal(t, pools, e.Pools())
	require.Equal(t, vols, e.Volumes())
	require.Equal(t, shares, e.Shares())
	require.Equal(t, hosts, e.Hosts())
	require.Equal(t, []string{sh.NQN}, f.x.NQNs())
	spec, _ := f.x.Subsystem(sh.NQN)
	require.Equal(t, v.Serial, spec.Serial)
	require.Equal(t, v.UUID, spec.Namespaces[0].UUID.String())
	dev, _ = e.VolumeDevice("w")
	require.Equal(t, w.UUID, dev.Info().UUID.String())
	require.True(t, bytes.Equal(buf, read(t, dev, f.g.Get(0), 5, 64<<10)), "volume data survives")
}

func TestFaultedPoolIsKept(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	img := f.sizedPool(t, e, "p", 8<<20)
	mustPool(t, e, "q", f.img("q.img")+"?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
	require.NoError(t, e.Close())

	// p's file shrinks below what the pool records: it cannot be trusted.
	require.NoError(t, os.Truncate(img, 4<<20))
	e, err = f.tryOpen(false)
	require.NoError(t, err)
	p, err := e.Pool("p")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, p.State)
	require.Contains(t, p.Error, "device has 1024 blocks of 4096 bytes; the pool needs 2048")
	v, err := e.Volume("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, v.State)
	require.Contains(t, v.Error, "pool p is faulted")
	sh, err := e.Share("v")
	require.NoError(t, err)
	require.Equal(t, engine.StateFaulted, sh.State)
	require.Empty(t, f.x.NQNs())
	q, _ := e.Pool("q")
	require.Equal(t, engine.StateOnline, q.State, "other pools are unaffected")
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "x", Pool: "p", SizeBytes: 4096})
	require.ErrorIs(t, err, engine.ErrConflict)
	_, err = e.VolumeDevice("v")
	require.ErrorIs(t, err, engine.ErrConflict)
	_, err = e.ResizeVolume(ctx, "v", 2<<20)
	require.ErrorIs(t, err, engine.ErrConflict)
	require.NoError(t, e.Close())

	// Kept in the state: once the file is whole again, all is back.
	require.NoError(t, os.Truncate(img, 8<<20))
	e = f.open(t, false)
	p, _ = e.Pool("p")
	require.Equal(t, engine.StateOnline, p.State)
	sh, _ = e.Share("v")
	require.Equal(t, engine.StateExported, sh.State)
}

func TestMissingDeviceFaultsPool(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(true)
	require.NoError(t, err)
	img := f.sizedPool(t, e, "p", 4<<20) // no size: the file must exist
	mustVolume(t, e, "v", "p", 1<<20)
	require.NoError(t, e.Close())
	require.NoError(t, os.Remove(img))

	e = f.open(t, true)
	p, _ := e.Pool("p")
	require.Equal(t, engine.StateFaulted, p.State)
	require.Contains(t, p.Error, "no such file")
	// A faulted pool's volumes can still be deleted, then the pool.
	require.NoError(t, e.DeleteVolume(ctx, "v"))
	require.NoError(t, e.DeletePool(ctx, "p"))
	require.Empty(t, e.Pools())
}

func TestCorruptOrFutureStateRefusesToStart(t *testing.T) {
	f := newFixture(t)
	path := filepath.Join(f.dir, engine.StateFile)
	require.NoError(t, os.WriteFile(path, []byte(`{"version":1,"pools":[`), 0o600))
	_, err := f.tryOpen(false)
	require.ErrorIs(t, err, engine.ErrCorruptState)
	require.ErrorContains(t, err, path)
	require.NoError(t, os.WriteFile(path, []byte(`{"version":7}`), 0o600))
	_, err = f.tryOpen(false)
	require.ErrorIs(t, err, engine.ErrFutureState)
	require.ErrorContains(t, err, path)
	b, _ := os.ReadFile(path)
	require.Equal(t, `{"version":7}`, string(b), "the file is left as it was")
}

func TestDataDirIsLocked(t *testing.T) {
	f := newFixture(t)
	f.open(t, true)
	_, err := f.tryOpen(true)
	require.ErrorContains(t, err, "in use by another strata")
}

// A mutation that cannot be written is not applied.
func TestUnwritableStateIsNotAcknowledged(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, false)
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	path := filepath.Join(f.dir, engine.StateFile)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	// A directory where the state file was: the atomic rename fails.
	require.NoError(t, os.Rename(path, path+".saved"))
	require.NoError(t, os.Mkdir(path, 0o700))

	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "q", URI: "null:///"})
	require.ErrorContains(t, err, "write state file")
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "v", Pool: "p", SizeBytes: 1 << 20})
	require.Error(t, err)
	_, _, err = e.CreateHost(ctx, engine.HostSpec{Name: "h", NQN: "nqn.2024-01.io.example:h"})
	require.Error(t, err)
	require.Error(t, e.DeletePool(ctx, "p"))
	require.Len(t, e.Pools(), 1)
	require.Empty(t, e.Volumes())
	require.Empty(t, e.Hosts())
	p, _ := e.Pool("p")
	require.Equal(t, uint64(8<<20), p.FreeBytes)

	require.NoError(t, os.Remove(path))
	require.NoError(t, os.Rename(path+".saved", path))
	_, created, err := e.CreatePool(ctx, engine.PoolSpec{Name: "q", URI: "null:///"})
	require.NoError(t, err, "the failed attempt left no device behind")
	require.True(t, created)
	after, _ := os.ReadFile(path)
	require.NotEqual(t, before, after)
}

func TestStatusRates(t *testing.T) {
	f := newFixture(t)
	e := f.open(t, true)
	mustPool(t, e, "p", "malloc:///?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	dev, _ := e.VolumeDevice("v")
	c := bdevtest.Open(t, dev, f.g.Get(0))
	buf := bdevtest.Buffers(t, 8192)
	t0 := time.Unix(1000, 0)
	e.SampleStats(t0)
	for range 10 {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, 0, 2, buf))
	}
	for range 4 {
		require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, 0, 1, buf[:4096]))
	}
	e.SampleStats(t0.Add(2 * time.Second))
	st := e.Status()
	require.Len(t, st.Volumes, 1)
	vs := st.Volumes[0]
	require.InDelta(t, 5.0, vs.WriteIOPS, 1e-9)
	require.InDelta(t, 2.0, vs.ReadIOPS, 1e-9)
	require.InDelta(t, 10*8192/2.0, vs.WriteBytesPerSec, 1e-9)
	require.InDelta(t, 4*4096/2.0, vs.ReadBytesPerSec, 1e-9)
	require.Equal(t, uint64(10), vs.IO.WriteOps)
	require.Equal(t, uint64(4), vs.IO.ReadOps)
	require.Len(t, st.Reactors, f.g.Len())
	require.Greater(t, st.Reactors[0].BusyNs+st.Reactors[0].IdleNs, uint64(0))
	require.Len(t, st.Pools, 1)
	require.False(t, st.TargetAvailable)
}

func TestClosedEngineRefusesMutations(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(true)
	require.NoError(t, err)
	require.NoError(t, e.Close())
	require.NoError(t, e.Close(), "close twice")
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "p", URI: "null:///"})
	require.ErrorIs(t, err, engine.ErrClosed)
}

// A data directory written by version 1 of the state file (a real one,
// from that release: testdata/state-v1.json) opens with every object as
// it was, keeps the old file beside the new one, and reopens as the new
// version.
func TestOpenUpgradesVersion1State(t *testing.T) {
	f := newFixture(t)
	pool := filepath.Join(f.dir, "pool.img")
	img, err := os.Create(pool)
	require.NoError(t, err)
	require.NoError(t, img.Truncate(1<<30))
	_, err = img.WriteAt([]byte("vol0's first block"), 0)
	require.NoError(t, err)
	require.NoError(t, img.Close())
	v1, err := os.ReadFile("testdata/state-v1.json")
	require.NoError(t, err)
	v1 = bytes.ReplaceAll(v1, []byte("$POOL"), []byte(pool))
	path := filepath.Join(f.dir, engine.StateFile)
	require.NoError(t, os.WriteFile(path, v1, 0o600))

	check := func(e *engine.Engine) {
		t.Helper()
		p, err := e.Pool("dev")
		require.NoError(t, err)
		require.Equal(t, engine.StateOnline, p.State)
		require.Equal(t, "5e9c233a-083a-4e15-9d74-215e1dbc87da", p.UUID)
		vols := e.Volumes()
		require.Len(t, vols, 2)
		require.Equal(t, "gap", vols[0].Name)
		require.Equal(t, uint64(133120*4096), vols[0].OffsetBytes)
		require.Equal(t, "vol0", vols[1].Name)
		require.Equal(t, "74136b1e-efa5-47d2-b690-09d7c1b96473", vols[1].UUID)
		require.Equal(t, "b425cd7d330f43ac96c37de7d1eb4b88", vols[1].NGUID)
		require.Equal(t, "88cd49b80bd35f86a4fe", vols[1].Serial)
		require.Equal(t, uint64(512<<20), vols[1].SizeBytes)
		require.Equal(t, engine.StateOnline, vols[1].State)
		sh, err := e.Share("vol0")
		require.NoError(t, err)
		require.Equal(t, "nqn.2024-01.io.strata:dev", sh.NQN)
		h, err := e.Host("app")
		require.NoError(t, err)
		require.Equal(t, "nqn.2024-01.io.example:app", h.NQN)
		// The volume's data is where it was: migration touched no device.
		dev, err := e.VolumeDevice("vol0")
		require.NoError(t, err)
		require.Equal(t, "vol0's first block", string(read(t, dev, f.g.Get(0), 0, 4096)[:18]))
	}

	e, err := f.tryOpen(false)
	require.NoError(t, err)
	check(e)
	kept, err := os.ReadFile(path + ".v1")
	require.NoError(t, err)
	require.Equal(t, v1, kept, "the version 1 file is kept as it was")
	now, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Contains(t, string(now), fmt.Sprintf(`"version": %d`, engine.StateVersion))
	require.Contains(t, string(now), `"kind": "extent"`)
	require.NoError(t, e.Close())

	e = f.open(t, false)
	check(e)
	again, err := os.ReadFile(path)
	require.NoError(t, err)
	require.Equal(t, now, again, "a current file is not rewritten on open")
}

// A data directory the previous release wrote (state version 2: an
// extent pool with a volume grown after a deleted one, a share, a host;
// testdata/state-v2.json as that release's daemon left it) keeps working:
// the pool opens as a legacy extent pool with its volumes where they
// were, and a volume store pool works beside it, across a restart.
func TestOpenUpgradesVersion2State(t *testing.T) {
	f := newFixture(t)
	pool := filepath.Join(f.dir, "pool.img")
	img, err := os.Create(pool)
	require.NoError(t, err)
	require.NoError(t, img.Truncate(1<<30))
	_, err = img.WriteAt([]byte("vol1's first block"), 133120*4096)
	require.NoError(t, err)
	require.NoError(t, img.Close())
	v2, err := os.ReadFile("testdata/state-v2.json")
	require.NoError(t, err)
	v2 = bytes.ReplaceAll(v2, []byte("$POOL"), []byte(pool))
	path := filepath.Join(f.dir, engine.StateFile)
	require.NoError(t, os.WriteFile(path, v2, 0o600))

	check := func(e *engine.Engine) {
		t.Helper()
		p, err := e.Pool("dev")
		require.NoError(t, err)
		require.Equal(t, engine.StateOnline, p.State)
		require.Equal(t, engine.FormatExtent, p.Format)
		require.Equal(t, "9fb8065e-8276-4876-90a3-185eb8b241d7", p.UUID)
		v, err := e.Volume("vol1")
		require.NoError(t, err)
		require.Equal(t, "4e5f1729-6fbe-436d-9d86-0e253bab4b2d", v.UUID)
		require.Equal(t, uint64(96<<20), v.SizeBytes)
		require.Equal(t, uint64(133120*4096), v.OffsetBytes)
		sh, err := e.Share("vol0")
		require.NoError(t, err)
		require.Equal(t, []string{"nqn.2024-01.io.example:app"}, sh.Hosts)
		dev, err := e.VolumeDevice("vol1")
		require.NoError(t, err)
		require.Equal(t, "vol1's first block", string(read(t, dev, f.g.Get(0), 0, 4096)[:18]))
	}
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	check(e)
	kept, err := os.ReadFile(path + ".v2")
	require.NoError(t, err)
	require.Equal(t, v2, kept, "the version 2 file is kept as it was")

	// A volume store beside the legacy pool.
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "s", URI: f.img("s.img?size=64MiB"), Format: engine.FormatLvol})
	require.NoError(t, err)
	_, _, err = e.CreateVolume(ctx, engine.VolumeSpec{Name: "thin", Pool: "s", SizeBytes: 1 << 30, Thin: true})
	require.NoError(t, err)
	mustVolume(t, e, "vol2", "dev", 16<<20)
	require.NoError(t, e.Close())

	e = f.open(t, false)
	check(e)
	vols := e.Volumes()
	require.Len(t, vols, 4)
	th, err := e.Volume("thin")
	require.NoError(t, err)
	require.True(t, th.Thin)
	require.Equal(t, engine.StateOnline, th.State)
}

// openReconciling opens an engine that retries what failed to come up
// every few milliseconds.
func (f *fixture) openReconciling(t *testing.T) *engine.Engine {
	t.Helper()
	e, err := engine.Open(engine.Config{DataDir: f.dir, Reactors: f.g, SampleInterval: -1, Exporter: f.x, ReconcileInterval: 5 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	return e
}

// A pool whose device failed to open is tried again while the engine
// runs: once the device is whole, the pool, its volume (data intact) and
// the volume's share are back, with no restart.
func TestFaultedPoolComesBack(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	img := f.sizedPool(t, e, "p", 8<<20)
	mustVolume(t, e, "v", "p", 1<<20)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
	dev, err := e.VolumeDevice("v")
	require.NoError(t, err)
	data := bytes.Repeat([]byte{0x6b}, 4096)
	write(t, dev, f.g.Get(0), 3, data)
	require.NoError(t, e.Close())

	require.NoError(t, os.Truncate(img, 4<<20)) // smaller than the pool: faulted
	e = f.openReconciling(t)
	p, _ := e.Pool("p")
	require.Equal(t, engine.StateFaulted, p.State)
	time.Sleep(50 * time.Millisecond) // retries, failing
	p, _ = e.Pool("p")
	require.Equal(t, engine.StateFaulted, p.State)

	require.NoError(t, os.Truncate(img, 8<<20))
	require.Eventually(t, func() bool {
		sh, err := e.Share("v")
		return err == nil && sh.State == engine.StateExported
	}, 10*time.Second, 5*time.Millisecond, "the share comes back with its pool")
	p, _ = e.Pool("p")
	require.Equal(t, engine.StateOnline, p.State)
	v, _ := e.Volume("v")
	require.Equal(t, engine.StateOnline, v.State)
	dev, err = e.VolumeDevice("v")
	require.NoError(t, err)
	require.Equal(t, data, read(t, dev, f.g.Get(0), 3, len(data)))
	require.Equal(t, []string{shareSpec("v").NQN}, f.x.NQNs())
}

// A share the exporter refused at start is offered again until it takes.
func TestRefusedShareIsOfferedAgain(t *testing.T) {
	f := newFixture(t)
	e, err := f.tryOpen(false)
	require.NoError(t, err)
	mustPool(t, e, "p", f.img("p.img")+"?size=8MiB")
	mustVolume(t, e, "v", "p", 1<<20)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
	require.NoError(t, e.Close())

	f.x.FailNext(errors.New("address in use"))
	e = f.openReconciling(t)
	require.Eventually(t, func() bool {
		sh, err := e.Share("v")
		return err == nil && sh.State == engine.StateExported
	}, 10*time.Second, 5*time.Millisecond)
	require.Equal(t, []string{shareSpec("v").NQN}, f.x.NQNs())
}

// A pool's device that takes its time to open (a remote target that does
// not answer) holds neither reads nor other mutations, and a caller that
// stops waiting gets ErrInterrupted; the device, when it opens at last,
// is closed again and the name is free.
func TestCreatePoolOpensOutsideTheLock(t *testing.T) {
	f := newFixture(t)
	release := make(chan struct{})
	opened := make(chan bdev.Device, 1)
	devs := engine.DefaultDevices()
	devs["slow"] = func(name string, u *url.URL) (bdev.Device, error) {
		<-release
		d, err := malloc.New(name, 8<<20, 512)
		opened <- d
		return d, err
	}
	e, err := engine.Open(engine.Config{DataDir: f.dir, Reactors: f.g, SampleInterval: -1, Devices: devs})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, _, err := e.CreatePool(short, engine.PoolSpec{Name: "r", URI: "slow:///"})
		done <- err
	}()
	require.ErrorIs(t, <-done, engine.ErrInterrupted)
	_, _, err = e.CreatePool(ctx, engine.PoolSpec{Name: "r", URI: "slow:///"})
	require.ErrorIs(t, err, engine.ErrConflict, "still being opened")
	mustPool(t, e, "m", "malloc:///?size=8MiB") // the engine is not held
	require.Len(t, e.Pools(), 1)

	close(release)
	<-opened
	require.Eventually(t, func() bool {
		_, _, err := e.CreatePool(ctx, engine.PoolSpec{Name: "r", URI: "malloc:///?size=8MiB"})
		return err == nil
	}, 5*time.Second, time.Millisecond, "the name is free once the late device is closed")
}

// A pool on a remote namespace whose target goes away for longer than
// the device's loss timeout faults while in use: its share stops being
// exported and its volume goes faulted. Once the target is back, the
// reconciler opens the pool again: volume, data and share return.
func TestRemotePoolFaultsAndComesBack(t *testing.T) {
	f := newFixture(t)
	remote, err := malloc.New("remote", 16<<20, 512)
	require.NoError(t, err)
	t.Cleanup(func() { remote.Close() })
	const sub = "nqn.2024-01.io.strata:remote-pool"
	serveRemote := func(addr string) (*target.Target, string) {
		tg := target.New(f.g, target.Config{})
		require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
			NQN: sub, Serial: "R1", AllowAnyHost: true, Namespaces: []target.Namespace{{ID: 1, Device: remote}},
		}))
		a, err := tg.Listen(addr)
		require.NoError(t, err)
		t.Cleanup(func() { tg.Close() })
		return tg, a.String()
	}
	tg, addr := serveRemote("127.0.0.1:0")
	e := f.openReconciling(t)
	mustPool(t, e, "r", "nvmf://"+addr+"/"+sub+"?loss=200ms&timeout=1s")
	mustVolume(t, e, "v", "r", 1<<20)
	_, _, err = e.CreateShare(ctx, shareSpec("v"))
	require.NoError(t, err)
	dev, err := e.VolumeDevice("v")
	require.NoError(t, err)
	data := bytes.Repeat([]byte{0x3c}, 4096)
	write(t, dev, f.g.Get(0), 5, data)

	require.NoError(t, tg.Close())
	require.Eventually(t, func() bool {
		p, err := e.Pool("r")
		return err == nil && p.State == engine.StateFaulted
	}, 10*time.Second, 5*time.Millisecond, "the pool faults after the loss timeout")
	require.Eventually(t, func() bool { return len(f.x.NQNs()) == 0 }, 10*time.Second, 5*time.Millisecond, "its share is no longer exported")
	v, _ := e.Volume("v")
	require.Equal(t, engine.StateFaulted, v.State)
	p, _ := e.Pool("r")
	require.Contains(t, p.Error, "unreachable")

	serveRemote(addr)
	require.Eventually(t, func() bool {
		sh, err := e.Share("v")
		return err == nil && sh.State == engine.StateExported
	}, 20*time.Second, 5*time.Millisecond, "the share comes back with its pool")
	dev, err = e.VolumeDevice("v")
	require.NoError(t, err)
	require.Equal(t, data, read(t, dev, f.g.Get(0), 5, len(data)))
}
