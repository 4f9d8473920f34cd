package vfio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// bindTimeout bounds the wait for a driver to take a device after a probe
// (a variable: tests shorten it).
var bindTimeout = 5 * time.Second

func writeSysfs(path, value string) error {
	if err := os.WriteFile(path, []byte(value), 0); err != nil {
		return fmt.Errorf("vfio: write %q to %s: %w", value, path, err)
	}
	return nil
}

// rebind points bdf at driver (through driver_override; "" clears it),
// unbinds it from its current driver and asks the kernel to probe it
// again, then waits until want is bound (any driver when want is "").
func rebind(bdf, override, want string) (string, error) {
	cur, err := Driver(bdf)
	if err != nil {
		return "", err
	}
	dev := devicePath(bdf)
	// An empty write is refused by sysfs; a newline clears the override.
	if err := writeSysfs(filepath.Join(dev, "driver_override"), override+"\n"); err != nil {
		return "", err
	}
	if cur != "" {
		if err := writeSysfs(filepath.Join(dev, "driver", "unbind"), bdf); err != nil {
			return "", err
		}
	}
	if err := writeSysfs(filepath.Join(SysfsRoot, "bus/pci/drivers_probe"), bdf); err != nil {
		return "", err
	}
	deadline := time.Now().Add(bindTimeout)
	for {
		drv, err := Driver(bdf)
		if err != nil {
			return "", err
		}
		if want == "" && drv != "" || want != "" && drv == want {
			return drv, nil
		}
		if time.Now().After(deadline) {
			if drv == "" {
				drv = "no driver"
			}
			return drv, fmt.Errorf("vfio: %s is bound to %s after the probe, not %s", bdf, drv, orAny(want))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func orAny(want string) string {
	if want == "" {
		return "a kernel driver"
	}
	return want
}

// Bind hands bdf to vfio-pci so that Strata can drive it. The vfio-pci
// module must be loaded (modprobe vfio-pci). A device already on vfio-pci
// is left alone.
func Bind(bdf string) error {
	cur, err := Driver(bdf)
	if err != nil {
		return err
	}
	if cur == "vfio-pci" {
		return nil
	}
	if _, err := os.Stat(filepath.Join(SysfsRoot, "bus/pci/drivers/vfio-pci")); err != nil {
		return fmt.Errorf("%w: vfio-pci driver not loaded (modprobe vfio-pci)", ErrNoVFIO)
	}
	_, err = rebind(bdf, "vfio-pci", "vfio-pci")
	return err
}

// Unbind gives bdf back to the kernel: it clears the override and lets the
// kernel's own driver (nvme, for an NVMe drive) probe it. It returns that
// driver's name.
func Unbind(bdf string) (string, error) {
	cur, err := Driver(bdf)
	if err != nil {
		return "", err
	}
	if cur != "vfio-pci" {
		if cur == "" {
			return "", errors.New("vfio: " + bdf + " is bound to no driver")
		}
		return cur, nil
	}
	return rebind(bdf, "", "")
}
