#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The guest half of harness/demo.sh (init runs it in demo mode): an ext4 file
# system in use on /dev/vda, a snapshot of it taken with the blksnap tool
# (difference storage: an unnamed file the module creates in a directory of
# another file system and grows itself), the file changed, the snapshot
# image still holding the old file, and a second snapshot whose change map
# names the blocks changed since the first.
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
mkdir -p /mnt/live /mnt/snap /mnt/store

step "an ext4 file system on /dev/vda, in use"
run mkfs.ext4 -q -F /dev/vda
run mount /dev/vda /mnt/live
echo "monday's data" >/mnt/live/report.txt && sync
run cat /mnt/live/report.txt

step "a file system for difference storage, on /dev/vdb2"
run mkfs.ext4 -q -F /dev/vdb2
run mount /dev/vdb2 /mnt/store

step "track changes and take snapshot #1 (storage: a file in /mnt/store, up to 128 MiB)"
run blksnap attach -d /dev/vda
run blksnap cbtinfo -d /dev/vda
id=$(blksnap snapshot_create -d /dev/vda)
echo "snapshot id $id"
run blksnap snapshot_setstorage -i "$id" -p /mnt/store -l 262144
run blksnap snapshot_take -i "$id"
run blksnap snapshot_info -d /dev/vda
since=$(blksnap cbtinfo -d /dev/vda | sed -n 's/^changes_number=//p')

step "the file changes on the live file system"
echo "tuesday's data" >/mnt/live/report.txt && sync
run cat /mnt/live/report.txt

step "the snapshot image still has the file as it was"
image=$(blksnap snapshot_info -d /dev/vda | sed -n 's/^image=//p')
run mount -o ro,noload -t ext4 "$image" /mnt/snap
run cat /mnt/snap/report.txt
run umount /mnt/snap
run blksnap snapshot_destroy -i "$id"

step "snapshot #2: the change map says which blocks changed since #1"
id=$(blksnap snapshot_create -d /dev/vda)
echo "snapshot id $id"
run blksnap snapshot_setstorage -i "$id" -p /mnt/store -l 262144
run blksnap snapshot_take -i "$id"
run blksnap cbt changed -d /dev/vda --since "$since"
run blksnap --json snapshot_info -d /dev/vda
run blksnap snapshot_destroy -i "$id"
run umount /mnt/live
run blksnap detach -d /dev/vda
step "nothing is left in the storage directory"
run ls -la /mnt/store
run umount /mnt/store
