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
// conformance suite and a split 1 MiB write through VFIO, and unbinds it;
// the host then finds the written pattern at its offset in the image.
func TestVFIOInQEMU(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "nvme.img")
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 64<<20))

	build := exec.Command("go", "test", "-c", "-tags", "vfioguest", "-o", filepath.Join(dir, "pcie.test"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := build.CombinedOutput()
	require.NoError(t, err, "build the guest test binary: %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	res, err := qemu.Run(ctx, qemu.Config{
		Script: vfioGuestScript, ShareDir: dir, IOMMU: true, NVMeImage: img, NVMeSerial: "STRATAVFIO",
		MemoryMiB: 1024, Timeout: 11 * time.Minute, Console: qemu.LineLogger(t.Logf),
	})
	require.NoError(t, err)
	require.Equal(t, 0, res.ExitCode, "guest tests failed")
	for _, want := range []string{"--- PASS: TestGuest1Bind", "--- PASS: TestGuest2Conformance", "--- PASS: TestGuest3Pattern", "--- PASS: TestGuest4Unbind", "@@STEP driver after: nvme"} {
		require.Contains(t, res.Console, want)
	}

	f, err := os.Open(img)
	require.NoError(t, err)
	defer f.Close()
	got := make([]byte, guestPatternBytes)
	_, err = f.ReadAt(got, guestPatternOffset)
	require.NoError(t, err)
	require.True(t, bytes.Equal(guestPattern(), got), "the pattern written through VFIO is in the image at %d", guestPatternOffset)
}
