//go:build vfioguest

package pcie_test

// Built only for the QEMU guest (go test -c -tags vfioguest, static): these
// tests take over the guest's emulated NVMe controller through VFIO. The
// host side (TestVFIOInQEMU) builds the binary, boots the guest and checks
// the disk image afterwards.

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/strata-storage/strata/bdev"
	"github.com/strata-storage/strata/bdev/bdevtest"
	"github.com/strata-storage/strata/bdev/pcie"
	"github.com/strata-storage/strata/internal/vfio"
)

// guestBDF is the controller the guest script found.
func guestBDF(t *testing.T) string {
	bdf := os.Getenv("STRATA_PCIE_BDF")
	require.NotEmpty(t, bdf, "the guest script sets STRATA_PCIE_BDF")
	return bdf
}

// From the kernel's nvme driver to vfio-pci, as strata pcie bind does.
func TestGuest1Bind(t *testing.T) {
	bdf := guestBDF(t)
	drv, err := vfio.Driver(bdf)
	require.NoError(t, err)
	require.Equal(t, "nvme", drv, "the kernel driver has it at first")
	require.NoError(t, vfio.Bind(bdf))
	drv, err = vfio.Driver(bdf)
	require.NoError(t, err)
	require.Equal(t, "vfio-pci", drv)
}

func openGuest(t *testing.T) bdev.Device {
	d, err := pcie.Open("nvme0n1", guestBDF(t), 1, 4)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, d.Close()) })
	return d
}

// The bdev conformance suite on the real (emulated) controller.
func TestGuest2Conformance(t *testing.T) {
	bdevtest.Run(t, func(t *testing.T) bdev.Device { return openGuest(t) }, true)
}

// A transfer larger than one command is split, and its data lands where
// the host side looks for it in the image.
func TestGuest4Pattern(t *testing.T) {
	d := openGuest(t)
	c := bdevtest.Open(t, d, bdevtest.Reactors(t).Get(0))
	buf := bdevtest.Buffers(t, guestPatternBytes)
	copy(buf, guestPattern())
	bs := uint64(d.Info().BlockSize)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpWrite, guestPatternOffset/bs, uint32(guestPatternBytes/bs), buf))
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpFlush, 0, 0, nil))
	clear(buf)
	require.Equal(t, bdev.StatusOK, c.Do(t, bdev.OpRead, guestPatternOffset/bs, uint32(guestPatternBytes/bs), buf))
	require.Equal(t, guestPattern(), buf)
}

// A controller reset on the real (emulated) controller, as the timeout
// path does it: channels on two reactors recreate their queue pairs and
// go on; the data written before is still there.
func TestGuest3Reset(t *testing.T) {
	d := openGuest(t)
	g := bdevtest.Reactors(t)
	a, b := bdevtest.Open(t, d, g.Get(0)), bdevtest.Open(t, d, g.Get(g.Len()-1))
	buf := bdevtest.Buffers(t, 8192)
	for i := range buf {
		buf[i] = byte(i * 13)
	}
	bs := uint64(d.Info().BlockSize)
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpWrite, 4096, uint32(8192/bs), buf))
	ctrl := d.(*pcie.Device).Controller()
	require.NoError(t, ctrl.Reset(ctrl.Generation()))
	require.EqualValues(t, 1, ctrl.Generation())
	got := bdevtest.Buffers(t, 8192)
	require.Equal(t, bdev.StatusOK, b.Do(t, bdev.OpRead, 4096, uint32(8192/bs), got))
	require.Equal(t, buf, got)
	clear(got)
	require.Equal(t, bdev.StatusOK, a.Do(t, bdev.OpRead, 4096, uint32(8192/bs), got))
	require.Equal(t, buf, got)
}

// Back to the kernel driver, as strata pcie unbind does.
func TestGuest5Unbind(t *testing.T) {
	drv, err := vfio.Unbind(guestBDF(t))
	require.NoError(t, err)
	require.Equal(t, "nvme", drv)
}
