#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# What the README's first command shows: the block device filter ioctls
# answering on a disk and on a partition of the freshly built kernel.  No
# filter module exists yet, so every answer is one of the documented errors.
step() {
	echo
	echo "== $1"
	shift
	echo "\$ $*"
	"$@"
}

echo "kernel $(uname -r); vda: $(cat /sys/block/vda/size) sectors," \
	"vdb1: $(cat /sys/block/vdb/vdb1/size) sectors"
step "attach a filter nobody registered -> ENOENT" \
	blkfilter attach /dev/vda blksnap
step "a 40-byte name cannot be NUL-terminated in 32 bytes -> EINVAL" \
	blkfilter attach /dev/vda AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA
step "detach when nothing is attached -> ENOENT" \
	blkfilter detach /dev/vda blksnap
step "a command for a filter that is not attached, on a partition -> ENOENT" \
	blkfilter ctl /dev/vdb1 blksnap 1
step "any filter ioctl without CAP_SYS_ADMIN -> EPERM" \
	blkfilter drop-root attach /dev/vda blksnap
step "the disk still works: write and read back through the hook" \
	sh -c 'echo hello-blkfilter | dd of=/dev/vda bs=512 conv=sync 2>/dev/null &&
	       dd if=/dev/vda bs=512 count=1 2>/dev/null | head -c 15; echo'
true
