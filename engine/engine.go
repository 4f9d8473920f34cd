package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/lvol"
	"github.com/strata-storage/strata/bdev/malloc"
	"github.com/strata-storage/strata/bdev/null"
	"github.com/strata-storage/strata/bdev/nvmf"
	"github.com/strata-storage/strata/bdev/pcie"
	"github.com/strata-storage/strata/internal/atomicfile"
	"github.com/strata-storage/strata/reactor"
)

// DefaultSampleInterval is how often the engine samples I/O statistics for
// the rates in Status.
const DefaultSampleInterval = time.Second

// closeTimeout bounds each exporter call made while shutting down.
const closeTimeout = 10 * time.Second

// DefaultDevices are the device kinds a pool can be made of.
func DefaultDevices() map[string]bdev.Factory {
	return map[string]bdev.Factory{
		null.Scheme:   null.FromURI,
		malloc.Scheme: malloc.FromURI,
		file.Scheme:   file.FromURI,
		pcie.Scheme:   pcie.FromURI,
		nvmf.Scheme:   nvmf.FromURI,
	}
}

// Config configures Open.
type Config struct {
	// DataDir holds the state file and the lock; created if missing.
	DataDir string
	// Reactors run the engine's own I/O (zeroing new volume space); the
	// engine uses the first. Required.
	Reactors *reactor.Group
	// Devices are the URI schemes pools may use; DefaultDevices when nil.
	Devices map[string]bdev.Factory
	// Exporter publishes shares; nil means no NVMe-oF target: creating a
	// share fails with ErrTargetUnavailable.
	Exporter Exporter
	// SampleInterval is the period of the statistics sampler;
	// DefaultSampleInterval when zero, no sampler when negative (call
	// SampleStats yourself).
	SampleInterval time.Duration
	// ReconcileInterval is how often the engine retries what failed to
	// come up (pools, shares); DefaultReconcileInterval when zero, never
	// when negative.
	ReconcileInterval time.Duration
	Logger            *slog.Logger
}

// Engine holds pools, volumes, shares and hosts. Its methods are safe for
// concurrent use; mutations are serialized and each is on disk before it
// returns.
type Engine struct {
	cfg  Config
	log  *slog.Logger
	path string   // the state file
	lock *os.File // flock'ed for the engine's life
	reg  *bdev.Registry
	r    *reactor.Reactor // for the engine's own I/O

	stopSampler  chan struct{}
	samplerDone  chan struct{}
	closeSampler sync.Once

	stopReconcile chan struct{}
	reconcileDone chan struct{}
	// closing ends when Close begins: device opens on the engine's own
	// behalf give up.
	closing      context.Context
	beginClosing context.CancelFunc

	// shareMu serializes the mutations that call the exporter (shares)
	// or must not interleave with them (deleting a volume, closing), so
	// that the exporter is never called concurrently yet never under mu:
	// reads and other mutations do not wait behind it. Taken before mu.
	shareMu sync.Mutex
	// workers counts the volume workers running (see job).
	workers sync.WaitGroup
	// lvolMu serializes the changes of volume stores' volumes and
	// snapshots (lvol.go), which do device work outside mu. Taken after
	// shareMu, before mu.
	lvolMu sync.Mutex

	mu      sync.Mutex // guards everything below
	closed  bool
	st      *state
	opening map[string]string // pools whose device is being opened: their URI
	// making holds the names of volume store volumes and snapshots being
	// made outside mu (lvol.go): what each is.
	making  map[string]string
	pools   map[string]*livePool
	volumes map[string]*liveVolume
	shares  map[string]*liveShare
	reactorSamples
}

// livePool is a pool's runtime half: its device, or why it has none and
// when to try again.
type livePool struct {
	dev     bdev.Device // nil when faulted
	store   *lvol.Store // a FormatLvol pool's, open over dev
	err     error       // why it is faulted (set first, while the device is taken down)
	retry   retry
	unwatch func() // ends the subscription to dev's events
	// checking: CheckPool has the faulted pool's device open; reconcile
	// does not try it meanwhile.
	checking bool
}

// liveVolume is a volume's runtime half.
type liveVolume struct {
	kind volumeKind // nil for KindLvol: the store does what kinds do
	// dev shows the volume's ready blocks to hosts; nil when its pool is
	// faulted (err says why) or while the volume is being created.
	dev volumeDevice
	err error
	// job is the volume's device work, running or stopped short; nil when
	// it has none.
	job     *job
	samples [2]ioSample
}

// liveShare is a share's runtime half: whether the exporter has it, and
// when to offer it again if it refused.
type liveShare struct {
	exported bool
	err      error
	retry    retry
}

// Open opens the data directory, loads the state and brings up every
// pool, volume and share in it. A pool whose device fails to open is kept,
// faulted, with its volumes and shares. A corrupt or newer state file is an
// error: the engine never resets state by itself.
func Open(cfg Config) (*Engine, error) {
	if cfg.Reactors == nil || cfg.Reactors.Len() == 0 {
		return nil, errors.New("engine: no reactors")
	}
	if cfg.Devices == nil {
		cfg.Devices = DefaultDevices()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SampleInterval == 0 {
		cfg.SampleInterval = DefaultSampleInterval
	}
	if cfg.ReconcileInterval == 0 {
		cfg.ReconcileInterval = DefaultReconcileInterval
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil || cfg.DataDir == "" {
		return nil, fmt.Errorf("engine: data directory %q: %v", cfg.DataDir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("engine: data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	e := &Engine{
		cfg: cfg, log: cfg.Logger, path: filepath.Join(dir, StateFile), lock: lock,
		reg: bdev.NewRegistry(cfg.Devices), r: cfg.Reactors.Get(0),
		pools: map[string]*livePool{}, volumes: map[string]*liveVolume{}, shares: map[string]*liveShare{},
		opening: map[string]string{}, making: map[string]string{},
	}
	st, version, orig, err := loadState(e.path)
	if err != nil {
		lock.Close()
		return nil, err
	}
	e.st = st
	if version != StateVersion {
		if err := e.upgrade(version, orig); err != nil {
			lock.Close()
			return nil, err
		}
	}
	e.log.Info("state loaded", "file", e.path, "pools", len(e.st.pools), "volumes", len(e.st.volumes), "shares", len(e.st.shares))
	e.start()
	if cfg.SampleInterval > 0 {
		e.stopSampler, e.samplerDone = make(chan struct{}), make(chan struct{})
		go e.sampler(cfg.SampleInterval)
	}
	if cfg.ReconcileInterval > 0 {
		e.closing, e.beginClosing = context.WithCancel(context.Background())
		e.stopReconcile, e.reconcileDone = make(chan struct{}), make(chan struct{})
		go e.reconciler(cfg.ReconcileInterval)
	}
	return e, nil
}

// upgrade keeps the state file as an earlier version wrote it (beside it,
// StateFile.vN) and writes the migrated state in its place, before anything
// else runs: a downgrade can go back to the copy.
func (e *Engine) upgrade(from int, orig []byte) error {
	keep := fmt.Sprintf("%s.v%d", e.path, from)
	if err := atomicfile.WriteFile(keep, orig, 0o600); err != nil {
		return fmt.Errorf("engine: keep the version %d state file: %w", from, err)
	}
	if err := saveState(e.path, e.st); err != nil {
		return err
	}
	e.log.Info("state file upgraded", "file", e.path, "from_version", from, "to_version", StateVersion, "kept", keep)
	return nil
}

// lockDir takes an exclusive lock on the data directory so that two
// daemons never share one state file. The kernel drops it when the
// process dies, however it dies.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, "lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("engine: lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("engine: data directory %s is in use by another strata (%s is locked)", dir, path)
		}
		return nil, fmt.Errorf("engine: lock %s: %w", path, err)
	}
	return f, nil
}

// start brings up the loaded state: pools, then volumes, then shares.
func (e *Engine) start() {
	for _, name := range slices.Sorted(maps.Keys(e.st.pools)) {
		e.pools[name] = e.openPool(context.Background(), e.st.pools[name])
	}
	var work []string // volumes owed work, resumed once all is up
	for _, name := range slices.Sorted(maps.Keys(e.st.volumes)) {
		lv := &liveVolume{kind: kinds[e.st.volumes[name].Kind]}
		e.volumes[name] = lv
		if e.bringUpVolume(name) {
			work = append(work, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.st.pools)) {
		if e.st.pools[name].isLvol() {
			e.syncLvolVolumes(name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.st.shares)) {
		e.shares[name] = &liveShare{}
		if e.cfg.Exporter == nil {
			e.shares[name].err = errorf(ErrTargetUnavailable, "NVMe-oF target not available: this daemon runs no target")
			e.log.Warn("share not exported: no NVMe-oF target in this daemon", "share", name, "nqn", e.st.shares[name].NQN)
		}
	}
	e.exportShares(e.sharesToExport(time.Now()))
	// Last: the workers take e.mu, which Open does without.
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, name := range work {
		e.resumeWork(name)
	}
}

// bringUpVolume opens volume name's device on its pool, if the pool is
// online, and reports whether the volume is owed device work. Called
// with e.mu held (or before the engine is shared).
func (e *Engine) bringUpVolume(name string) (owed bool) {
	v, lv := e.st.volumes[name], e.volumes[name]
	p := e.pools[v.Pool]
	lv.err = nil
	if v.Kind == KindLvol {
		if p.store == nil {
			lv.err = fmt.Errorf("pool %s is faulted", v.Pool)
			return false
		}
		if lv.dev, lv.err = e.openLvolVolume(name, p); lv.err != nil {
			e.log.Error("volume faulted", "volume", name, "err", lv.err)
		}
		return false
	}
	online := lv.kind.blocks(v)
	if v.Work.Op != "" {
		online = v.Work.OnlineBlocks
	}
	switch {
	case p.err != nil:
		lv.err = fmt.Errorf("pool %s is faulted", v.Pool)
		return false
	case online > 0:
		if lv.dev, lv.err = lv.kind.open(p.dev, v, online); lv.err != nil {
			e.log.Error("volume faulted", "volume", name, "err", lv.err)
			return false
		}
	}
	return v.Work.Op != ""
}

// resumeWork starts the worker of a volume owed device work. Called with
// e.mu held.
func (e *Engine) resumeWork(name string) {
	v := e.st.volumes[name]
	e.log.Info("volume work resumed", "volume", name, "op", v.Work.Op, "done_blocks", v.Work.DoneBlocks)
	e.startJob(name, e.volumes[name], v, v.Work)
}

// sharesToExport lists the shares the exporter should have and has not,
// whose volume is up and whose retry is due. Called with e.mu held (or
// before the engine is shared).
func (e *Engine) sharesToExport(now time.Time) []shareRecord {
	if e.cfg.Exporter == nil {
		return nil
	}
	var out []shareRecord
	for _, name := range slices.Sorted(maps.Keys(e.st.shares)) {
		ls := e.shares[name]
		if ls.exported || ls.retry.at.After(now) {
			continue
		}
		lv := e.volumes[name]
		switch {
		case lv == nil: // a volume store's, its pool not up
			ls.err = fmt.Errorf("volume %s is not known: its pool %s is not online", name, e.st.shares[name].Pool)
			continue
		case lv.dev == nil:
			ls.err = fmt.Errorf("volume %s is faulted: %v", name, lv.err)
			continue
		}
		out = append(out, e.st.shares[name])
	}
	return out
}

// exportShares hands shares to the exporter, without e.mu (the exporter
// may wait on the network) and with shareMu held once the engine is
// shared, so that no share mutation interleaves.
func (e *Engine) exportShares(shares []shareRecord) {
	for _, sh := range shares {
		name := sh.Volume
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		err := e.cfg.Exporter.AddSubsystem(ctx, e.subsystemSpec(sh))
		cancel()
		e.mu.Lock()
		ls, cur := e.shares[name], e.st.shares[name]
		if ls == nil || e.closed || cur.NQN != sh.NQN {
			e.mu.Unlock()
			if err == nil { // deleted or closing meanwhile: take it back
				e.removeLate(sh)
			}
			continue
		}
		ls.exported, ls.err = err == nil, err
		if err == nil {
			ls.retry = retry{}
			e.log.Info("share exported", "share", name, "nqn", sh.NQN, "listeners", sh.Listeners)
		} else {
			ls.retry.failed(time.Now(), e.cfg.ReconcileInterval)
			e.log.Error("share not exported", "share", name, "nqn", sh.NQN, "err", err, "retry_in", ls.retry.wait)
		}
		e.mu.Unlock()
	}
}

// removeLate takes back a share exported after the engine let go of it.
func (e *Engine) removeLate(sh shareRecord) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if err := e.cfg.Exporter.RemoveSubsystem(ctx, sh.NQN); err != nil {
		e.log.Error("share exported late, and removing it failed", "share", sh.Volume, "nqn", sh.NQN, "err", err)
	}
}

// retry paces the attempts to bring back what failed to come up: from
// the reconcile interval between them, doubling to retryMax.
type retry struct {
	at   time.Time
	wait time.Duration
}

const retryMax = time.Minute

func (r *retry) failed(now time.Time, first time.Duration) {
	r.wait = min(max(2*r.wait, first), retryMax)
	r.at = now.Add(r.wait)
}

// DefaultReconcileInterval is how often the engine looks for what should
// be up and is not: pools whose device failed to open, shares the
// exporter refused.
const DefaultReconcileInterval = time.Second

// reconciler runs reconcile until Close.
func (e *Engine) reconciler(every time.Duration) {
	defer close(e.reconcileDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-e.stopReconcile:
			return
		case <-t.C:
			e.reconcile(time.Now())
		}
	}
}

// reconcile brings what the state holds and is not up closer to it: a
// pool whose device failed to open is tried again (its retry due), and
// on success its volumes come up, their work resumes and their shares
// are exported; a share the exporter refused is offered again. Devices
// open and the exporter is called outside e.mu.
func (e *Engine) reconcile(now time.Time) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	var due []poolRecord
	for _, name := range slices.Sorted(maps.Keys(e.pools)) {
		if lp := e.pools[name]; lp.dev == nil && !lp.checking && !lp.retry.at.After(now) {
			due = append(due, e.st.pools[name])
		}
	}
	e.mu.Unlock()
	for _, p := range due {
		lp := e.openPool(e.closing, p)
		e.mu.Lock()
		old, ok := e.pools[p.Name]
		if e.closed || !ok || old.dev != nil || e.st.pools[p.Name].URI != p.URI {
			// Closed, deleted or made again meanwhile.
			if lp.dev != nil {
				e.reg.Delete(p.Name)
			}
			e.mu.Unlock()
			continue
		}
		if lp.dev == nil {
			old.err = lp.err
			old.retry.failed(now, e.cfg.ReconcileInterval)
			e.mu.Unlock()
			continue
		}
		e.pools[p.Name] = lp
		if p.isLvol() {
			e.syncLvolVolumes(p.Name)
			e.mu.Unlock()
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(e.st.volumes)) {
			if v := e.st.volumes[name]; v.Pool == p.Name && e.volumes[name].job == nil && e.bringUpVolume(name) {
				e.resumeWork(name)
			}
		}
		e.mu.Unlock()
	}
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	e.mu.Lock()
	shares := e.sharesToExport(now)
	closed := e.closed
	e.mu.Unlock()
	if !closed {
		e.exportShares(shares)
	}
}

// openPool opens a pool's device and checks it still holds the pool,
// without e.mu.
func (e *Engine) openPool(ctx context.Context, p poolRecord) *livePool {
	dev, err := e.openDevice(ctx, p.Name, p.URI)
	if err == nil {
		in := dev.Info()
		if in.BlockSize != p.BlockSize || in.Blocks < p.Blocks {
			err = fmt.Errorf("device has %d blocks of %d bytes; the pool needs %d blocks of %d bytes", in.Blocks, in.BlockSize, p.Blocks, p.BlockSize)
			if derr := e.reg.Delete(p.Name); derr != nil {
				err = errors.Join(err, derr)
			}
			dev = nil
		}
	}
	var store *lvol.Store
	if err == nil && p.isLvol() {
		if store, err = lvol.Open(dev, e.r); err == nil && store.Pool() != bdev.UUID(p.UUID) {
			err = fmt.Errorf("the device holds volume store %s, not this pool's %s", store.Pool(), bdev.UUID(p.UUID))
			err = errors.Join(err, store.Close())
		}
		if err != nil {
			err = errors.Join(err, e.reg.Delete(p.Name))
		}
	}
	if err != nil {
		e.log.Error("pool faulted", "pool", p.Name, "uri", p.URI, "err", err)
		return &livePool{err: err}
	}
	e.log.Info("pool online", "pool", p.Name, "uri", p.URI, "capacity_bytes", p.Blocks*uint64(p.BlockSize))
	lp := e.watchPool(p.Name, dev)
	lp.store = store
	return lp
}

// watchPool makes the live half of a pool whose device is open, listening
// to the device's events.
func (e *Engine) watchPool(name string, dev bdev.Device) *livePool {
	lp := &livePool{dev: dev}
	lp.unwatch = dev.Subscribe(func(ev bdev.Event) {
		switch ev.Kind {
		case bdev.EventFaulted, bdev.EventRemoved:
			err := ev.Err
			if err == nil {
				err = errors.New("device removed")
			}
			// Not on the device's goroutine: taking the pool down waits
			// for the exporter and closes the device.
			go e.poolFaulted(name, lp, err)
		case bdev.EventResized:
			e.log.Info("pool device resized; the pool keeps its size", "pool", name, "device_blocks", ev.Info.Blocks)
		}
	})
	return lp
}

// poolFaulted takes down a pool whose device faulted while in use: its
// shares stop being exported, its volumes' work stops and their devices
// close, then the device; the pool is then faulted as if it had failed to
// open, and the reconciler tries it again.
func (e *Engine) poolFaulted(name string, lp *livePool, err error) {
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	e.mu.Lock()
	if e.closed || e.pools[name] != lp || lp.dev == nil || lp.err != nil {
		e.mu.Unlock()
		return
	}
	e.log.Error("pool faulted", "pool", name, "err", err)
	lp.err = err
	var shares []shareRecord
	var jobs []*job
	var vols []bdev.Device
	for _, vname := range slices.Sorted(maps.Keys(e.st.volumes)) {
		if e.st.volumes[vname].Pool != name {
			continue
		}
		lv := e.volumes[vname]
		if j := lv.job; j != nil && j.running() {
			j.cancel(err)
			jobs = append(jobs, j)
		}
		if ls := e.shares[vname]; ls != nil && ls.exported {
			ls.exported, ls.err = false, fmt.Errorf("pool %s is faulted: %v", name, err)
			shares = append(shares, e.st.shares[vname])
		}
		if lv.dev != nil {
			vols = append(vols, lv.dev)
			lv.dev = nil
		}
		lv.err = fmt.Errorf("pool %s is faulted: %v", name, err)
	}
	e.mu.Unlock()
	for _, j := range jobs {
		<-j.stopped
	}
	for _, sh := range shares {
		e.removeLate(sh)
	}
	for _, d := range vols {
		if err := d.Close(); err != nil {
			e.log.Error("volume device did not close", "pool", name, "err", err)
		}
	}
	lp.unwatch()
	e.mu.Lock()
	store := lp.store
	lp.store = nil
	e.mu.Unlock()
	if store != nil {
		if err := store.Close(); err != nil {
			e.log.Error("volume store did not close cleanly", "pool", name, "err", err)
		}
	}
	if err := e.reg.Delete(name); err != nil {
		e.log.Error("pool device did not close", "pool", name, "err", err)
	}
	e.mu.Lock()
	lp.dev = nil // the reconciler opens it again when it is due
	e.mu.Unlock()
}

// commit makes next the current state once it is on disk.
func (e *Engine) commit(next *state) error {
	if err := saveState(e.path, next); err != nil {
		return err
	}
	e.st = next
	return nil
}

// begin locks the engine for a mutation; it fails once the engine closes.
func (e *Engine) begin() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Close stops the volumes' device work and waits for it (Open resumes it),
// stops exporting shares, closes volumes and pools (flushing their
// devices), writes the state a last time and releases the data directory.
// Devices handed out by VolumeDevice must have no channel open.
func (e *Engine) Close() error {
	e.closeSampler.Do(func() {
		if e.stopSampler != nil {
			close(e.stopSampler)
			<-e.samplerDone
		}
		if e.stopReconcile != nil {
			e.beginClosing()
			close(e.stopReconcile)
			<-e.reconcileDone
		}
	})
	// No share mutation is half done (see shareMu).
	e.shareMu.Lock()
	defer e.shareMu.Unlock()
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	// Workers stop after the step in flight, recording how far they got;
	// the next Open resumes them.
	for _, lv := range e.volumes {
		if lv.job != nil && lv.job.running() {
			lv.job.cancel(ErrClosed)
		}
	}
	e.mu.Unlock()
	e.workers.Wait()
	e.mu.Lock()
	defer e.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(e.shares)) {
		if !e.shares[name].exported {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		err := e.cfg.Exporter.RemoveSubsystem(ctx, e.st.shares[name].NQN)
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("share %s: %w", name, err))
		}
		e.shares[name].exported = false
	}
	for _, name := range slices.Sorted(maps.Keys(e.volumes)) {
		if dev := e.volumes[name].dev; dev != nil {
			if err := dev.Close(); err != nil {
				errs = append(errs, fmt.Errorf("volume %s: %w", name, err))
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(e.pools)) {
		if lp := e.pools[name]; lp.store != nil {
			if err := lp.store.Close(); err != nil {
				errs = append(errs, fmt.Errorf("pool %s: %w", name, err))
			}
			lp.store = nil
		}
	}
	for _, name := range e.reg.Names() {
		if err := e.reg.Delete(name); err != nil {
			errs = append(errs, fmt.Errorf("pool %s: %w", name, err))
		}
	}
	if err := saveState(e.path, e.st); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, e.lock.Close())
	e.log.Info("engine closed", "pools", len(e.st.pools), "volumes", len(e.st.volumes), "shares", len(e.st.shares))
	return errors.Join(errs...)
}

// StatePath returns the state file's path.
func (e *Engine) StatePath() string { return e.path }

// Empty reports whether the engine holds no object at all.
func (e *Engine) Empty() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.st.empty()
}

// ExporterAvailable reports whether shares can be exported.
func (e *Engine) ExporterAvailable() bool { return e.cfg.Exporter != nil }
