#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# The blksnap tool end to end in the test guest (run by init as the
# selftest program "blksnap_tool"): attach, tracker facts, a snapshot on
# device ranges, a device added to a snapshot, one on a file's extents, and
# storage the module opens itself (a device, a directory, a named file), the
# image against the data of before the take, the changed extents, marking
# blocks dirty, stretched snapshots (ranges, files, storage the module
# opens), and the error messages of bad input.  Three memory-backed
# null_blk disks: the original, a storage disk and one for ext4.
# KTAP-like output: "ok N name" or "not ok N name # why".

PLAN=71
n=0
echo "1..$PLAN"
ok() {
	n=$((n + 1))
	echo "ok $n $1"
}
fail() {
	n=$((n + 1))
	# One line: multi-line output in the reason joined with '|'.
	echo "not ok $n $1 # $(printf '%s' "$2" | tr '\n' '|')"
}
# check NAME WHY-IF-NOT CONDITION...: one result from a test(1)-like command.
check() {
	name=$1 why=$2
	shift 2
	if "$@"; then ok "$name"; else fail "$name" "$why"; fi
}
# matches STRING BRE: grep's reading of a basic regular expression.
matches() { printf '%s\n' "$1" | grep -q -- "$2"; }
# The value of KEY in key=value lines.
val() { echo "$1" | sed -n "s/^$2=//p" | head -n1; }
# md5 of the first MiB of $1 from MiB $2, $3 MiB long.
sum_of() { dd if="$1" bs=1M skip="$2" count="$3" iflag=direct 2>/dev/null | md5sum | cut -d' ' -f1; }

NULLB=/sys/kernel/config/nullb
ORIG=/dev/bt_orig STORE=/dev/bt_store FSDISK=/dev/bt_fs
MNT=/tmp/bt_mnt
UUID_RE='^[0-9a-f]\{8\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{4\}-[0-9a-f]\{12\}$'
PARAM=/sys/module/blksnap/parameters/diff_storage_minimum

nullb_make() { # NAME MIB
	mkdir "$NULLB/$1" && echo "$2" >"$NULLB/$1/size" &&
		echo 1 >"$NULLB/$1/memory_backed" && echo 1 >"$NULLB/$1/power"
}
nullb_remove() {
	[ -d "$NULLB/$1" ] || return 0
	echo 0 >"$NULLB/$1/power"
	rmdir "$NULLB/$1"
}
teardown() {
	[ -n "${stretch_pid:-}" ] && kill "$stretch_pid" 2>/dev/null
	for id in $(blksnap snapshot_collect 2>/dev/null | sed -n 's/^id=//p'); do
		blksnap snapshot_destroy -i "$id"
	done
	umount "$MNT" 2>/dev/null
	blksnap detach -d $ORIG 2>/dev/null
	[ -n "${minimum:-}" ] && echo "$minimum" >$PARAM
	for d in bt_orig bt_store bt_fs; do nullb_remove $d; done
}
trap teardown EXIT

modprobe blksnap || { echo "# modprobe blksnap failed"; exit 1; }
[ -d $NULLB ] || mount -t configfs none /sys/kernel/config
nullb_make bt_orig 64 && nullb_make bt_store 64 && nullb_make bt_fs 32 ||
	{ echo "# cannot make null_blk disks"; exit 1; }
minimum=$(cat $PARAM)
orig_dev=$(cat /sys/block/bt_orig/dev)
# Data to write, made once: urandom is slow under TCG.
dd if=/dev/urandom of=/tmp/bt_rand bs=1M count=8 2>/dev/null

# --- the interface version and the tracker
echo "# step: the interface version and the tracker"
out=$(blksnap version)
check version "got: $out" matches "$(val "$out" version)" '^[0-9]*\.[0-9]*\.[0-9]*\.[0-9]*$'
check attach "failed" blksnap attach -d $ORIG
blksnap attach -d $ORIG
check attach_twice_is_done "exit $?" [ $? -eq 0 ]
out=$(blksnap cbtinfo -d $ORIG)
bs=$(val "$out" block_size)
check cbtinfo_capacity "got: $out" [ "$(val "$out" device_capacity)" = 67108864 ]
check cbtinfo_blocks_cover_device "got: $out" \
	[ $(($(val "$out" block_count) * bs)) -ge 67108864 -a $((bs & (bs - 1))) -eq 0 -a "$bs" -gt 0 ]
check cbtinfo_generation_is_uuid "got: $out" matches "$(val "$out" generation_id)" "$UUID_RE"
out=$(blksnap --json cbtinfo -d $ORIG)
check cbtinfo_json "got: $out" matches "$out" '^{"block_size":[0-9]*,"device_capacity":67108864,"block_count":[0-9]*,"generation_id":"[0-9a-f-]*","changes_number":[0-9]*}$'

# --- snapshot #1 on ranges of the storage disk; the image keeps the data
# of before the take while the original changes
echo "# step: snapshot #1 on ranges of the storage disk; the image keeps the data"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=8 oflag=direct 2>/dev/null
before=$(sum_of $ORIG 0 8)
id=$(blksnap snapshot_create -d $ORIG)
check snapshot_create_prints_id "got: $id" matches "$id" "$UUID_RE"
out=$(blksnap snapshot_appendstorage -i "$id" -d $STORE -r 0:65536 65536:65536)
check appendstorage_ranges "got: $out" [ "$(val "$out" sectors)" = 131072 ]
out=$(blksnap snapshot_collect)
check collect_lists_snapshot "got: $out" [ "$out" = "id=$id" ]
check snapshot_take "failed" blksnap snapshot_take -i "$id"
out=$(blksnap snapshot_info -d $ORIG)
image=$(val "$out" image)
check snapshot_info "got: $out" [ "$(val "$out" error_code)" = 0 -a "$image" = "/dev/blksnap-image_$orig_dev" -a -b "$image" ]
dd if=/tmp/bt_rand of=$ORIG bs=1M count=2 skip=4 seek=1 oflag=direct 2>/dev/null
check original_changed "the write did not reach the original" [ "$(sum_of $ORIG 0 8)" != "$before" ]
check image_has_data_before_take "image differs from the data at the take" [ "$(sum_of "$image" 0 8)" = "$before" ]
out=$(blksnap snapshot_waitevent -i "$id" -t 100)
# A new snapshot asks for storage at once: drain that event first.
while [ "$(val "$out" result)" = ok ]; do out=$(blksnap snapshot_waitevent -i "$id" -t 100); done
check waitevent_timeout "got: $out" [ "$(val "$out" result)" = timeout ]
c1=$(val "$(blksnap cbtinfo -d $ORIG)" changes_number)
check snapshot_destroy "failed" blksnap snapshot_destroy -i "$id"
check collect_empty_after_destroy "got: $(blksnap snapshot_collect)" [ -z "$(blksnap snapshot_collect)" ]

# --- snapshot #2: the change map names the blocks written after #1
echo "# step: snapshot #2"
id=$(blksnap snapshot_create -d $ORIG)
blksnap snapshot_appendstorage -i "$id" -d $STORE -r 0:131072 >/dev/null
blksnap snapshot_take -i "$id"
c2=$(val "$(blksnap cbtinfo -d $ORIG)" changes_number)
check changes_number_counts_takes "c1=$c1 c2=$c2" [ "$c2" -eq $((c1 + 1)) ]
# The 2 MiB written at 1 MiB, widened to whole tracking blocks.
first=$((1048576 / bs * bs))
end=$(((3145728 + bs - 1) / bs * bs))
out=$(blksnap cbt changed -d $ORIG --since "$c1")
check changed_since_1 "want offset=$first length=$((end - first)); got: $out" \
	[ "$(echo "$out" | grep '^offset=')" = "offset=$first length=$((end - first))" ]
out=$(blksnap cbt changed -d $ORIG --since "$c1" --sectors)
check changed_in_sectors "got: $out" \
	[ "$(echo "$out" | grep '^offset=')" = "offset=$((first / 512)) length=$(((end - first) / 512))" -a "$(val "$out" unit)" = sectors ]
out=$(blksnap cbt changed -d $ORIG --since 0)
check changed_since_0_has_first_fill "got: $out" [ "$(echo "$out" | grep '^offset=' | head -n1)" = "offset=0 length=8388608" ]
out=$(blksnap --json cbt changed -d $ORIG --since "$c2")
check changed_json_none_since_last "got: $out" matches "$out" '^{"unit":"bytes",.*"extents":\[\]}$'
gen=$(val "$(blksnap cbtinfo -d $ORIG)" generation_id)
err=$(blksnap cbt changed -d $ORIG --since "$c1" --generation 00000000-0000-0000-0000-000000000000 2>&1)
check changed_refuses_other_generation "got: $err" matches "$err" 'tracker started over'
out=$(blksnap readcbtmap -d $ORIG -f /tmp/bt_map)
check readcbtmap_file "got: $out, $(wc -c </tmp/bt_map) bytes" \
	[ "$(wc -c </tmp/bt_map)" = "$(val "$out" block_count)" -a "$(val "$out" generation_id)" = "$gen" ]
blksnap snapshot_destroy -i "$id"

# --- blocks marked dirty show as changed after the next take
echo "# step: blocks marked dirty show as changed after the next take"
blksnap markdirtyblock -d $ORIG -r 40960:8 >/dev/null
check markdirtyblock "exit $?" [ $? -eq 0 ]
id=$(blksnap snapshot_create -d $ORIG)
blksnap snapshot_appendstorage -i "$id" -d $STORE -r 0:131072 >/dev/null
blksnap snapshot_take -i "$id"
first=$((20971520 / bs * bs))
out=$(blksnap cbt changed -d $ORIG --since "$c2")
check dirty_block_changed "want offset=$first length=$bs; got: $out" \
	[ "$(echo "$out" | grep '^offset=')" = "offset=$first length=$bs" ]
blksnap snapshot_destroy -i "$id"

# --- a device added to a snapshot after its creation (attached on the way)
echo "# step: snapshot_add"
id=$(blksnap snapshot_create -d $ORIG)
check snapshot_add "failed" blksnap snapshot_add -i "$id" -d $FSDISK
blksnap snapshot_appendstorage -i "$id" -d $STORE -r 0:131072 >/dev/null
blksnap snapshot_take -i "$id"
out=$(blksnap snapshot_info -d $FSDISK)
check snapshot_add_has_image "got: $out" [ "$(val "$out" error_code)" = 0 -a "$(val "$out" image)" = "/dev/blksnap-image_$(cat /sys/block/bt_fs/dev)" ]
err=$(blksnap snapshot_add -i "$id" -d $FSDISK 2>&1)
rc=$?
check snapshot_add_of_a_member_refused "exit $rc, got: $err" matches "$rc $err" "^1 snapshot_add: $FSDISK: "
blksnap snapshot_destroy -i "$id"
blksnap detach -d $FSDISK

# --- storage from a file's extents: written extents serve, unwritten
# (fallocated) ones are refused
echo "# step: storage from a file's extents"
mkdir -p $MNT
mkfs.ext4 -q -F -O ^has_journal $FSDISK && mount $FSDISK $MNT
dd if=/dev/zero of=$MNT/written bs=1M count=16 conv=fsync 2>/dev/null
fallocate -l 4M $MNT/unwritten || echo "# fallocate failed"
id=$(blksnap snapshot_create -d $ORIG)
err=$(blksnap snapshot_appendstorage -i "$id" -f $MNT/unwritten 2>&1)
rc=$?
check file_unwritten_refused "exit $rc, got: $err" matches "$rc $err" '^1 .*FIEMAP_EXTENT_UNWRITTEN'
out=$(blksnap snapshot_appendstorage -i "$id" -f $MNT/written)
check file_storage_appended "got: $out" [ "$(val "$out" device)" = $FSDISK -a "$(val "$out" sectors)" = 32768 ]
before=$(sum_of $ORIG 0 16)
blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=8 seek=8 oflag=direct 2>/dev/null
out=$(blksnap snapshot_info -d $ORIG)
check file_storage_intact "got: $out" [ "$(val "$out" error_code)" = 0 ]
check file_storage_image "image differs from the data at the take" [ "$(sum_of "$(val "$out" image)" 0 16)" = "$before" ]
blksnap snapshot_destroy -i "$id"
rm -f $MNT/written $MNT/unwritten

# --- a named file the module opens and grows (direct I/O through ext4)
echo "# step: storage in a named file"
: >$MNT/named
before=$(sum_of $ORIG 0 16)
id=$(blksnap snapshot_create -d $ORIG)
check setstorage_named_file "failed" blksnap snapshot_setstorage -i "$id" -p $MNT/named -l 32768
blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=8 oflag=direct 2>/dev/null
out=$(blksnap snapshot_info -d $ORIG)
size=$(stat -c %s $MNT/named)
check setstorage_named_file_image "got: $out; file $size bytes" \
	[ "$(val "$out" error_code)" = 0 -a "$(sum_of "$(val "$out" image)" 0 16)" = "$before" -a "$size" -ge 8388608 ]
blksnap snapshot_destroy -i "$id"
umount $MNT

# --- storage the module opens itself: the whole storage disk, held
# exclusively, within a limit raised with the tool
echo "# step: storage the module opens itself"
before=$(sum_of $ORIG 0 16)
id=$(blksnap snapshot_create -d $ORIG)
check setstorage_device "failed" blksnap snapshot_setstorage -i "$id" -p $STORE -l 4096
err=$(blksnap snapshot_setstorage -i "$id" -p $STORE 2>&1)
rc=$?
check setstorage_twice_refused "exit $rc, got: $err" matches "$rc $err" '^1 snapshot_setstorage: .*(EBUSY)$'
check setstorage_raise_limit "failed" blksnap snapshot_setstorage -i "$id" -l 65536
check setstorage_take "failed" blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=16 oflag=direct 2>/dev/null
out=$(blksnap snapshot_info -d $ORIG)
check setstorage_intact "got: $out" [ "$(val "$out" error_code)" = 0 ]
check setstorage_image "image differs from the data at the take" [ "$(sum_of "$(val "$out" image)" 0 16)" = "$before" ]
blksnap snapshot_destroy -i "$id"

# --- an unnamed file the module creates in a directory and grows
echo "# step: storage in a directory"
mkdir -p /tmp/bt_store_dir
before=$(sum_of $ORIG 0 16)
id=$(blksnap snapshot_create -d $ORIG)
check setstorage_directory "failed" blksnap snapshot_setstorage -i "$id" -p /tmp/bt_store_dir -l 65536
check setstorage_directory_take "failed" blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=16 oflag=direct 2>/dev/null
out=$(blksnap snapshot_info -d $ORIG)
check setstorage_directory_image "image differs from the data at the take, got: $out" [ "$(val "$out" error_code)" = 0 -a "$(sum_of "$(val "$out" image)" 0 16)" = "$before" ]
blksnap snapshot_destroy -i "$id"
check setstorage_directory_empty "left: $(ls -A /tmp/bt_store_dir)" [ -z "$(ls -A /tmp/bt_store_dir)" ]

# Starts stretch_snapshot on snapshot $1 with the storage options that
# follow, logging to /tmp/bt_stretch, and waits (10 s at most) until it has
# answered the module's first request for storage.
start_stretch() {
	local id=$1 i=0
	shift
	blksnap stretch_snapshot -i "$id" "$@" -t 200 >/tmp/bt_stretch 2>&1 &
	stretch_pid=$!
	while [ $i -lt 50 ] && ! grep -q 'appended_sectors=' /tmp/bt_stretch; do
		usleep 200000
		i=$((i + 1))
	done
}

# Destroys snapshot $1 and waits for stretch_snapshot to end; its exit
# status in $rc.
end_stretch() {
	blksnap snapshot_destroy -i "$1"
	wait $stretch_pid
	rc=$?
	stretch_pid=
}

# --- a stretched snapshot: storage handed out from a range list as the
# module asks for it (2 MiB at a time here), up to the limit
echo "# step: a stretched snapshot"
echo 4096 >$PARAM
id=$(blksnap snapshot_create -d $ORIG)
start_stretch "$id" -d $STORE -r 0:131072 -l 16
check stretch_answers_first_request "log: $(tr '\n' '|' </tmp/bt_stretch)" grep -q 'event=low_free_space requested_nr_sect=4096 device=/dev/bt_store appended_sectors=4096 ' /tmp/bt_stretch
before=$(sum_of $ORIG 16 8)
blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=8 seek=16 oflag=direct 2>/dev/null
out=$(blksnap snapshot_info -d $ORIG)
check stretch_snapshot_intact "got: $out; log: $(tr '\n' '|' </tmp/bt_stretch)" [ "$(val "$out" error_code)" = 0 ]
check stretch_image "image differs from the data at the take" [ "$(sum_of "$(val "$out" image)" 16 8)" = "$before" ]
# 8 MiB copied: 16384 sectors used, more asked for each time 1 MiB is left.
total=$(sed -n 's/.*total_sectors=\([0-9]*\).*/\1/p' /tmp/bt_stretch | tail -n1)
answers=$(grep -c 'appended_sectors=[1-9]' /tmp/bt_stretch)
check stretch_grew_within_limit "total ${total:-none} in $answers answers" \
	[ "${total:-0}" -ge 16384 -a "${total:-0}" -le 32768 -a "$answers" -ge 4 ]
end_stretch "$id"
check stretch_ends_on_destroy "exit $rc; log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ $rc -eq 0 -a "$(tail -n1 /tmp/bt_stretch | cut -d' ' -f1)" = result=destroyed ]
sed 's/^/# stretch: /' /tmp/bt_stretch

# --- the limit: 2 MiB given, then nothing; 4 MiB of copies overflow the
# storage, the snapshot breaks (ENOSPC) and stretch_snapshot ends with 1
echo "# step: the limit"
id=$(blksnap snapshot_create -d $ORIG)
start_stretch "$id" -d $STORE -r 0:131072 -l 2
blksnap snapshot_take -i "$id"
dd if=/tmp/bt_rand of=$ORIG bs=1M count=4 seek=24 oflag=direct 2>/dev/null
wait $stretch_pid
rc=$?
stretch_pid=
log=$(tr '\n' '|' </tmp/bt_stretch)
check stretch_stops_at_limit "log: $log" grep -q 'event=low_free_space .*appended_sectors=0 note=limit reached' /tmp/bt_stretch
check stretch_ends_on_corrupted "exit $rc; log: $log" \
	matches "$rc $log" '^1 .*event=corrupted device='"$orig_dev"' err_code=28 error=ENOSPC|.*snapshot is corrupted'
out=$(blksnap snapshot_info -d $ORIG)
check info_names_the_break "got: $out" [ "$(val "$out" error_code)" = -28 -a "$(val "$out" error)" = ENOSPC ]
blksnap snapshot_destroy -i "$id"

# Waits up to 20 s for stretch_snapshot to have given $1 sectors in all.
wait_total() {
	i=0
	while [ $i -lt 100 ] && ! grep -q "total_sectors=$1\$" /tmp/bt_stretch; do
		usleep 200000
		i=$((i + 1))
	done
}

# Takes snapshot $1 and writes 1 MiB, then 2 MiB more, from MiB $2 of the
# original.  Answering (making a file and reading its extents, or raising
# a limit) is slower than a writer using up what is left, so the writer
# waits for each answer: 1 MiB of copies brings the second request, 2 MiB
# more the third.
take_and_write_twice() {
	blksnap snapshot_take -i "$1"
	dd if=/tmp/bt_rand of=$ORIG bs=1M count=1 seek="$2" oflag=direct 2>/dev/null
	wait_total 8192
	dd if=/tmp/bt_rand of=$ORIG bs=1M count=2 seek=$(($2 + 1)) oflag=direct 2>/dev/null
	wait_total 12288
}

# --- a stretched snapshot on files: each request a new file in the
# directory, written, given by its extents, removed once destroyed
echo "# step: a stretched snapshot on files"
mount $FSDISK $MNT && rm -f $MNT/named
id=$(blksnap snapshot_create -d $ORIG)
start_stretch "$id" -p $MNT -l 8
check stretch_file_made "log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ -f "$MNT/diff_storage#0" -a "$(grep -c "device=$FSDISK appended_sectors=4096 " /tmp/bt_stretch)" = 1 ]
before=$(sum_of $ORIG 32 3)
take_and_write_twice "$id" 32
out=$(blksnap snapshot_info -d $ORIG)
check stretch_files_intact "got: $out; files: $(ls $MNT | tr '\n' ' '); log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ "$(val "$out" error_code)" = 0 -a -f "$MNT/diff_storage#2" -a "$(sum_of "$(val "$out" image)" 32 3)" = "$before" ]
end_stretch "$id"
check stretch_files_removed "exit $rc; left: $(ls $MNT | tr '\n' ' ')" [ $rc -eq 0 -a ! -e "$MNT/diff_storage#0" ]
# A file the module refuses (the snapshot has storage it opens, given
# after the request) is not storage: the run ends with 1 and the hint,
# and the file goes.
id=$(blksnap snapshot_create -d $ORIG)
mkdir -p /tmp/bt_store_dir
out=$(blksnap snapshot_setstorage -i "$id" -p /tmp/bt_store_dir -l 8192 2>&1)
set_rc=$?
timeout 30 blksnap stretch_snapshot -i "$id" -p $MNT -l 8 -t 200 >/tmp/bt_stretch 2>&1
rc=$?
check stretch_refused_file_removed "setstorage exit $set_rc ($out); exit $rc; left: $(ls $MNT | tr '\n' ' '); log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ $set_rc -eq 0 -a $rc -eq 1 -a -z "$(ls $MNT | grep diff_storage)" -a "$(grep -c 'EBUSY.*stretched with --setstorage' /tmp/bt_stretch)" = 1 ]
blksnap snapshot_destroy -i "$id"
umount $MNT

# --- a stretched snapshot on storage the module opens: given at the first
# request with a limit of what it asks for, the limit raised at each
# no-space event (when 1 MiB is left of it)
echo "# step: a stretched snapshot on storage the module opens"
id=$(blksnap snapshot_create -d $ORIG)
start_stretch "$id" -s /tmp/bt_store_dir -l 8
check stretch_setstorage_given "log: $(tr '\n' '|' </tmp/bt_stretch)" \
	grep -q 'event=low_free_space requested_nr_sect=4096 storage=/tmp/bt_store_dir appended_sectors=4096 total_sectors=4096$' /tmp/bt_stretch
before=$(sum_of $ORIG 40 3)
take_and_write_twice "$id" 40
out=$(blksnap snapshot_info -d $ORIG)
log=$(tr '\n' '|' </tmp/bt_stretch)
check stretch_setstorage_raised "got: $out; log: $log" \
	[ "$(val "$out" error_code)" = 0 -a "$(grep -c 'event=no_space requested_nr_sect=4096 storage=' /tmp/bt_stretch)" = 2 -a "$(sum_of "$(val "$out" image)" 40 3)" = "$before" ]
end_stretch "$id"
check stretch_setstorage_ends_on_destroy "exit $rc; log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ $rc -eq 0 -a "$(tail -n1 /tmp/bt_stretch | cut -d' ' -f1)" = result=destroyed ]
echo "$minimum" >$PARAM

# --- the same on a device smaller than the request (the default minimum,
# 1 GiB, of a 64 MiB disk): the limit stops at the device's size, which is
# all the module takes
echo "# step: a stretched snapshot on a device smaller than a request"
id=$(blksnap snapshot_create -d $ORIG)
start_stretch "$id" -s $STORE
check stretch_setstorage_device_capped "log: $(tr '\n' '|' </tmp/bt_stretch)" \
	grep -q "storage=$STORE appended_sectors=131072 total_sectors=131072\$" /tmp/bt_stretch
end_stretch "$id"
check stretch_setstorage_device_ends_on_destroy "exit $rc; log: $(tr '\n' '|' </tmp/bt_stretch)" \
	[ $rc -eq 0 -a "$(tail -n1 /tmp/bt_stretch | cut -d' ' -f1)" = result=destroyed ]

# --- errors: the command, the device and the errno in words; exit 1 for
# a failed command, 2 for bad usage
echo "# step: errors"
err=$(blksnap snapshot_take -i 01234567-89ab-cdef-0123-456789abcdef 2>&1)
rc=$?
check error_unknown_snapshot "exit $rc, got: $err" [ $rc -eq 1 -a "$err" = "snapshot_take: /dev/blksnap-control: snapshot 01234567-89ab-cdef-0123-456789abcdef: No such process (ESRCH)" ]
err=$(blksnap cbtinfo -d $STORE 2>&1)
rc=$?
check error_not_attached "exit $rc, got: $err" [ $rc -eq 1 -a "$err" = "cbtinfo: $STORE: No such file or directory (ENOENT); is the blksnap filter attached?" ]
err=$(blksnap cbt changed -d $STORE --since 0 2>&1)
rc=$?
check error_names_the_command_given "exit $rc, got: $err" [ $rc -eq 1 -a "$err" = "cbt changed: $STORE: No such file or directory (ENOENT); is the blksnap filter attached?" ]
err=$(blksnap attach -d /dev/bt_none 2>&1)
rc=$?
check error_no_device "exit $rc, got: $err" [ $rc -eq 1 -a "$err" = "attach: /dev/bt_none: No such file or directory (ENOENT)" ]
echo data >/tmp/bt_tmpfs_file
err=$(blksnap markdirtyblock -f /tmp/bt_tmpfs_file 2>&1)
rc=$?
check error_file_without_fiemap "exit $rc, got: $err" [ $rc -eq 1 -a "$err" = "markdirtyblock: /tmp/bt_tmpfs_file: Operation not supported (EOPNOTSUPP)" ]
blksnap snapshot_take -i not-an-id 2>/dev/null
check error_bad_id_is_usage "exit $?" [ $? -eq 2 ]
blksnap snapshot_appendstorage -i 01234567-89ab-cdef-0123-456789abcdef -d $STORE -r 10:0 2>/dev/null
check error_zero_range_is_usage "exit $?" [ $? -eq 2 ]

# --- the end of tracking
echo "# step: the end of tracking"
check detach "failed" blksnap detach -d $ORIG
err=$(blksnap detach -d $ORIG 2>&1)
rc=$?
check detach_twice_fails "exit $rc, got: $err" \
	[ $rc -eq 1 -a "$err" = "detach: $ORIG: No such file or directory (ENOENT); is the blksnap filter attached?" ]

[ $n -eq $PLAN ] || echo "# ran $n checks of $PLAN planned"
exit 0
