# Runs inside the QEMU guest (busybox sh) against a Strata target on the
# host (10.0.2.2) serving a thin volume of a volume store as NQN. While
# the guest writes, it asks the host (/host/snap-now) for a snapshot; the
# host takes it, serves a clone of it as CLONE_NQN and says so
# (/host/snap-done). The guest then overwrites what the snapshot holds and
# checks the clone against what was acknowledged before it. Env: PORT,
# NQN, CLONE_NQN. Sizes in MiB of the volume: [0, 8) written before the
# snapshot, [16, 32) written while it is taken, [0, 8) overwritten after.
set -e
: "${PORT:?}" "${NQN:?}" "${CLONE_NQN:?}"
ADDR=10.0.2.2
step() { echo "@@STEP $*"; }
modprobe nvme-tcp

# attach NQN: connects and prints the namespace's block device.
attach() {
	nvme connect -t tcp -a $ADDR -s $PORT -n "$1" >&2
	for i in $(seq 100); do
		for b in /sys/block/nvme*n*; do
			[ -e "$b" ] || continue
			case ${b##*/} in *c*) continue ;; esac
			if [ "$(cat $b/device/subsysnqn 2>/dev/null)" = "$1" ]; then
				echo /dev/${b##*/}
				return 0
			fi
		done
		sleep 0.1
	done
	echo "no namespace block device for $1" >&2
	return 1
}

# region DEV FIRST COUNT: COUNT MiB of DEV from MiB FIRST, to stdout.
region() { dd if=$1 bs=1M skip=$2 count=$3 iflag=direct 2>/dev/null; }

step connect
dev=$(attach $NQN)
echo "volume $dev"

step before-snapshot
dd if=/dev/urandom of=/tmp/p1 bs=1M count=8 2>/dev/null
dd if=/tmp/p1 of=$dev bs=1M seek=0 oflag=direct conv=fsync 2>/dev/null
region $dev 0 8 | cmp - /tmp/p1

step during-snapshot
dd if=/dev/urandom of=/tmp/p2 bs=1M count=16 2>/dev/null
# 64 KiB writes, one at a time: each is acknowledged before the next.
dd if=/tmp/p2 of=$dev bs=64k seek=256 oflag=direct 2>/dev/null &
writer=$!
sleep 0.3
touch /host/snap-now
for i in $(seq 600); do
	[ -e /host/snap-done ] && break
	sleep 0.1
done
[ -e /host/snap-done ] || { echo "the host took no snapshot"; exit 1; }
wait $writer
region $dev 16 16 | cmp - /tmp/p2

step after-snapshot
dd if=/dev/urandom of=/tmp/p3 bs=1M count=8 2>/dev/null
dd if=/tmp/p3 of=$dev bs=1M seek=0 oflag=direct conv=fsync 2>/dev/null
region $dev 0 8 | cmp - /tmp/p3

step clone
clone=$(attach $CLONE_NQN)
echo "clone $clone"
# What was acknowledged before the snapshot, not what came after it.
region $clone 0 8 | cmp - /tmp/p1
# Written while it was taken: each 64 KiB write is in the clone whole or
# not at all, and those in it are a prefix of the writer's.
dd if=/dev/zero of=/tmp/zero bs=64k count=1 2>/dev/null
taken=0
ended=no
for k in $(seq 0 255); do
	dd if=$clone bs=64k skip=$((256 + k)) count=1 iflag=direct 2>/dev/null > /tmp/got
	dd if=/tmp/p2 bs=64k skip=$k count=1 2>/dev/null > /tmp/want
	if cmp -s /tmp/got /tmp/want && [ $ended = no ]; then
		taken=$((taken + 1))
	elif cmp -s /tmp/got /tmp/zero; then
		ended=yes
	else
		echo "clone chunk $k is neither the writer's nor zeroes (or follows a hole)"
		exit 1
	fi
done
echo "the snapshot holds $taken of 256 chunks written while it was taken"
# Never written: zeroes, in the clone as in the volume.
dd if=/dev/zero of=/tmp/z8 bs=1M count=8 2>/dev/null
region $clone 8 8 | cmp - /tmp/z8
region $dev 40 8 | cmp - /tmp/z8

step disconnect
nvme disconnect -n $CLONE_NQN
nvme disconnect -n $NQN
echo "@@LVOL-KERNEL-OK"
