#!/bin/sh
# Throughput of the simulator alone: N empty files, `lfs-sim hsm_archive
# --files-from`, then one `lhsmtool-sim --noop` copytool drains them.
#
# Usage: lustre-sim/scripts/bench.sh [N] [PROFILE]   (defaults: 100000 release)
# Build first: cargo build --release -p lustre-sim -p lustre-sim-fakelib
# Extra copytool/simd options: CT_OPTS="--fanout 8" SIMD_OPTS="--trace /tmp/t"
set -eu
N=${1:-100000}
PROFILE=${2:-release}
TOP=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$TOP/target/$PROFILE
CT=$(ls -t "$BIN"/build/lustre-sim-*/out/lhsmtool-sim | head -1)
mkdir -p "$BIN/fake-lustre"
ln -sf ../liblustreapi.so "$BIN/fake-lustre/liblustreapi.so.1"
W=$(mktemp -d /tmp/sim-bench.XXXXXX)
mkdir -p "$W/mnt" "$W/hsm"
SIMD_PID=
CT_PID=
cleanup() {
	trap - EXIT INT TERM
	[ -n "$CT_PID" ] && kill "$CT_PID" 2>/dev/null || true
	[ -n "$SIMD_PID" ] && kill "$SIMD_PID" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$W"
}
trap cleanup EXIT INT TERM
now() { date +%s.%N; }
# CPU seconds (user + system) used so far by a process and its threads.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", ($14 + $15) / hz }' "/proc/$1/stat"; }
el() { echo "$2 - $1" | bc; }

"$BIN/lustre-simd" --root "$W/mnt" --fsname bench ${SIMD_OPTS:-} >"$W/simd.out" 2>"$W/simd.err" &
SIMD_PID=$!
while ! grep -q ready "$W/simd.out" 2>/dev/null; do sleep 0.05; done
"$BIN/lfs-sim" set_param --mount "$W/mnt" mdt.bench-MDT0000.hsm.max_requests=100000 >/dev/null

t0=$(now)
(cd "$W/mnt" && seq -f 'f%07g' 1 "$N" | xargs touch)
t1=$(now)
echo "create $N empty files: $(el "$t0" "$t1") s"

seq -f "$W/mnt/f%07g" 1 "$N" >"$W/list"
t0=$(now)
"$BIN/lfs-sim" hsm_archive --files-from "$W/list"
t1=$(now)
echo "lfs-sim hsm_archive --files-from ($N files): $(el "$t0" "$t1") s"

c0=$(cpu "$SIMD_PID")
t0=$(now)
LD_LIBRARY_PATH="$BIN/fake-lustre" "$CT" --noop --fanout 8 ${CT_OPTS:-} \
	--hsm-root "$W/hsm" "$W/mnt" 2>"$W/ct.log" &
CT_PID=$!
# Cheap polling: `wc -l` until the log could be complete, then count.
while [ "$(wc -l <"$W/ct.log")" -lt "$N" ] ||
	[ "$(grep -c '^lhsmtool-sim: ARCHIVE ' "$W/ct.log" || true)" -lt "$N" ]; do
	sleep 0.02
	if ! kill -0 "$CT_PID" 2>/dev/null; then
		echo "copytool died:"; tail "$W/ct.log"; exit 1
	fi
done
while [ -n "$("$BIN/lfs-sim" get_param --mount "$W/mnt" -n mdt.bench-MDT0000.hsm.active_requests)" ]; do
	sleep 0.02
done
t1=$(now)
c1=$(cpu "$SIMD_PID")
cct=$(cpu "$CT_PID")
d=$(el "$t0" "$t1")
echo "lhsmtool-sim --noop --fanout 8 drains $N archives: $d s ($(echo "$N / $d" | bc) requests/s)"
grep -c '^lhsmtool-sim: ARCHIVE .* rc=0 ' "$W/ct.log" | sed 's/^/successful items: /'
echo "CPU during the drain: lustre-simd $(el "$c0" "$c1") s, lhsmtool-sim $cct s"
echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
