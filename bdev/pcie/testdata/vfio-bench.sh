# Runs inside the QEMU guest: the same load through the guest kernel's nvme
# driver (strata perf on uring:///dev/nvmeXnY: io_uring, O_DIRECT) and
# through Strata's userspace driver (pcie://BDF over VFIO), on the same
# emulated controller, one after the other. Prints one marker line per run:
# @@PERF <path> <pattern> <json>.
set -e
BDF=""
for d in /sys/bus/pci/devices/*; do
	[ "$(cat $d/vendor):$(cat $d/device)" = 0x1b36:0x0010 ] && BDF=${d##*/}
done
[ -n "$BDF" ] || { echo "no emulated NVMe controller"; exit 1; }
modprobe nvme
dev=""
for i in $(seq 50); do
	dev=$(ls -d /sys/bus/pci/devices/$BDF/nvme/nvme*/nvme*n1 2>/dev/null | head -1)
	[ -n "$dev" ] && break
	sleep 0.1
done
[ -n "$dev" ] || { echo "the kernel driver made no namespace"; exit 1; }
dev=/dev/${dev##*/}
modprobe vfio_iommu_type1
modprobe vfio-pci
ulimit -l unlimited
run() { # path uri rw bs qd
	echo "@@PERF $1 $3-$4-qd$5 $(/host/strata perf -device "$2" -rw $3 -bs $4 -qd $5 -time ${SECS}s -core 0 -o json | tr -d '\n ')"
}
for w in "randread 4KiB 32" "read 128KiB 8"; do
	set -- $w
	run kernel "uring://$dev" $1 $2 $3
	/host/strata pcie bind $BDF >/dev/null
	run strata "pcie://$BDF?queues=2" $1 $2 $3
	/host/strata pcie unbind $BDF >/dev/null
	for i in $(seq 50); do [ -e $dev ] && break; sleep 0.1; done
done

# An idle daemon with a pcie:// pool, a volume and a share: its reactors
# sleep (the NVMe queues are polled only while commands are out). CPU used
# over 5 s, in % of one core (/proc ticks are USER_HZ, 100 per second).
/host/strata pcie bind $BDF >/dev/null
/host/strata serve --data-dir /tmp/idle --api-socket /tmp/idle.sock --discovery-port 0 --log-level warn &
D=$!
for i in $(seq 100); do [ -S /tmp/idle.sock ] && break; sleep 0.1; done
S="/host/strata --socket /tmp/idle.sock"
$S pool create nvme "pcie://$BDF" >/dev/null
$S volume create v --pool nvme --size 64MiB >/dev/null
$S share add v --nqn nqn.2024-01.io.strata:idle --listen 127.0.0.1:4420 --allow-any-host >/dev/null 2>&1
sleep 2
t0=$(awk '{print $14 + $15}' /proc/$D/stat)
sleep 5
t1=$(awk '{print $14 + $15}' /proc/$D/stat)
echo "@@IDLE $(( (t1 - t0) * 100 / 500 )).$(( (t1 - t0) * 100 % 500 * 10 / 500 ))"
kill -TERM $D
wait $D
/host/strata pcie unbind $BDF >/dev/null
