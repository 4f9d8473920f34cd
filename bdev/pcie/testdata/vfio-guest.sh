# Runs inside the QEMU guest (busybox sh): find the emulated NVMe
# controller (QEMU's 1b36:0010), let the kernel's nvme driver take it, load
# VFIO, and run the pcie package's guest tests (/host/pcie.test, built with
# -tags vfioguest), which bind it to vfio-pci, drive it, and give it back.
set -e
BDF=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor):$(cat $d/device)" = 0x1b36:0x0010 ] && BDF=${d##*/}
done
[ -n "$BDF" ] || { echo "no emulated NVMe controller"; exit 1; }
echo "@@STEP controller $BDF iommu_group=$(basename "$(readlink /sys/bus/pci/devices/$BDF/iommu_group)")"
modprobe nvme
for i in $(seq 50); do [ -e /sys/bus/pci/devices/$BDF/driver ] && break; sleep 0.1; done
modprobe vfio_iommu_type1
modprobe vfio-pci
ulimit -l unlimited
echo "@@STEP guest tests"
STRATA_PCIE_BDF=$BDF /host/pcie.test -test.run '^TestGuest' -test.v -test.timeout 10m
echo "@@STEP driver after: $(basename "$(readlink /sys/bus/pci/devices/$BDF/driver)")"
