package target_test

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/bdev/lvol"
	"github.com/strata-storage/strata/internal/qemu"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

//go:embed testdata/lvol-kernel.sh
var lvolKernelScript string

// TestKernelInitiatorOnThinVolume runs Linux's NVMe/TCP host (in a QEMU
// guest) on a thin volume of a volume store: the guest writes, a
// snapshot is taken while it writes, a clone of the snapshot is served
// as a second subsystem, and the guest checks the clone holds what was
// acknowledged before the snapshot and none of what it wrote after.
func TestKernelInitiatorOnThinVolume(t *testing.T) {
	share := t.TempDir()
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	defer g.Stop()
	pool, err := file.Open("pool", file.Options{Path: filepath.Join(t.TempDir(), "pool.img"), Size: 128 << 20})
	require.NoError(t, err)
	defer pool.Close()
	s, err := lvol.Create(pool, g.Get(0), lvol.CreateOptions{})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.CreateVolume(lvol.VolumeSpec{Name: "vol", Size: 64 << 20, Thin: true})
	require.NoError(t, err)
	vol, err := s.OpenVolume("vol")
	require.NoError(t, err)
	defer vol.Close()

	tg := target.New(g, target.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	defer tg.Close()
	const cloneNQN = testNQN + "-clone"
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
		NQN: testNQN, Serial: "STRATALVOL1", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: vol, UUID: [16]byte{0xaa, 1}, NGUID: [16]byte{0xbb, 2}}},
	}))
	port := freePort(t)
	_, err = tg.Listen(fmt.Sprintf("127.0.0.1:%d", port))
	require.NoError(t, err)

	// The host's half: a snapshot when the guest asks, while it writes.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var clone *lvol.Volume
	snapped := make(chan error, 1)
	go func() {
		snapped <- func() error {
			for {
				if _, err := os.Stat(filepath.Join(share, "snap-now")); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(20 * time.Millisecond):
				}
			}
			_, paused, err := s.Snapshot(ctx, "vol", "snap")
			if err != nil {
				return err
			}
			t.Logf("snapshot taken under the guest's writes: I/O paused %v", paused)
			if _, err := s.Clone("snap", lvol.VolumeSpec{Name: "clone"}); err != nil {
				return err
			}
			if clone, err = s.OpenVolume("clone"); err != nil {
				return err
			}
			if err := tg.AddSubsystem(target.SubsystemConfig{
				NQN: cloneNQN, Serial: "STRATALVOL2", AllowAnyHost: true,
				Namespaces: []target.Namespace{{ID: 1, Device: clone, UUID: [16]byte{0xaa, 3}, NGUID: [16]byte{0xbb, 4}}},
			}); err != nil {
				return err
			}
			return os.WriteFile(filepath.Join(share, "snap-done"), nil, 0o644)
		}()
	}()

	script := fmt.Sprintf("export PORT=%d NQN=%s CLONE_NQN=%s\n%s", port, testNQN, cloneNQN, lvolKernelScript)
	res, err := qemu.Run(ctx, qemu.Config{Script: script, ShareDir: share, Console: qemu.LineLogger(t.Logf), Timeout: 5 * time.Minute})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "guest script failed")
	require.Contains(t, res.Console, "@@LVOL-KERNEL-OK")
	require.NoError(t, <-snapped)

	tg.Close()
	require.NoError(t, clone.Close())
	require.Empty(t, s.Check())
	vi, err := s.Volume("vol")
	require.NoError(t, err)
	// 8 MiB before, 16 MiB during: thin, the volume allocated no more
	// than it was written (the overwrite after the snapshot copied).
	require.LessOrEqual(t, vi.Allocated, uint64(24<<20))
}
