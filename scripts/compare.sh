#!/usr/bin/env bash
# compare.sh OLD NEW — two strata binaries on the rows of make bench, in
# one run: the local uring path and NVMe/TCP on loopback (each build's
# daemon on core CORE, driven by the same build's perf on GEN_CORE), then
# the target alone (both daemons driven by OLD's perf). Rounds interleave
# the builds; each row prints the medians and NEW/OLD. For a change's
# before and after: build the commit before it to a file and pass both.
#
# Env: ROUNDS (3), SECS per run (3), BENCH_DIR (.cache/bench), CORE (0),
# GEN_CORE (1), ONLY (local, tcp or target: that section alone).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 OLD_BINARY NEW_BINARY" >&2; exit 2; }
OLD=$(realpath "$1") NEW=$(realpath "$2")
ROUNDS=${ROUNDS:-3}
SECS=${SECS:-3}
CORE=${CORE:-0}
GEN_CORE=${GEN_CORE:-1}
ONLY=${ONLY:-}
DIR=${BENCH_DIR:-$PWD/.cache/bench}
./scripts/debian-deps.sh fio util-linux >/dev/null
mkdir -p "$DIR/tmpfs"
mountpoint -q "$DIR/tmpfs" || mount -t tmpfs -o size=1100m tmpfs "$DIR/tmpfs"
PIDS=()
cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$DIR/tmpfs" 2>/dev/null || true
}
trap cleanup EXIT
prefill() { [ -s "$1" ] || fio --name=fill --filename="$1" --size=1G --rw=write --bs=1M --direct=1 --ioengine=io_uring --iodepth=8 >/dev/null; }
median() { sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'; }
# jnum KEY: the number after "KEY": in the JSON on stdin.
jnum() { awk -F'[:,]' -v k="\"$1\"" '$1 ~ k {gsub(/ /, "", $2); print $2; exit}'; }

# row NAME CMD... : CMD is run with the binary as $BIN for each build and
# round and prints "iops p50"; prints the medians and the ratios.
row() {
	local name=$1
	shift
	local oi=() op=() ni=() np=() i p
	for _ in $(seq "$ROUNDS"); do
		read -r i p < <(BIN=$OLD "$@"); oi+=("$i"); op+=("$p")
		read -r i p < <(BIN=$NEW "$@"); ni+=("$i"); np+=("$p")
	done
	local moi mop mni mnp
	moi=$(printf '%s\n' "${oi[@]}" | median); mop=$(printf '%s\n' "${op[@]}" | median)
	mni=$(printf '%s\n' "${ni[@]}" | median); mnp=$(printf '%s\n' "${np[@]}" | median)
	awk -v n="$name" -v a="$moi" -v b="$mni" -v c="$mop" -v d="$mnp" -v r="${oi[*]} / ${ni[*]}" \
		'BEGIN{printf "| %s | %.0f | %.0f | **%.3f** | %s | %s | %s |\n", n, a, b, b/a, c, d, r}'
}

local_run() { # FILE RW BS QD
	"$BIN" perf -device "uring://$1" -rw "$2" -bs "$3" -qd "$4" -time "${SECS}s" -core "$CORE" -o json >"$DIR/out.json"
	echo "$(jnum iops <"$DIR/out.json") $(jnum lat_p50_us <"$DIR/out.json")"
}

# serve BIN NAME PORT: a daemon with a null and a file volume shared on PORT.
serve() {
	local d=$DIR/serve-$2
	rm -rf "$d"; mkdir -p "$d"
	taskset -c "$CORE" "$1" serve --cores "$CORE" --data-dir "$d" --api-socket "$d/api.sock" \
		--discovery-port 0 --log-level warn 2>"$d/serve.log" &
	PIDS+=($!)
	for _ in $(seq 100); do [ -S "$d/api.sock" ] && break; sleep 0.1; done
	local cli=("$1" --socket "$d/api.sock")
	"${cli[@]}" pool create nullp "null:///?size=2GiB" >/dev/null
	"${cli[@]}" volume create nullv --pool nullp --size 1GiB >/dev/null
	"${cli[@]}" share add nullv --nqn nqn.2024-01.io.strata:cmp-null --listen "127.0.0.1:$3" --allow-any-host >/dev/null
	"${cli[@]}" pool create filep "uring://$DIR/cmp-$2.img?size=1GiB" >/dev/null
	"${cli[@]}" volume create filev --pool filep --size 1GiB >/dev/null
	"${cli[@]}" share add filev --nqn nqn.2024-01.io.strata:cmp-file --listen "127.0.0.1:$3" --allow-any-host >/dev/null
	# Unmapped space reads as holes: write it in full first.
	"$1" perf -target "127.0.0.1:$3" -nqn nqn.2024-01.io.strata:cmp-file -rw write -bs 128KiB -qd 8 \
		-ios $((1 << 13)) -time 0 -o json >/dev/null
}
PORT_OLD=4461 PORT_NEW=4462
tcp_run() { # PERF_BIN DEV RW BS QD QUEUES: against the daemon of $BIN
	local port=$PORT_OLD
	[ "$BIN" = "$NEW" ] && port=$PORT_NEW
	taskset -c "$GEN_CORE" "$1" perf -target "127.0.0.1:$port" -nqn "nqn.2024-01.io.strata:cmp-$2" -rw "$3" -bs "$4" \
		-qd "$5" -queues "$6" -time "${SECS}s" -o json >"$DIR/out.json"
	echo "$(jnum iops <"$DIR/out.json") $(jnum lat_p50_us <"$DIR/out.json")"
}
same_build() { tcp_run "$BIN" "$@"; }
old_perf() { tcp_run "$OLD" "$@"; }

echo "| row | old IOPS | new IOPS | new/old | old p50 us | new p50 us | rounds (old / new) |"
echo "|---|---|---|---|---|---|---|"
want() { [ -z "$ONLY" ] || [ "$ONLY" = "$1" ]; }
want local && for store in disk tmpfs; do
	f=$DIR/data.img
	[ $store = tmpfs ] && f=$DIR/tmpfs/data.img
	prefill "$f"
	for w in "randread 4KiB 32" "randwrite 4KiB 32" "read 128KiB 8" "write 128KiB 8"; do
		set -- $w
		row "local $store $1 $2 qd$3" local_run "$f" "$1" "$2" "$3"
	done
done
want local && [ -n "$ONLY" ] && exit 0
serve "$OLD" old $PORT_OLD
serve "$NEW" new $PORT_NEW
want tcp && for dev in null file; do
	for w in "randread 4KiB 1 1" "randread 4KiB 32 1" "randread 4KiB 8 4" "randwrite 4KiB 1 1" \
		"randwrite 4KiB 32 1" "read 128KiB 8 1" "write 128KiB 8 1"; do
		set -- $w
		row "tcp $dev $1 $2 qd$3x$4" same_build "$dev" "$@"
	done
done
want target && for w in "randread 4KiB 1 1" "randread 4KiB 32 1" "read 128KiB 8 1" "write 128KiB 8 1"; do
	set -- $w
	row "target alone (old perf): null $1 $2 qd$3x$4" old_perf null "$@"
done
exit 0
