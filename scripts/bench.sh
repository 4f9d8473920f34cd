#!/usr/bin/env bash
# bench.sh — Strata's benchmarks, written to docs/benchmarks.md.
#
# 1. Go microbenchmarks (-benchmem): ring hand-off, reactor round trips,
#    histogram, codecs; and the idle CPU of started reactors.
# 2. The uring bdev against fio on the same file, one core each, in
#    interleaved rounds (this machine is noisy: medians of ROUNDS runs, and
#    ratios against fio measured in the same run). Two backing stores: a file
#    on the disk (device-bound) and a file on tmpfs (CPU-bound: it shows the
#    software cost of each tool).
#
# Env: ROUNDS (3), SECS per run (3), BENCH_DIR (.cache/bench), CORE (0).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CORE=${CORE:-0}
DIR=${BENCH_DIR:-$PWD/.cache/bench}
OUT=docs/benchmarks.md
mkdir -p "$DIR" docs
./scripts/debian-deps.sh fio
make -s build
STRATA=$PWD/bin/strata

echo "== Go microbenchmarks" >&2
micro=$(go test -run '^$' -bench . -benchmem -benchtime 1s \
	./reactor/mpsc/ ./bench/hist/ $(go list ./nvmeof/... 2>/dev/null) 2>&1 | grep -E '^Benchmark' || true)
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
	echo "software overhead of each tool. Target: ratio >= 0.95."
	echo
	echo "| store | pattern | bs | QD | Strata IOPS | Strata MiB/s | fio IOPS | fio MiB/s | ratio (IOPS) | rounds (Strata / fio) |"
	echo "|---|---|---|---|---|---|---|---|---|---|"
	printf '%s' "$rows"
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
	echo "signals a channel on completion; to a spinning reactor, and to a sleeping one that must be woken), histogram."
	echo
	echo '```'
	echo "$micro"
	echo "$react"
	echo '```'
} > "$OUT"
echo "wrote $OUT" >&2
