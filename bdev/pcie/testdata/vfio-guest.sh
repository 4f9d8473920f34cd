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

# The daemon serves a pcie:// volume over NVMe/TCP to the guest's own
# kernel initiator: pool on the controller, volume, share on loopback,
# nvme connect, a pattern through the kernel's block device, clean stop.
echo "@@STEP daemon"
S="/host/strata --socket /tmp/strata.sock"
/host/strata pcie bind $BDF
/host/strata serve --data-dir /tmp/strata --api-socket /tmp/strata.sock --discovery-port 0 --log-level warn &
DAEMON=$!
for i in $(seq 100); do [ -S /tmp/strata.sock ] && break; sleep 0.1; done
$S pool create nvme "pcie://$BDF"
$S volume create v --pool nvme --size 32MiB
$S share add v --nqn nqn.2024-01.io.strata:pcie --listen 127.0.0.1:4420 --allow-any-host
modprobe nvme-tcp
nvme connect -t tcp -a 127.0.0.1 -s 4420 -n nqn.2024-01.io.strata:pcie
dev=""
for i in $(seq 50); do
	for b in /sys/block/nvme*n*; do
		[ -e "$b" ] || continue
		# nvmeXcYnZ is a multipath path, hidden: no device node to use.
		case ${b##*/} in *c*) continue ;; esac
		[ "$(cat $b/device/subsysnqn 2>/dev/null)" = nqn.2024-01.io.strata:pcie ] && dev=/dev/${b##*/}
	done
	[ -n "$dev" ] && break
	sleep 0.1
done
[ -n "$dev" ] || { echo "no block device for the share"; exit 1; }
echo "@@STEP kernel initiator on $dev"
dd if=/dev/urandom of=/host/tcp-pattern bs=1M count=4 2>/dev/null
dd if=/host/tcp-pattern of=$dev bs=1M seek=8 oflag=direct conv=fsync 2>/dev/null
dd if=$dev of=/tmp/back bs=1M skip=8 count=4 iflag=direct 2>/dev/null
cmp /host/tcp-pattern /tmp/back
$S status
nvme disconnect -n nqn.2024-01.io.strata:pcie
kill -TERM $DAEMON
wait $DAEMON
echo "@@STEP daemon stopped: $?"
/host/strata pcie unbind $BDF
echo "@@STEP driver at the end: $(basename "$(readlink /sys/bus/pci/devices/$BDF/driver)")"
