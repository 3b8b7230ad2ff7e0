#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# What the README's first command shows: the filter ioctls answering on a
# real disk and on a partition of the freshly built kernel.
set -x
uname -r
cat /sys/block/vda/size /sys/block/vdb/vdb1/size
blkfilter attach /dev/vda blksnap
blkfilter attach /dev/vda "$(printf 'A%.0s' $(seq 40))"
blkfilter detach /dev/vda blksnap
blkfilter ctl /dev/vdb1 blksnap 1
blkfilter drop-root attach /dev/vda blksnap
