#!/usr/bin/env bash
# build-guest.sh [OUT_DIR] — build the Linux guest the interop tests boot
# under QEMU (this host kernel has no nvme-tcp or vfio modules): Debian's
# kernel, and an initramfs with busybox, nvme-cli, mkfs.ext4 and the nvme-tcp,
# vfio and virtio modules. Everything comes from Debian packages; the result
# is cached in OUT_DIR (default .cache/guest) and rebuilt only when this
# script or the kernel package changes.
#
# The guest's /init mounts the host's share (9p tag "host0") on /host, sets
# up 10.0.2.15/24 (QEMU user networking; the host is 10.0.2.2), runs
# /host/$GUEST_SCRIPT (the name comes from the kernel command line), prints
# "@@GUEST-EXIT=<code>@@" and powers off.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-$PWD/.cache/guest}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

./scripts/debian-deps.sh qemu-system-x86 busybox-static cpio kmod libjson-c5 libssl3 zlib1g libkeyutils1 e2fsprogs

KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-6/{print $2; exit}')
if [ -z "$KPKG" ]; then
	apt-get update -qq
	KPKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-6/{print $2; exit}')
fi
KVER=${KPKG#linux-image-}
STAMP="$KPKG $(sha256sum "$0" | cut -c1-16)"
if [ -s "$OUT/initrd.gz" ] && [ -s "$OUT/vmlinuz" ] && [ "$(cat "$OUT/stamp" 2>/dev/null)" = "$STAMP" ]; then
	exit 0
fi
echo "building the guest image ($KPKG) in $OUT" >&2

W=$(mktemp -d "$OUT/build.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/debs" "$W/stage" "$W/root"
(cd "$W/debs" && apt-get download -qq "$KPKG" nvme-cli libnvme1 >/dev/null 2>&1) ||
	(apt-get update -qq && cd "$W/debs" && apt-get download -qq "$KPKG" nvme-cli libnvme1)
for d in "$W"/debs/*.deb; do dpkg-deb -x "$d" "$W/stage"; done
S=$W/stage R=$W/root
depmod -b "$S" "$KVER"

mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,proc,sys,dev,tmp,run,host,mnt,etc/nvme,lib64,lib/x86_64-linux-gnu}
MODS="virtio_pci virtio_net 9pnet_virtio 9p nvme-core nvme-fabrics nvme-tcp nvme
      vfio vfio-pci vfio_iommu_type1 crc32c_generic ext4"
for m in $MODS; do modprobe -d "$S" -S "$KVER" --show-depends "$m"; done |
	awk '/^insmod/{print $2}' | sort -u |
	while read -r ko; do install -D -m644 "$ko" "$R${ko#"$S"}"; done
cp "$S/lib/modules/$KVER"/modules.{builtin,builtin.modinfo,order} "$R/lib/modules/$KVER/"
depmod -b "$R" "$KVER"

cp /bin/busybox "$R/bin/busybox"
ln -s /bin/busybox "$R/sbin/modprobe" # the kernel's request_module runs /sbin/modprobe
cp "$S/usr/sbin/nvme" "$R/usr/sbin/nvme"
cp /sbin/mke2fs "$R/sbin/mke2fs"
ln -s mke2fs "$R/sbin/mkfs.ext4"
copy_libs() { # copy the shared libraries a binary needs
	LD_LIBRARY_PATH=$S/usr/lib/x86_64-linux-gnu ldd "$1" | awk '/=>/{print $3}' |
		while read -r l; do cp -L "$l" "$R/lib/x86_64-linux-gnu/"; done
}
copy_libs "$S/usr/sbin/nvme"
copy_libs /sbin/mke2fs
cp -L /lib64/ld-linux-x86-64.so.2 "$R/lib64/"
echo nqn.2014-08.org.nvmexpress:uuid:00000000-0000-4000-8000-00000000c1c1 > "$R/etc/nvme/hostnqn"
echo 00000000-0000-4000-8000-00000000c1c1 > "$R/etc/nvme/hostid"
cat > "$R/etc/mke2fs.conf" <<'CONF'
[defaults]
	base_features = sparse_super,large_file,filetype,resize_inode,dir_index,ext_attr
	default_mntopts = acl,user_xattr
	blocksize = 4096
	inode_size = 256
	inode_ratio = 16384
[fs_types]
	small = {
		inode_ratio = 4096
	}
	floppy = {
		inode_ratio = 8192
	}
	ext4 = {
		features = has_journal,extent,huge_file,flex_bg,metadata_csum,64bit,dir_nlink,extra_isize
	}
CONF
cat > "$R/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/sbin:/usr/sbin:/bin:/usr/bin HOME=/root # real tools before busybox applets
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev; mount -t tmpfs tmp /tmp
for m in virtio_pci virtio_net 9pnet_virtio 9p; do modprobe $m; done
ip link set lo up; ip link set eth0 up
ip addr add 10.0.2.15/24 dev eth0; ip route add default via 10.0.2.2
mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 host0 /host || echo "9p mount failed"
script=$(sed -n 's/.*guest_script=\([^ ]*\).*/\1/p' /proc/cmdline)
echo "@@GUEST-BOOTED uptime=$(cut -d' ' -f1 /proc/uptime)s"
cd /host
sh "/host/$script"; rc=$?
echo "@@GUEST-EXIT=$rc@@"
sync; poweroff -f
INIT
chmod +x "$R/init"
(cd "$R" && find . | cpio -o -H newc --quiet | gzip -1) > "$OUT/initrd.gz.tmp"
cp "$S/boot/vmlinuz-$KVER" "$OUT/vmlinuz"
mv "$OUT/initrd.gz.tmp" "$OUT/initrd.gz"
echo "$STAMP" > "$OUT/stamp"
echo "guest image ready: $OUT" >&2
