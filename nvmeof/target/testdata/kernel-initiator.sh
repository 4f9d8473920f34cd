# The namespace must hold at least 64 MiB.
# Runs inside the QEMU guest (busybox sh) against a Strata target on the
# host, reached as 10.0.2.2. Env from the test: PORT and PORT2 (two
# listeners of the same target), NQN, PHASE (first or second: the second
# run checks what the first wrote, after a target restart). Every step
# echoes a marker the Go test can look for; any failure exits non-zero.
set -e
: "${PORT:?}" "${PORT2:?}" "${NQN:?}" "${PHASE:?}"
ADDR=10.0.2.2
step() { echo "@@STEP $*"; }
modprobe nvme-tcp

step discover
nvme discover -t tcp -a $ADDR -s $PORT | tee /tmp/disc
grep -q "subnqn: *$NQN" /tmp/disc
grep -q "subnqn: *nqn.2014-08.org.nvmexpress.discovery" /tmp/disc || true

step connect
nvme connect -t tcp -a $ADDR -s $PORT -n $NQN
dev=""
for i in $(seq 50); do
	for b in /sys/block/nvme*n*; do
		[ -e "$b" ] || continue
		case ${b##*/} in *c*) continue ;; esac
		[ "$(cat $b/device/subsysnqn 2>/dev/null)" = "$NQN" ] && dev=/dev/${b##*/}
	done
	[ -n "$dev" ] && break
	sleep 0.1
done
[ -n "$dev" ] || { echo "no namespace block device for $NQN"; exit 1; }
ctrl=${dev%n*} # /dev/nvme0n1 -> /dev/nvme0
echo "device $dev controller $ctrl"

step list
nvme list | tee /tmp/list
grep -q "${dev##*/}" /tmp/list
step id-ctrl
# Not through tee into head: head exits early and tee, killed by SIGPIPE,
# may not have written the subnqn line yet.
nvme id-ctrl $ctrl > /tmp/idctrl
head -40 /tmp/idctrl
grep -q "^subnqn *: *$NQN" /tmp/idctrl
grep -qi "^mn *: *Strata" /tmp/idctrl
step id-ns
nvme id-ns $dev > /tmp/idns
head -20 /tmp/idns
grep -q "^nmic *: *0x1" /tmp/idns

step second-controller
# A second controller to the same namespace through the second listener,
# as multipath reaches it: Linux attaches the namespace to it only if the
# namespace says it may be shared (NMIC bit 0).
nvme connect -t tcp -a $ADDR -s $PORT2 -n $NQN
subsys=""
for s in /sys/class/nvme-subsystem/*; do
	[ "$(cat $s/subsysnqn)" = "$NQN" ] && subsys=$s
done
second=""
for i in $(seq 50); do
	second=$(ls $subsys | grep -E '^nvme[0-9]+$' | grep -vx "${ctrl##*/}" || true)
	[ -n "$second" ] && ls /sys/class/nvme/$second | grep -qE '^nvme[0-9]+(c[0-9]+)?n1$' && break
	sleep 0.1
done
echo "second controller $second: $(ls /sys/class/nvme/$second | grep -E '^nvme[0-9]+(c[0-9]+)?n1$' || echo 'no namespace')"
ls /sys/class/nvme/$second | grep -qE '^nvme[0-9]+(c[0-9]+)?n1$'
nvme disconnect -d $second

if [ "$PHASE" = first ]; then
	step pattern-write
	dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
	dd if=/tmp/pat of=$dev bs=1M count=4 seek=40 oflag=direct conv=fsync
	dd if=$dev of=/tmp/back bs=1M count=4 skip=40 iflag=direct
	cmp /tmp/pat /tmp/back
	md5sum < /tmp/pat | cut -d' ' -f1 > /host/pattern.md5
	# Small unaligned-in-time writes of 4 KiB travel in-capsule.
	dd if=/dev/urandom of=/tmp/small bs=4k count=16 2>/dev/null
	dd if=/tmp/small of=$dev bs=4k count=16 seek=12288 oflag=direct
	dd if=$dev of=/tmp/smallback bs=4k count=16 skip=12288 iflag=direct
	cmp /tmp/small /tmp/smallback

	step mkfs
	# The file system takes the first 32 MiB; the raw patterns live past it.
	/sbin/mke2fs -q -F -t ext4 $dev 32M
	mkdir -p /mnt
	mount -t ext4 $dev /mnt
	dd if=/dev/urandom of=/mnt/file bs=1M count=8 2>/dev/null
	mkdir /mnt/dir
	echo "hello from the guest" > /mnt/dir/hello
	sync
	md5sum /mnt/file | cut -d' ' -f1 > /host/file.md5
	umount /mnt

	step reconnect
	nvme disconnect -n $NQN
	nvme connect -t tcp -a $ADDR -s $PORT -n $NQN
	sleep 1
fi

step verify
dd if=$dev of=/tmp/back bs=1M count=4 skip=40 iflag=direct
[ "$(md5sum < /tmp/back | cut -d' ' -f1)" = "$(cat /host/pattern.md5)" ]
mkdir -p /mnt
mount -t ext4 $dev /mnt
[ "$(md5sum /mnt/file | cut -d' ' -f1)" = "$(cat /host/file.md5)" ]
grep -q "hello from the guest" /mnt/dir/hello
umount /mnt

step disconnect
nvme disconnect -n $NQN
echo "@@KERNEL-INITIATOR-OK $PHASE"
