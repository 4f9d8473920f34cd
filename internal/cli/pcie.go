package cli

import (
	"fmt"
	"io"

	"github.com/strata-storage/strata/internal/vfio"
)

// pcieCmd moves NVMe controllers between the kernel and Strata:
//
//	strata pcie bind BDF     hand the device to vfio-pci (for pcie:// pools)
//	strata pcie unbind BDF   give it back to its kernel driver
//	strata pcie show BDF     its driver and IOMMU group
func pcieCmd(args []string, stdout, stderr io.Writer) int {
	if len(args) != 2 || (args[0] != "bind" && args[0] != "unbind" && args[0] != "show") {
		fmt.Fprintln(stderr, "usage: strata pcie bind|unbind|show DOMAIN:BUS:DEV.FN (e.g. 0000:00:04.0)")
		return ExitUsage
	}
	bdf := args[1]
	if err := vfio.ValidBDF(bdf); err != nil {
		fmt.Fprintf(stderr, "strata pcie: %v\n", err)
		return ExitUsage
	}
	switch args[0] {
	case "bind":
		if err := vfio.Bind(bdf); err != nil {
			fmt.Fprintf(stderr, "strata pcie bind: %v\n", err)
			return ExitError
		}
		fmt.Fprintf(stdout, "%s bound to vfio-pci: use it as pcie://%s\n", bdf, bdf)
	case "unbind":
		drv, err := vfio.Unbind(bdf)
		if err != nil {
			fmt.Fprintf(stderr, "strata pcie unbind: %v\n", err)
			return ExitError
		}
		fmt.Fprintf(stdout, "%s bound to %s\n", bdf, drv)
	case "show":
		drv, err := vfio.Driver(bdf)
		if err != nil {
			fmt.Fprintf(stderr, "strata pcie show: %v\n", err)
			return ExitError
		}
		if drv == "" {
			drv = "(none)"
		}
		group, err := vfio.Group(bdf)
		if err != nil {
			group = "(none: " + err.Error() + ")"
		}
		fmt.Fprintf(stdout, "%s driver %s, IOMMU group %s\n", bdf, drv, group)
	}
	return ExitOK
}
