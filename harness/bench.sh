#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# bench.sh: the performance and memory benchmark (a command, not a test).
# Builds the product kernel plus dm-snapshot, boots it once under QEMU and
# runs harness/guest/bench.sh there; writes results.json and report.md to
# BLKSNAP_BENCH_OUT (default: bench/ in the repository, where the latest
# results are kept).  BENCH_REPEAT and BENCH_SIZE tune the guest side.
source "$(dirname "$0")/lib.sh"

outdir=${BLKSNAP_BENCH_OUT:-$REPO/bench}
rundir=${BLKSNAP_RUNDIR:-$CACHE/runs/bench-$(date +%Y%m%d-%H%M%S)}
"$REPO/harness/setup.sh"
"$REPO/harness/apply.sh"
"$REPO/harness/build.sh" bench
BLKSNAP_TIMEOUT=${BLKSNAP_TIMEOUT:-3600} "$REPO/harness/run-qemu.sh" bench bench "$rundir"
grep -q BLKSNAP-RUN-END "$rundir/results.log" || die "the guest did not finish; see $rundir"
mkdir -p "$outdir"
kernel="$(sed -n 's/^Linux version \([^ ]*\).*/\1/p' "$rundir/console.log" | head -1) (Debian linux-source-7.3 $KERNEL_VERSION_PIN + this series)"
case "$(cat "$rundir/diskdir")" in
/dev/shm/*) disks="disk images in host tmpfs" ;;
*) disks="disk images in host files (no tmpfs room)" ;;
esac
machine="$(nproc) x $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), QEMU $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') TCG, 2 vCPUs, 2 GiB, $disks"
python3 "$REPO/harness/bench.py" "$rundir/results.log" "$outdir" --machine "$machine" --kernel "$kernel"
log "bench: logs in $rundir, results in $outdir"
