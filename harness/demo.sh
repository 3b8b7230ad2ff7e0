#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# demo.sh: build the product kernel with our work, boot it under QEMU and
# print what harness/guest/demo.sh shows there: an ext4 file system
# snapshotted with blksnap, the snapshot image still holding a file changed
# since, and the change map between two snapshots.
source "$(dirname "$0")/lib.sh"

rundir=${BLKSNAP_RUNDIR:-$CACHE/runs/demo-$(date +%Y%m%d-%H%M%S)}
"$REPO/harness/setup.sh"
"$REPO/harness/apply.sh"
"$REPO/harness/build.sh" product
BLKSNAP_TIMEOUT=${BLKSNAP_TIMEOUT:-300} "$REPO/harness/run-qemu.sh" product demo "$rundir"
echo "---- guest output ($rundir/results.log) ----"
sed -n '/BLKSNAP-RUN-BEGIN/,/BLKSNAP-RUN-END/p' "$rundir/results.log"
grep -q BLKSNAP-RUN-END "$rundir/results.log" || die "the guest did not finish; see $rundir/console.log"
