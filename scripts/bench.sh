#!/usr/bin/env bash
# bench.sh — Strata's benchmarks, written to docs/benchmarks.md.
#
# 1. Go microbenchmarks (-benchmem): ring hand-off, reactor round trips,
#    the cost of a bdev layer,
#    histogram, codecs; and the idle CPU of started reactors.
# 2. The uring bdev against fio on the same file, one core each, in
#    interleaved rounds (this machine is noisy: medians of ROUNDS runs, and
#    ratios against fio measured in the same run). Two backing stores: a file
#    on the disk (device-bound) and a file on tmpfs (CPU-bound: it shows the
#    software cost of each tool).
# 3. The volume store (bdev/lvol, bench/lvol_bench_test.go): volumes against
#    their pool device, first writes into a thin volume by cluster size,
#    snapshots under load, metadata memory per TiB.
# 4. NVMe/TCP end to end on loopback; 5. VFIO against the kernel in QEMU.
#
# Env: ROUNDS (3), SECS per run (3), BENCH_DIR (.cache/bench), CORE (0);
# the volume store's LVOL_SECS (1), LVOL_ROUNDS (5), LVOL_FIRST_ROUNDS (3),
# LVOL_TMPFS_DIR (/dev/shm): see bench/lvol_bench_test.go.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CORE=${CORE:-0}
GEN_CORE=${GEN_CORE:-1}
DIR=${BENCH_DIR:-$PWD/.cache/bench}
OUT=docs/benchmarks.md
mkdir -p "$DIR" docs
./scripts/debian-deps.sh fio iperf3 sockperf gnuplot-nox util-linux
make -s build
STRATA=$PWD/bin/strata

echo "== Go microbenchmarks" >&2
micro=$(go test -run '^$' -bench . -benchmem -benchtime 1s \
	-skip Lvol ./reactor/mpsc/ ./bench/ ./bench/hist/ ./bdev/part/ $(go list ./nvmeof/... 2>/dev/null) 2>&1 | grep -E '^Benchmark' || true)
react=$(go test -run '^$' -bench 'TaskRoundTrip|SendToSleeping' -benchmem -benchtime 20000x ./reactor/ | grep -E '^Benchmark')
idle=$(go test -run '^$' -bench IdleCPU -benchtime 3x ./reactor/ | grep -E '^Benchmark')

# Backing files: 1 GiB, fully written so reads touch real data.
TMPFS=$DIR/tmpfs
mkdir -p "$TMPFS"
mountpoint -q "$TMPFS" || mount -t tmpfs -o size=1100m tmpfs "$TMPFS"
trap 'umount "$TMPFS" 2>/dev/null || true' EXIT
prefill() { [ -s "$1" ] || fio --name=fill --filename="$1" --size=1G --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=8 >/dev/null; }

# strata_iops FILE RW BS QD -> "iops mibps"
strata_run() {
	"$STRATA" perf -device "uring://$1" -rw "$2" -bs "$3" -qd "$4" -time "${SECS}s" -core "$CORE" -o json |
		awk -F'[:,]' '/"iops"/{i=$2} /"mib_per_s"/{m=$2} END{printf "%.0f %.1f\n", i, m}'
}
fio_run() {
	local f=$1 rw=$2 bs=$3 qd=$4
	fio --name=b --filename="$f" --size=1G --rw="$rw" --bs="$bs" --direct=1 --ioengine=io_uring \
		--iodepth="$qd" --time_based --runtime="$SECS" --cpus_allowed="$CORE" --output-format=terse --terse-version=3 |
		awk -F';' -v rw="$rw" '{ if (rw ~ /write/) printf "%.0f %.1f\n", $49, $48/1024; else printf "%.0f %.1f\n", $8, $7/1024 }'
}
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# jnum KEY: the number after "KEY": in the JSON on stdin.
jnum() { awk -F'[:,]' -v k="\"$1\"" '$1 ~ k {gsub(/ /, "", $2); print $2; exit}'; }

rows=""
for store in disk tmpfs; do
	f=$DIR/data.img
	[ $store = tmpfs ] && f=$TMPFS/data.img
	prefill "$f"
	for w in "randread 4KiB 4k 32" "randwrite 4KiB 4k 32" "read 128KiB 128k 8" "write 128KiB 128k 8"; do
		set -- $w
		rw=$1 sbs=$2 fbs=$3 qd=$4
		s_iops=() s_mib=() f_iops=() f_mib=()
		for r in $(seq "$ROUNDS"); do
			read -r i m < <(strata_run "$f" "$rw" "$sbs" "$qd"); s_iops+=("$i"); s_mib+=("$m")
			read -r i m < <(fio_run "$f" "$rw" "$fbs" "$qd"); f_iops+=("$i"); f_mib+=("$m")
		done
		si=$(printf '%s\n' "${s_iops[@]}" | median); fi=$(printf '%s\n' "${f_iops[@]}" | median)
		sm=$(printf '%s\n' "${s_mib[@]}" | median); fm=$(printf '%s\n' "${f_mib[@]}" | median)
		ratio=$(awk -v a="$si" -v b="$fi" 'BEGIN{printf "%.2f", a/b}')
		echo "$store $rw $sbs qd$qd: strata $si IOPS ($sm MiB/s) fio $fi IOPS ($fm MiB/s) ratio $ratio" >&2
		rows+="| $store | $rw | $sbs | $qd | $si | $sm | $fi | $fm | **$ratio** | ${s_iops[*]} / ${f_iops[*]} |"$'\n'
	done
done

# --- 3. The volume store ----------------------------------------------
# Pools are files of their own (in /dev/shm, as the 1 GiB tmpfs above is too
# small for them, and in $DIR on the disk), removed afterwards. Each
# benchmark logs its table's rows; they are sorted out by benchmark name.
echo "== volume store (bdev/lvol)" >&2
if ! lvol_out=$(CORE=$CORE GEN_CORE=$GEN_CORE LVOL_DISK_DIR=$DIR go test -run '^$' -bench '^BenchmarkLvol' \
	-benchtime 1x -timeout 15m -v ./bench/ 2>&1); then
	echo "$lvol_out" >&2
	exit 1
fi
# lvol_rows NAME: the table rows BenchmarkLvolNAME logged.
lvol_rows() {
	awk -v b="BenchmarkLvol$1" '/^Benchmark/{cur=$1; sub(/-[0-9]+$/, "", cur)}
		cur == b && /lvol_bench_test.go:[0-9]+: \|/{sub(/.*lvol_bench_test.go:[0-9]+: /, ""); print}' <<<"$lvol_out"
}
lvol_pool=$(lvol_rows VsPool)
lvol_first=$(lvol_rows ThinFirstWrite)
lvol_snap=$(lvol_rows SnapshotUnderLoad)
lvol_mem=$(lvol_rows MetadataMemory)
printf '%s\n' "$lvol_pool" "$lvol_first" "$lvol_snap" "$lvol_mem" >&2

# --- 4. NVMe/TCP end to end -------------------------------------------
echo "== NVMe/TCP on loopback" >&2
SRV=$DIR/serve
rm -rf "$SRV"; mkdir -p "$SRV"
SOCK=$SRV/api.sock
PORT=${PORT:-4420}
taskset -c "$CORE" "$STRATA" serve --cores "$CORE" --data-dir "$SRV" --api-socket "$SOCK" \
	--discovery-port 0 --log-level warn 2>"$SRV/serve.log" &
SERVE_PID=$!
trap 'kill $SERVE_PID 2>/dev/null || true; wait $SERVE_PID 2>/dev/null || true; umount "$TMPFS" 2>/dev/null || true' EXIT
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
cli() { "$STRATA" --socket "$SOCK" "$@" >/dev/null; }
FILE=$DIR/data.img # the disk file of section 2, written in full
cli pool create nullp "null:///?size=2GiB"
cli volume create nullv --pool nullp --size 1GiB
cli share add nullv --nqn nqn.2024-01.io.strata:bench-null --listen "127.0.0.1:$PORT" --allow-any-host
cli pool create filep "uring://$FILE"
cli volume create filev --pool filep --size 1GiB
cli share add filev --nqn nqn.2024-01.io.strata:bench-file --listen "127.0.0.1:$PORT" --allow-any-host
# The new volume's space was unmapped (holes read as zeroes without touching
# the disk): write it in full again, through the target.
"$STRATA" perf -target "127.0.0.1:$PORT" -nqn nqn.2024-01.io.strata:bench-file -rw write -bs 128KiB -qd 8 \
	-ios $((1 << 13)) -time 0 -o json >/dev/null

# cpu_ticks PID: user+system clock ticks the process used so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
TICKS=$(getconf CLK_TCK)
# tcp_run NQN RW BS QD [QUEUES] -> "iops mibps p50 p99 target_cores"
tcp_run() {
	local t0 t1 out
	t0=$(cpu_ticks "$SERVE_PID")
	out=$(taskset -c "$GEN_CORE" "$STRATA" perf -target "127.0.0.1:$PORT" -nqn "$1" -rw "$2" -bs "$3" -qd "$4" -queues "${5:-1}" -time "${SECS}s" -o json)
	t1=$(cpu_ticks "$SERVE_PID")
	printf '%.0f %.1f %.1f %.1f %s\n' "$(jnum iops <<<"$out")" "$(jnum mib_per_s <<<"$out")" "$(jnum lat_p50_us <<<"$out")" \
		"$(jnum lat_p99_us <<<"$out")" "$(awk -v a="$t0" -v b="$t1" -v hz="$TICKS" -v s="$SECS" 'BEGIN{printf "%.2f", (b-a)/hz/s}')"
}
iperf_run() {
	iperf3 -s -1 -p 5299 -A "$CORE" >/dev/null 2>&1 &
	local srv=$!
	sleep 0.3
	iperf3 -c 127.0.0.1 -p 5299 -A "$GEN_CORE" -t "$SECS" -J |
		awk '/"sum_received"/{f=1} f && /"bits_per_second"/{gsub(/[^0-9.e+]/, "", $2); printf "%.1f\n", $2/8/1048576; exit}'
	wait $srv 2>/dev/null || true
}

# rtt_run -> the p50 round trip (us) of a 4 KiB ping-pong over loopback TCP
# between the same two cores, by two programs that sleep between messages.
rtt_run() {
	taskset -c "$CORE" sockperf server --tcp -i 127.0.0.1 -p 5300 >/dev/null 2>&1 &
	local srv=$!
	sleep 0.3
	taskset -c "$GEN_CORE" sockperf ping-pong --tcp -i 127.0.0.1 -p 5300 -m 4096 -t "$SECS" --full-rtt 2>&1 |
		awk '/percentile 50.000/{print $NF; exit}'
	kill "$srv" 2>/dev/null || true
	wait "$srv" 2>/dev/null || true
}

ip_mib=() rtts=()
for r in $(seq "$ROUNDS"); do ip_mib+=("$(iperf_run)"); rtts+=("$(rtt_run)"); done
iperf=$(printf '%s\n' "${ip_mib[@]}" | median)
rtt=$(printf '%s\n' "${rtts[@]}" | median)
echo "iperf3 loopback single stream: $iperf MiB/s (${ip_mib[*]}); sockperf 4 KiB round trip p50: $rtt us (${rtts[*]})" >&2

tcp_rows=""
for dev in null file; do
	nqn=nqn.2024-01.io.strata:bench-$dev
	# RW BS FIO_BS QD [QUEUES]: QD commands in flight on each of QUEUES
	# connections; fio's baseline keeps the same total in flight.
	for w in "randread 4KiB 4k 1" "randread 4KiB 4k 32" "randread 4KiB 4k 8 4" "randwrite 4KiB 4k 1" \
		"randwrite 4KiB 4k 32" "randwrite 4KiB 4k 8 4" "read 128KiB 128k 8" "write 128KiB 128k 8"; do
		set -- $w
		rw=$1 sbs=$2 fbs=$3 qd=$4 queues=${5:-1}
		qdcol=$qd
		[ "$queues" -gt 1 ] && qdcol="${queues}x$qd"
		s_iops=() s_mib=() s_p50=() s_p99=() s_cores=() f_iops=()
		for r in $(seq "$ROUNDS"); do
			read -r i m p50 p99 c < <(tcp_run "$nqn" "$rw" "$sbs" "$qd" "$queues")
			s_iops+=("$i"); s_mib+=("$m"); s_p50+=("$p50"); s_p99+=("$p99"); s_cores+=("$c")
			if [ $dev = file ]; then read -r i m < <(fio_run "$FILE" "$rw" "$fbs" $((qd * queues))); f_iops+=("$i"); fi
		done
		si=$(printf '%s\n' "${s_iops[@]}" | median); sm=$(printf '%s\n' "${s_mib[@]}" | median)
		p50=$(printf '%s\n' "${s_p50[@]}" | median); p99=$(printf '%s\n' "${s_p99[@]}" | median)
		cores=$(printf '%s\n' "${s_cores[@]}" | median)
		per_core=$(awk -v i="$si" -v c="$cores" 'BEGIN{ if (c > 0) printf "%.0f", i/c; else print "-" }')
		base=""
		if [ $dev = file ]; then
			fi=$(printf '%s\n' "${f_iops[@]}" | median)
			base="fio local $fi IOPS: **$(awk -v a="$si" -v b="$fi" 'BEGIN{printf "%.2f", a/b}')**"
		elif [ "$qd" = 1 ]; then
			base="sockperf round trip $rtt us: **$(awk -v r="$rtt" -v p="$p50" 'BEGIN{printf "%.2f", r/p}')** (of p50)"
		fi
		if [ "$rw" = read ]; then
			base="${base:+$base; }iperf3: **$(awk -v a="$sm" -v b="$iperf" 'BEGIN{printf "%.2f", a/b}')**"
		fi
		echo "tcp $dev $rw $sbs qd$qdcol: $si IOPS $sm MiB/s p50 $p50 p99 $p99 us, target $cores cores; $base" >&2
		tcp_rows+="| $dev | $rw | $sbs | $qdcol | $si | $sm | $p50 | $p99 | $cores | $per_core | ${base:--} |"$'\n'
	done
done

# Latency against IOPS as the queue deepens: null volume, 4 KiB randread.
echo "== queue depth sweep" >&2
CHART_DATA=$DIR/qd-sweep.dat
echo "# qd iops p50_us p99_us" >"$CHART_DATA"
sweep_rows=""
for qd in 1 2 4 8 16 32 64 128; do
	read -r i m p50 p99 c < <(tcp_run nqn.2024-01.io.strata:bench-null randread 4KiB "$qd")
	echo "$qd $i $p50 $p99" >>"$CHART_DATA"
	sweep_rows+="| $qd | $i | $p50 | $p99 | $c |"$'\n'
done
gnuplot <<GNUPLOT
set terminal pngcairo size 900,560 font "sans,10"
set output "docs/bench-latency.png"
set title "Strata NVMe/TCP on loopback: 4 KiB random read, null volume, one target core"
set xlabel "IOPS"
set ylabel "latency (us)"
set logscale y
set grid
set key top left
plot "$CHART_DATA" using 2:3 with linespoints pt 7 title "p50", \
     "$CHART_DATA" using 2:4 with linespoints pt 5 title "p99", \
     "$CHART_DATA" using 2:4:(sprintf("QD %d", \$1)) with labels offset 0,1 notitle
GNUPLOT
kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true
# --- 5. userspace NVMe (VFIO) against the kernel's nvme driver, in QEMU ---
echo "== VFIO in the QEMU guest" >&2
vfio_out=$(SECS=$SECS go test -run '^$' -bench VFIOvsKernelInQEMU -benchtime 1x -v ./bdev/pcie/ 2>&1 | grep -E 'bench_test.go|^Benchmark' || true)
vfio_rows=$(awk '/bench_test.go/{sub(/.*bench_test.go:[0-9]+: /, ""); print}' <<<"$vfio_out")
vfio_ratios=$(grep -o '[0-9.]* ratio-[A-Za-z0-9-]*' <<<"$vfio_out" | awk '{sub(/ratio-/, "", $2); printf "| %s | **%s** |\n", $2, $1}')
vfio_idle=$(grep -o '[0-9.]* idle-%core' <<<"$vfio_out" | awk '{printf "%.1f", $1}')

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
disk=$(df -h --output=source,fstype "$DIR" | tail -1 | awk '{print $1" ("$2")"}')
{
	echo "# Benchmarks"
	echo
	echo "Written by \`make bench\` (scripts/bench.sh) on $(date -u +%Y-%m-%d). Figures from one machine are"
	echo "only comparable within the same run: read the ratios, not the absolutes."
	echo
	echo "Machine: $(nproc) cores ($cpu), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r), $(fio --version)."
	echo
	echo "## uring bdev against fio on the same file"
	echo
	echo "One reactor pinned to core $CORE (\`strata perf -device uring://FILE -rw RW -bs BS -qd QD -time ${SECS}s -core $CORE\`)"
	echo "against \`fio --ioengine=io_uring --direct=1 --rw=RW --bs=BS --iodepth=QD --time_based --runtime=$SECS --cpus_allowed=$CORE\`,"
	echo "on a 1 GiB file written in full beforehand. $ROUNDS interleaved rounds of each; medians shown, every round in the last column."
	echo "\"disk\" is a file on $disk; \"tmpfs\" is a file in RAM, where the device costs almost nothing and the ratio is the"
	echo "software overhead of each tool (tmpfs 128 KiB copies run in an io-wq worker on the reactor's core, which the"
	echo "reactor's spin with I/O in flight costs ~9%: docs/profile-target.md). Target: ratio >= 0.95."
	echo
	echo "| store | pattern | bs | QD | Strata IOPS | Strata MiB/s | fio IOPS | fio MiB/s | ratio (IOPS) | rounds (Strata / fio) |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$rows"
	echo
	echo "## Volume store (bdev/lvol)"
	echo
	echo "\`go test -run '^\$' -bench '^BenchmarkLvol' -benchtime 1x -v ./bench/\` (bench/lvol_bench_test.go): pools are"
	echo "files driven through io_uring (the uring device), one in tmpfs (/dev/shm: the device costs almost nothing, so a"
	echo "ratio is the store's software cost) and one on the disk ($disk). The volumes' I/O runs on one reactor"
	echo "pinned to core $CORE, the store's metadata reactor (first writes, copies on write, journal) on core $GEN_CORE."
	echo
	echo "### Volumes against their pool device"
	echo
	echo "4 KiB random reads and writes at QD 32 for ${LVOL_SECS:-1}s per run: the pool's own device over the bytes the thick"
	echo "volume maps (raw), a thick volume of 1 GiB, and a thin one of 1 GiB written whole first (every cluster"
	echo "allocated: the in-place path); 1 MiB clusters. ${LVOL_ROUNDS:-5} interleaved rounds (raw, thick, thin, raw, ...), medians;"
	echo "ratios of IOPS against raw. Target: >= 0.97."
	echo
	echo "| store | pattern | raw IOPS | thick IOPS | thin IOPS | thick / raw | thin / raw | p99 us raw / thick / thin | rounds raw / thick / thin |"
	echo "|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "$lvol_pool"
	echo
	echo "### First writes into a thin volume, by cluster size"
	echo
	echo "4 KiB writes, each into a cluster of its own (a stride of one cluster), of a thin volume in a fresh pool:"
	echo "first into unallocated clusters (the store allocates one, zeroes the rest of it, flushes the pool and journals"
	echo "the mapping before it answers), for half of ${LVOL_SECS:-1}s or 16 GiB of clusters, then the same writes again over the"
	echo "clusters that pass allocated (in place), for as long. Medians of ${LVOL_FIRST_ROUNDS:-3} rounds (a fresh pool file each)."
	echo
	echo "| store | cluster | QD | first IOPS | first p50 us | first p99 us | allocated IOPS | allocated p50 us | allocated p99 us | first / allocated IOPS | rounds: first IOPS / clusters written |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "$lvol_first"
	echo
	echo "### Snapshots under load"
	echo
	echo "A thin volume of 64 MiB written whole (1 MiB clusters) under 4 KiB random writes at QD 32; ${LVOL_SNAPSHOTS:-20} snapshots"
	echo "100 ms apart, all kept. \"pause\" is the I/O pause Snapshot returns (quiesce: the writes in flight finish; pool"
	echo "flush; the snapshot's record durable; resume), \"call\" the whole call. The load's IOPS, p99 and max in the run with the"
	echo "snapshots are set against runs of the same length without (median of one before, one after). After each"
	echo "snapshot every cluster of the volume is shared: the next write into each is a copy on write of its 1 MiB,"
	echo "which the load's figures during the snapshots include."
	echo
	echo "| store | snapshots | pause p50 us | pause p99 us | call p50 us | call p99 us | load IOPS with / without | load p99 us with / without | load max us with / without | each pause, ms |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s\n' "$lvol_snap"
	echo
	echo "### Metadata memory"
	echo
	echo "Go heap (runtime.MemStats after GC) a pool of 1 TiB of 1 MiB clusters takes (a sparse file in tmpfs), against"
	echo "what the format predicts: a 4-byte reference count and a bit of free bitmap per cluster; a map of 4-byte"
	echo "entries in pages of 1024, and a pointer per page. The reactors' mapped I/O buffers (journal, checkpoint"
	echo "and copy buffers) are not Go heap and not counted."
	echo
	echo "| what | from the format, bytes | measured, bytes |"
	echo "|---|---|---|"
	printf '%s\n' "$lvol_mem"
	echo
	echo "## NVMe/TCP end to end on loopback"
	echo
	echo "\`taskset -c $CORE strata serve --cores $CORE\` (one target core) with a null volume (1 GiB in a null pool) and a file"
	echo "volume (the whole 1 GiB disk file of the table above, written in full through the target first), each shared on"
	echo "127.0.0.1:$PORT; \`taskset -c $GEN_CORE strata perf -target 127.0.0.1:$PORT -nqn NQN -rw RW -bs BS -qd QD -time ${SECS}s\`"
	echo "(one connection, one generator core; QD \"4x8\" is 8 commands in flight on each of 4 connections, \`-queues 4\`,"
	echo "against fio at iodepth 32). Medians of $ROUNDS rounds. \"target cores\" is the daemon's CPU time per second"
	echo "of the run (/proc/PID/stat); IOPS per target core divides by it. Baselines, in the same run: fio on the file volume's"
	echo "own file with the same pattern (interleaved with the Strata rounds), and iperf3 single stream on loopback between"
	echo "the same two cores: **$iperf MiB/s** (rounds: ${ip_mib[*]}). The null QD 1 rows compare their p50 with the p50"
	echo "round trip of a 4 KiB TCP ping-pong between those cores (\`sockperf ping-pong --tcp -m 4096 --full-rtt\`):"
	echo "**$rtt us** (rounds: ${rtts[*]}), what a round trip costs two programs that sleep between messages. Strata's"
	echo "reactors spin for 50 us after their last work (1 ms while disk I/O or a send is in flight, \`--spin-io\`) and"
	echo "\`strata perf\` polls its socket for 50 us (\`-busy-poll\`), so both ends of a QD 1 run stay awake; each uses"
	echo "its whole core for it (\"target cores\")."
	echo "Targets: 128 KiB read >= 0.80 of iperf3; file volume >= 0.85 of local fio IOPS."
	echo
	echo "| volume | pattern | bs | QD | IOPS | MiB/s | p50 us | p99 us | target cores | IOPS per target core | baseline: ratio |"
	echo "|---|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$tcp_rows"
	echo
	echo "### Latency as the queue deepens"
	echo
	echo "Null volume, 4 KiB random read, one connection, one run of ${SECS}s per queue depth."
	echo
	echo "![latency against IOPS](bench-latency.png)"
	echo
	echo "| QD | IOPS | p50 us | p99 us | target cores |"
	echo "|---|---|---|---|---|"
	printf '%s' "$sweep_rows"
	echo
	echo "## Userspace NVMe driver against the kernel's, in a QEMU guest"
	echo
	echo "\`go test -run '^\$' -bench VFIOvsKernelInQEMU -benchtime 1x ./bdev/pcie/\`: one guest (TCG, emulated Intel IOMMU,"
	echo "QEMU's emulated NVMe controller on a 256 MiB image), the same load for ${SECS}s through the guest kernel's nvme driver"
	echo "(\`strata perf -device uring:///dev/nvme0n1\`: io_uring, O_DIRECT) and through Strata's VFIO driver"
	echo "(\`strata perf -device pcie://BDF\`), one reactor on guest core 0. Strata perf stands in for fio here: fio's"
	echo "libraries (64 shared objects, 80 MiB: ceph, gluster, ICU...) would swell the guest image; the table above compares"
	echo "strata perf with fio on the host's io_uring path. Under emulation absolute figures mean little: read the ratio"
	echo "(userspace / kernel IOPS; goal >= 1.0)."
	echo
	echo "| load | ratio |"
	echo "|---|---|"
	printf '%s\n' "$vfio_ratios"
	echo
	echo "An idle daemon in the guest with a pcie:// pool, a volume and a share used **${vfio_idle}% of a core** over 5 s:"
	echo "its reactors poll the NVMe queues only while commands are outstanding and sleep otherwise."
	echo
	echo '```'
	echo "$vfio_rows"
	echo '```'
	echo
	echo "## Idle CPU"
	echo
	echo "Reactors started on every core, no I/O, measured over 3 s (\`go test -bench IdleCPU -benchtime 3x ./reactor/\`). Target < 1% of a core."
	echo
	echo '```'
	echo "$idle"
	echo '```'
	echo
	echo "## Microbenchmarks"
	echo
	echo "\`go test -bench . -benchmem\`: MPSC ring hand-off (PushPop uncontended, Handoff across cores, RoundTrip ="
	echo "two hand-offs between spinning goroutines), reactor task round trips (a task that submits an io_uring NOP and"
	echo "raises a flag the benchmark polls on completion; to a spinning reactor, and to a sleeping one that must be woken), histogram,"
	echo "the local bdev path per I/O (LocalPath: generator, channel, device and completion on one reactor; lvol-*: through"
	echo "a volume of the volume store on a malloc pool, every device written whole first), PDU parsing and"
	echo "encoding and CRC32C over 4 KiB (nvmeof/pdu), and the target through the Go host on loopback (nvmeof/target)."
	echo
	echo '```'
	echo "$micro"
	echo "$react"
	echo '```'
} > "$OUT"
echo "wrote $OUT" >&2
