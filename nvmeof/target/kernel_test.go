package target_test

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev/file"
	"github.com/strata-storage/strata/internal/qemu"
	"github.com/strata-storage/strata/nvmeof/target"
	"github.com/strata-storage/strata/reactor"
)

//go:embed testdata/kernel-initiator.sh
var kernelInitiatorScript string

// startFileTarget serves img as namespace 1 of testNQN on 127.0.0.1 at
// each of ports, with fixed identifiers, as a daemon restarted on the same
// state would.
func startFileTarget(t *testing.T, img string, ports ...int) func() {
	g, err := reactor.StartGroup(nil, reactor.Config{})
	require.NoError(t, err)
	dev, err := file.Open("vol0", file.Options{Path: img, Size: 96 << 20})
	require.NoError(t, err)
	tg := target.New(g, target.Config{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))})
	require.NoError(t, tg.AddSubsystem(target.SubsystemConfig{
		NQN: testNQN, Serial: "STRATAKRN1", AllowAnyHost: true,
		Namespaces: []target.Namespace{{ID: 1, Device: dev, UUID: [16]byte{0xaa, 1}, NGUID: [16]byte{0xbb, 2}, EUI64: [8]byte{0xcc, 3}}},
	}))
	for _, port := range ports {
		_, err = tg.Listen(fmt.Sprintf("127.0.0.1:%d", port))
		require.NoError(t, err)
	}
	return func() {
		tg.Close()
		require.NoError(t, dev.Close())
		g.Stop()
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestKernelInitiator runs Linux's own NVMe/TCP host (nvme-tcp and nvme-cli
// in a QEMU guest) against the target: discover, connect, identify, raw
// pattern I/O, ext4, disconnect and reconnect; then the target restarts on
// the same file and a second guest finds everything intact.
func TestKernelInitiator(t *testing.T) {
	share := t.TempDir()
	img := filepath.Join(t.TempDir(), "vol0.img")
	port, port2 := freePort(t), freePort(t)
	for _, phase := range []string{"first", "second"} {
		stop := startFileTarget(t, img, port, port2)
		script := fmt.Sprintf("export PORT=%d PORT2=%d NQN=%s PHASE=%s\n%s", port, port2, testNQN, phase, kernelInitiatorScript)
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		res, err := qemu.Run(ctx, qemu.Config{Script: script, ShareDir: share, Console: qemu.LineLogger(t.Logf), Timeout: 4 * time.Minute})
		cancel()
		stop()
		require.NoError(t, err, phase)
		require.Equal(t, 0, res.ExitCode, "guest script failed in phase %s", phase)
		require.Contains(t, res.Console, "@@KERNEL-INITIATOR-OK "+phase)
	}
}
