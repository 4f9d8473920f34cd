package pcie_test

import (
	"bytes"
	"context"
	_ "embed"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/internal/qemu"
)

//go:embed testdata/vfio-guest.sh
var vfioGuestScript string

// The driver against a real controller model: QEMU's emulated NVMe behind
// an emulated Intel IOMMU, in a guest whose kernel has VFIO (this host's
// has none). The guest binds the controller to vfio-pci, runs the bdev
// conformance suite, a controller reset with channels on two reactors
// recovering, and a split 1 MiB write through VFIO, and unbinds it;
// then strata serve takes it as a pcie:// pool and shares a volume over
// NVMe/TCP to the guest kernel's initiator, which writes through it. The
// host finds both patterns at their offsets in the image.
func TestVFIOInQEMU(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "nvme.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 64<<20))

	for _, args := range [][]string{
		{"test", "-c", "-tags", "vfioguest", "-o", filepath.Join(dir, "pcie.test"), "."},
		{"build", "-o", filepath.Join(dir, "strata"), "../../cmd/strata"},
	} {
		build := exec.Command("go", args...)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := build.CombinedOutput()
		require.NoError(t, err, "go %v: %s", args, out)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	res, err := qemu.Run(ctx, qemu.Config{
		Script: vfioGuestScript, ShareDir: dir, IOMMU: true, NVMeImage: img, NVMeSerial: "STRATAVFIO",
		MemoryMiB: 1024, Timeout: 11 * time.Minute, Console: qemu.LineLogger(t.Logf),
	})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "guest tests failed")
	for _, want := range []string{
		"--- PASS: TestGuest1Bind", "--- PASS: TestGuest2Conformance", "--- PASS: TestGuest3Reset", "--- PASS: TestGuest4Pattern",
		"--- PASS: TestGuest5Unbind",
		"@@STEP driver after: nvme", "@@STEP daemon stopped: 0", "@@STEP driver at the end: nvme",
	} {
		require.Contains(t, res.Console, want)
	}

	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, guestPatternBytes)
	_, err = f.ReadAt(got, guestPatternOffset)
	require.NoError(t, err)
	require.True(t, bytes.Equal(guestPattern(), got), "the pattern written through VFIO is in the image at %d", guestPatternOffset)

	// The kernel initiator's 4 MiB at 8 MiB of the volume, which is the
	// pool's first extent: at 8 MiB in the image.
	want, err := os.ReadFile(filepath.Join(dir, "tcp-pattern"))
	require.NoError(t, err)
	require.Len(t, want, 4<<20)
	got = make([]byte, len(want))
	_, err = f.ReadAt(got, 8<<20)
	require.NoError(t, err)
	require.True(t, bytes.Equal(want, got), "the data a kernel initiator wrote over NVMe/TCP to a pcie:// volume is in the image")
}
