package vfio

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unsafe"

	"github.com/stretchr/testify/require"
)

// ioctl numbers and structure layouts, against linux/vfio.h.
func TestABI(t *testing.T) {
	require.EqualValues(t, 0x3b64, ioctlGetAPIVersion)
	require.EqualValues(t, 0x3b65, ioctlCheckExtension)
	require.EqualValues(t, 0x3b66, ioctlSetIOMMU)
	require.EqualValues(t, 0x3b67, ioctlGroupGetStatus)
	require.EqualValues(t, 0x3b68, ioctlGroupSetCont)
	require.EqualValues(t, 0x3b6a, ioctlGroupGetDevFD)
	require.EqualValues(t, 0x3b6c, ioctlDeviceRegion)
	require.EqualValues(t, 0x3b6e, ioctlDeviceSetIRQs)
	require.EqualValues(t, 0x3b6f, ioctlDeviceReset)
	require.EqualValues(t, 0x3b71, ioctlIOMMUMapDMA)
	require.EqualValues(t, 0x3b72, ioctlIOMMUUnmapDMA)

	require.EqualValues(t, 8, unsafe.Sizeof(groupStatus{}))
	require.EqualValues(t, 32, unsafe.Sizeof(regionInfo{}))
	require.EqualValues(t, 16, unsafe.Offsetof(regionInfo{}.size))
	require.EqualValues(t, 24, unsafe.Offsetof(regionInfo{}.offset))
	require.EqualValues(t, 32, unsafe.Sizeof(dmaMap{}))
	require.EqualValues(t, 8, unsafe.Offsetof(dmaMap{}.vaddr))
	require.EqualValues(t, 16, unsafe.Offsetof(dmaMap{}.iova))
	require.EqualValues(t, 24, unsafe.Offsetof(dmaMap{}.size))
	require.EqualValues(t, 24, unsafe.Sizeof(dmaUnmap{}))
	require.EqualValues(t, 8, unsafe.Offsetof(dmaUnmap{}.iova))
	require.EqualValues(t, 24, unsafe.Sizeof(irqSetOne{}))
	require.EqualValues(t, 20, unsafe.Offsetof(irqSetOne{}.fd))
}

func TestValidBDF(t *testing.T) {
	for _, ok := range []string{"0000:00:04.0", "0000:af:1f.7", "10de:01:00.1"} {
		require.NoError(t, ValidBDF(ok), ok)
	}
	for _, bad := range []string{"", "00:04.0", "0000:00:04", "0000:00:20.0", "0000:00:04.8", "0000:00:04.0x", "../../etc:00.0", "zzzz:00:04.0"} {
		require.Error(t, ValidBDF(bad), bad)
	}
}

// fakeSysfs builds a sysfs tree with devices in IOMMU groups bound to
// drivers, and points the package at it.
func fakeSysfs(t *testing.T, devices map[string][2]string) {
	root := t.TempDir()
	old, oldDev := SysfsRoot, DevRoot
	SysfsRoot, DevRoot = filepath.Join(root, "sys"), filepath.Join(root, "dev")
	t.Cleanup(func() { SysfsRoot, DevRoot = old, oldDev })
	for bdf, gd := range devices {
		group, driver := gd[0], gd[1]
		dev := filepath.Join(SysfsRoot, "bus/pci/devices", bdf)
		require.NoError(t, os.MkdirAll(dev, 0o755))
		if driver != "" {
			drv := filepath.Join(SysfsRoot, "bus/pci/drivers", driver)
			require.NoError(t, os.MkdirAll(drv, 0o755))
			require.NoError(t, os.Symlink(drv, filepath.Join(dev, "driver")))
		}
		if group != "" {
			g := filepath.Join(SysfsRoot, "kernel/iommu_groups", group)
			require.NoError(t, os.MkdirAll(filepath.Join(g, "devices"), 0o755))
			require.NoError(t, os.Symlink(dev, filepath.Join(g, "devices", bdf)))
			require.NoError(t, os.Symlink(g, filepath.Join(dev, "iommu_group")))
		}
	}
}

func TestSysfsLookups(t *testing.T) {
	fakeSysfs(t, map[string][2]string{
		"0000:00:04.0": {"7", "nvme"},
		"0000:00:04.1": {"7", "vfio-pci"},
		"0000:00:05.0": {"", ""},
	})
	drv, err := Driver("0000:00:04.0")
	require.NoError(t, err)
	require.Equal(t, "nvme", drv)
	drv, err = Driver("0000:00:05.0")
	require.NoError(t, err)
	require.Empty(t, drv)
	_, err = Driver("0000:00:09.0")
	require.ErrorIs(t, err, ErrNoDevice)

	g, err := Group("0000:00:04.1")
	require.NoError(t, err)
	require.Equal(t, "7", g)
	_, err = Group("0000:00:05.0")
	require.ErrorIs(t, err, ErrNoIOMMU)
	devs, err := GroupDevices("0000:00:04.0")
	require.NoError(t, err)
	require.Equal(t, map[string]string{"0000:00:04.0": "nvme", "0000:00:04.1": "vfio-pci"}, devs)

	// Open refuses with reasons an operator can act on.
	_, err = Open("0000:00:04.0")
	require.ErrorIs(t, err, ErrNotBound)
	require.ErrorContains(t, err, "bound to nvme (strata pcie bind 0000:00:04.0)")
	_, err = Open("0000:00:09.0")
	require.ErrorIs(t, err, ErrNoDevice)
	_, err = Open("0000:00:04.1")
	require.ErrorIs(t, err, ErrNoVFIO, "no /dev/vfio/vfio in the fake tree")
	_, err = Open("bogus")
	require.ErrorContains(t, err, "DOMAIN:BUS:DEVICE.FUNCTION")
}

// Bind and Unbind drive sysfs in the documented order. The fake tree does
// not move devices between drivers, so each ends with the driver unchanged
// and says so; what was written is what the kernel would have acted on.
func TestBindWritesSysfs(t *testing.T) {
	fakeSysfs(t, map[string][2]string{"0000:00:04.0": {"7", "nvme"}})
	dev := filepath.Join(SysfsRoot, "bus/pci/devices/0000:00:04.0")
	err := Bind("0000:00:04.0")
	require.ErrorIs(t, err, ErrNoVFIO, "vfio-pci not loaded")
	require.NoError(t, os.MkdirAll(filepath.Join(SysfsRoot, "bus/pci/drivers/vfio-pci"), 0o755))

	defer func(d time.Duration) { bindTimeout = d }(bindTimeout)
	bindTimeout = 100 * time.Millisecond
	err = Bind("0000:00:04.0")
	require.ErrorContains(t, err, "bound to nvme after the probe, not vfio-pci")
	got := func(p string) string {
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		return string(b)
	}
	require.Equal(t, "vfio-pci\n", got(filepath.Join(dev, "driver_override")))
	require.Equal(t, "0000:00:04.0", got(filepath.Join(SysfsRoot, "bus/pci/drivers/nvme/unbind")))
	require.Equal(t, "0000:00:04.0", got(filepath.Join(SysfsRoot, "bus/pci/drivers_probe")))

	drv, err := Unbind("0000:00:04.0")
	require.NoError(t, err, "not on vfio-pci: nothing to do")
	require.Equal(t, "nvme", drv)
}
