// Package vfio gives a userspace driver a PCI device through Linux VFIO:
// the container (an IOMMU context), the device's IOMMU group, the device
// file, its regions (BARs and PCI config space), and DMA mappings. The
// ioctl numbers and structures follow include/uapi/linux/vfio.h; each
// structure's layout is written out below and checked in the tests.
//
// Usage: Open(bdf) does the whole sequence (API version, TYPE1v2 IOMMU,
// group viability, SET_CONTAINER, SET_IOMMU, GET_DEVICE_FD) and returns a
// Device; MapDMA makes memory (outside the Go heap: iomem) visible to the
// device at an IOVA the caller chooses; MapBAR maps a BAR for MMIO.
//
// Package unsafe is used only to pass structure and buffer addresses to
// ioctl(2); every structure passed is a Go value that lives across the
// call, and every buffer mapped for DMA is mmap'd memory that the caller
// keeps mapped until UnmapDMA.
package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ioctl request numbers: _IO(VFIO_TYPE ';', VFIO_BASE 100 + n).
const (
	vfioBase             = ';'<<8 | 100
	ioctlGetAPIVersion   = vfioBase + 0
	ioctlCheckExtension  = vfioBase + 1
	ioctlSetIOMMU        = vfioBase + 2
	ioctlGroupGetStatus  = vfioBase + 3
	ioctlGroupSetCont    = vfioBase + 4
	ioctlGroupGetDevFD   = vfioBase + 6
	ioctlDeviceRegion    = vfioBase + 8
	ioctlDeviceSetIRQs   = vfioBase + 10
	ioctlDeviceReset     = vfioBase + 11
	ioctlIOMMUMapDMA     = vfioBase + 13
	ioctlIOMMUUnmapDMA   = vfioBase + 14
	apiVersion           = 0 // VFIO_API_VERSION
	typeType1v2          = 3 // VFIO_TYPE1v2_IOMMU
	groupFlagsViable     = 1 << 0
	regionFlagMmap       = 1 << 2
	dmaMapFlagRead       = 1 << 0
	dmaMapFlagWrite      = 1 << 1
	irqSetDataEventfd    = 1 << 2
	irqSetActionTrigger  = 1 << 5
	pciConfigRegionIndex = 7 // VFIO_PCI_CONFIG_REGION_INDEX
	pciMSIXIRQIndex      = 2 // VFIO_PCI_MSIX_IRQ_INDEX
)

// Structures (linux/vfio.h). argsz is always the structure's size.
type (
	// struct vfio_group_status
	groupStatus struct {
		argsz, flags uint32
	}
	// struct vfio_region_info
	regionInfo struct {
		argsz, flags, index, capOffset uint32
		size, offset                   uint64
	}
	// struct vfio_iommu_type1_dma_map
	dmaMap struct {
		argsz, flags      uint32
		vaddr, iova, size uint64
	}
	// struct vfio_iommu_type1_dma_unmap (without the dirty bitmap)
	dmaUnmap struct {
		argsz, flags uint32
		iova, size   uint64
	}
	// struct vfio_irq_set with one eventfd in its data
	irqSetOne struct {
		argsz, flags, index, start, count uint32
		fd                                int32
	}
)

func ioctl(fd int, req uintptr, arg unsafe.Pointer) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, uintptr(arg))
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

func ioctlInt(fd int, req uintptr, arg uintptr) (int, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
	if errno != 0 {
		return int(r), errno
	}
	return int(r), nil
}

// Errors, matched with errors.Is.
var (
	ErrNoVFIO      = errors.New("vfio: not available")
	ErrNoDevice    = errors.New("vfio: no such PCI device")
	ErrNotBound    = errors.New("vfio: device not bound to vfio-pci")
	ErrNotViable   = errors.New("vfio: IOMMU group not viable")
	ErrNoIOMMU     = errors.New("vfio: device has no IOMMU group")
	ErrUnsupported = errors.New("vfio: unsupported")
)

// SysfsRoot is where PCI devices are looked up; tests point it elsewhere.
var SysfsRoot = "/sys"

// DevRoot is where /dev/vfio lives; tests point it elsewhere.
var DevRoot = "/dev"

// ValidBDF checks a PCI address: DOMAIN:BUS:DEV.FN, e.g. 0000:00:04.0.
func ValidBDF(bdf string) error {
	var dom, bus, dev, fn uint
	if n, err := fmt.Sscanf(bdf, "%4x:%2x:%2x.%1x", &dom, &bus, &dev, &fn); err != nil || n != 4 ||
		len(bdf) != 12 || dev > 0x1f || fn > 7 {
		return fmt.Errorf("vfio: PCI address %q: want DOMAIN:BUS:DEVICE.FUNCTION such as 0000:00:04.0", bdf)
	}
	return nil
}

func devicePath(bdf string) string { return filepath.Join(SysfsRoot, "bus/pci/devices", bdf) }

// Driver returns the name of the kernel driver bound to bdf ("" if none).
func Driver(bdf string) (string, error) {
	if err := ValidBDF(bdf); err != nil {
		return "", err
	}
	if _, err := os.Stat(devicePath(bdf)); err != nil {
		return "", fmt.Errorf("%w: %s", ErrNoDevice, bdf)
	}
	link, err := os.Readlink(filepath.Join(devicePath(bdf), "driver"))
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("vfio: %s driver: %w", bdf, err)
	}
	return filepath.Base(link), nil
}

// Group returns bdf's IOMMU group number.
func Group(bdf string) (string, error) {
	if err := ValidBDF(bdf); err != nil {
		return "", err
	}
	if _, err := os.Stat(devicePath(bdf)); err != nil {
		return "", fmt.Errorf("%w: %s", ErrNoDevice, bdf)
	}
	link, err := os.Readlink(filepath.Join(devicePath(bdf), "iommu_group"))
	if err != nil {
		return "", fmt.Errorf("%w: %s (is the IOMMU enabled: intel_iommu=on or amd_iommu=on?)", ErrNoIOMMU, bdf)
	}
	return filepath.Base(link), nil
}

// GroupDevices lists the PCI devices in bdf's IOMMU group, and the driver
// each is bound to: a group is viable only when all are bound to vfio-pci
// (or to no driver).
func GroupDevices(bdf string) (map[string]string, error) {
	g, err := Group(bdf)
	if err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(filepath.Join(SysfsRoot, "kernel/iommu_groups", g, "devices"))
	if err != nil {
		return nil, fmt.Errorf("vfio: IOMMU group %s: %w", g, err)
	}
	out := map[string]string{}
	for _, e := range entries {
		drv, err := Driver(e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = drv
	}
	return out, nil
}

// Container is a VFIO container: one IOMMU address space.
type Container struct {
	fd int
}

// Device is an open VFIO device with its group and container.
type Device struct {
	BDF       string
	container *Container
	group     int
	fd        int
	config    regionInfo
}

// Open opens bdf, which must be bound to vfio-pci with every device of its
// IOMMU group bound to vfio-pci or to nothing, in a container of its own
// with the TYPE1v2 IOMMU.
func Open(bdf string) (*Device, error) {
	drv, err := Driver(bdf)
	if err != nil {
		return nil, err
	}
	if drv != "vfio-pci" {
		if drv == "" {
			drv = "no driver"
		}
		return nil, fmt.Errorf("%w: %s is bound to %s (strata pcie bind %s)", ErrNotBound, bdf, drv, bdf)
	}
	g, err := Group(bdf)
	if err != nil {
		return nil, err
	}
	cfd, err := unix.Open(filepath.Join(DevRoot, "vfio/vfio"), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: open /dev/vfio/vfio: %v (is the vfio-pci module loaded?)", ErrNoVFIO, err)
	}
	c := &Container{fd: cfd}
	d := &Device{BDF: bdf, container: c, group: -1, fd: -1}
	fail := func(err error) (*Device, error) {
		d.Close()
		return nil, err
	}
	if v, err := ioctlInt(cfd, ioctlGetAPIVersion, 0); err != nil || v != apiVersion {
		return fail(fmt.Errorf("%w: VFIO API version %d (%v), want %d", ErrUnsupported, v, err, apiVersion))
	}
	if ok, err := ioctlInt(cfd, ioctlCheckExtension, typeType1v2); err != nil || ok <= 0 {
		return fail(fmt.Errorf("%w: no TYPE1v2 IOMMU (%v)", ErrUnsupported, err))
	}
	if d.group, err = unix.Open(filepath.Join(DevRoot, "vfio", g), unix.O_RDWR|unix.O_CLOEXEC, 0); err != nil {
		return fail(fmt.Errorf("vfio: open group %s of %s: %w", g, bdf, err))
	}
	st := groupStatus{argsz: uint32(unsafe.Sizeof(groupStatus{}))}
	if _, err := ioctl(d.group, ioctlGroupGetStatus, unsafe.Pointer(&st)); err != nil {
		return fail(fmt.Errorf("vfio: group %s status: %w", g, err))
	}
	if st.flags&groupFlagsViable == 0 {
		devs, _ := GroupDevices(bdf)
		var others []string
		for dev, drv := range devs {
			if drv != "vfio-pci" && drv != "" {
				others = append(others, dev+" ("+drv+")")
			}
		}
		return fail(fmt.Errorf("%w: group %s also holds %s: bind them to vfio-pci too", ErrNotViable, g, strings.Join(others, ", ")))
	}
	cfd32 := int32(cfd)
	if _, err := ioctl(d.group, ioctlGroupSetCont, unsafe.Pointer(&cfd32)); err != nil {
		return fail(fmt.Errorf("vfio: group %s: set container: %w", g, err))
	}
	if _, err := ioctlInt(cfd, ioctlSetIOMMU, typeType1v2); err != nil {
		return fail(fmt.Errorf("vfio: set TYPE1v2 IOMMU: %w", err))
	}
	name, err := unix.BytePtrFromString(bdf)
	if err != nil {
		return fail(err)
	}
	if d.fd, err = ioctl(d.group, ioctlGroupGetDevFD, unsafe.Pointer(name)); err != nil {
		d.fd = -1
		return fail(fmt.Errorf("vfio: get device %s: %w", bdf, err))
	}
	if d.config, err = d.region(pciConfigRegionIndex); err != nil {
		return fail(err)
	}
	return d, nil
}

func (d *Device) region(index uint32) (regionInfo, error) {
	ri := regionInfo{argsz: uint32(unsafe.Sizeof(regionInfo{})), index: index}
	if _, err := ioctl(d.fd, ioctlDeviceRegion, unsafe.Pointer(&ri)); err != nil {
		return ri, fmt.Errorf("vfio: %s region %d: %w", d.BDF, index, err)
	}
	return ri, nil
}

// ReadConfig reads len(b) bytes of PCI config space at off.
func (d *Device) ReadConfig(b []byte, off int64) error {
	if _, err := unix.Pread(d.fd, b, int64(d.config.offset)+off); err != nil {
		return fmt.Errorf("vfio: %s config read at %#x: %w", d.BDF, off, err)
	}
	return nil
}

// WriteConfig writes b to PCI config space at off.
func (d *Device) WriteConfig(b []byte, off int64) error {
	if _, err := unix.Pwrite(d.fd, b, int64(d.config.offset)+off); err != nil {
		return fmt.Errorf("vfio: %s config write at %#x: %w", d.BDF, off, err)
	}
	return nil
}

// pciCommand is the PCI Command register's offset; memory space and bus
// master enable are its bits 1 and 2.
const (
	pciCommand          = 0x04
	pciCommandMemory    = 1 << 1
	pciCommandBusMaster = 1 << 2
)

// EnableBusMaster turns on memory space decoding and bus mastering, which
// the device needs to answer MMIO and to do DMA.
func (d *Device) EnableBusMaster() error {
	var b [2]byte
	if err := d.ReadConfig(b[:], pciCommand); err != nil {
		return err
	}
	v := uint16(b[0]) | uint16(b[1])<<8 | pciCommandMemory | pciCommandBusMaster
	b[0], b[1] = byte(v), byte(v>>8)
	return d.WriteConfig(b[:], pciCommand)
}

// MapBAR maps BAR index (0-5) for MMIO; unmap it with unix.Munmap.
func (d *Device) MapBAR(index uint32) ([]byte, error) {
	ri, err := d.region(index)
	if err != nil {
		return nil, err
	}
	if ri.flags&regionFlagMmap == 0 || ri.size == 0 {
		return nil, fmt.Errorf("%w: %s BAR%d cannot be mmap'd (flags %#x, size %d)", ErrUnsupported, d.BDF, index, ri.flags, ri.size)
	}
	b, err := unix.Mmap(d.fd, int64(ri.offset), int(ri.size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("vfio: mmap %s BAR%d: %w", d.BDF, index, err)
	}
	return b, nil
}

// Reset asks for a function-level reset, if the device supports one.
func (d *Device) Reset() error {
	if _, err := ioctlInt(d.fd, ioctlDeviceReset, 0); err != nil {
		return fmt.Errorf("vfio: reset %s: %w", d.BDF, err)
	}
	return nil
}

// SetMSIXEventfd routes MSI-X vector vector to eventfd fd (an idle
// reactor can sleep on it instead of polling).
func (d *Device) SetMSIXEventfd(vector uint32, fd int) error {
	s := irqSetOne{
		argsz: uint32(unsafe.Sizeof(irqSetOne{})), flags: irqSetDataEventfd | irqSetActionTrigger,
		index: pciMSIXIRQIndex, start: vector, count: 1, fd: int32(fd),
	}
	if _, err := ioctl(d.fd, ioctlDeviceSetIRQs, unsafe.Pointer(&s)); err != nil {
		return fmt.Errorf("vfio: %s MSI-X vector %d: %w", d.BDF, vector, err)
	}
	return nil
}

// MapDMA makes b visible to the device at iova, readable and writable. b
// must be page aligned mmap'd memory that stays mapped until UnmapDMA.
func (d *Device) MapDMA(b []byte, iova uint64) error {
	if len(b) == 0 {
		return errors.New("vfio: map DMA: empty buffer")
	}
	m := dmaMap{
		argsz: uint32(unsafe.Sizeof(dmaMap{})), flags: dmaMapFlagRead | dmaMapFlagWrite,
		vaddr: uint64(uintptr(unsafe.Pointer(&b[0]))), iova: iova, size: uint64(len(b)),
	}
	if _, err := ioctl(d.container.fd, ioctlIOMMUMapDMA, unsafe.Pointer(&m)); err != nil {
		return fmt.Errorf("vfio: map %d bytes for DMA at IOVA %#x: %w (RLIMIT_MEMLOCK too low?)", len(b), iova, err)
	}
	return nil
}

// UnmapDMA removes the mapping at iova of size bytes.
func (d *Device) UnmapDMA(iova, size uint64) error {
	u := dmaUnmap{argsz: uint32(unsafe.Sizeof(dmaUnmap{})), iova: iova, size: size}
	if _, err := ioctl(d.container.fd, ioctlIOMMUUnmapDMA, unsafe.Pointer(&u)); err != nil {
		return fmt.Errorf("vfio: unmap DMA at IOVA %#x: %w", iova, err)
	}
	return nil
}

// Close closes the device, its group and its container.
func (d *Device) Close() error {
	var errs []error
	for _, fd := range []int{d.fd, d.group, d.container.fd} {
		if fd >= 0 {
			errs = append(errs, unix.Close(fd))
		}
	}
	d.fd, d.group, d.container.fd = -1, -1, -1
	return errors.Join(errs...)
}
