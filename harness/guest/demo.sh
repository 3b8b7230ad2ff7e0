#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The guest half of harness/demo.sh (init runs it in demo mode): an ext4 file
# system in use on /dev/vda, a snapshot of it taken with blksnapctl (difference
# storage on /dev/vdb2), the file changed, the snapshot image still holding the
# old file, and a second snapshot whose change map names the blocks changed
# since the first.
step() {
	echo
	echo "== $1"
}
run() {
	echo "\$ $*"
	"$@"
}
set -e
modprobe blksnap
mkdir -p /mnt/live /mnt/snap

step "an ext4 file system on /dev/vda, in use"
run mkfs.ext4 -q -F /dev/vda
run mount /dev/vda /mnt/live
echo "monday's data" >/mnt/live/report.txt && sync
run cat /mnt/live/report.txt

step "track changes and take snapshot #1 (storage: sectors of /dev/vdb2)"
run blksnapctl attach /dev/vda
id=$(blksnapctl create)
echo "snapshot id $id"
run blksnapctl add /dev/vda "$id"
run blksnapctl storage "$id" /dev/vdb2 0 262144
run blksnapctl take "$id"
run blksnapctl info /dev/vda

step "the file changes on the live file system"
echo "tuesday's data" >/mnt/live/report.txt && sync
run cat /mnt/live/report.txt

step "the snapshot image still has the file as it was"
image=$(blksnapctl info /dev/vda | sed 's/.*image //')
run mount -o ro,noload -t ext4 "$image" /mnt/snap
run cat /mnt/snap/report.txt
run umount /mnt/snap
run blksnapctl destroy "$id"

step "snapshot #2: the change map says which blocks changed since #1"
id=$(blksnapctl create)
run blksnapctl add /dev/vda "$id"
run blksnapctl storage "$id" /dev/vdb2 0 262144
run blksnapctl take "$id"
run blksnapctl cbt /dev/vda
run blksnapctl destroy "$id"
run umount /mnt/live
run blksnapctl detach /dev/vda
