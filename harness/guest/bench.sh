#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# bench.sh (guest): what blksnap costs a production workload, next to
# dm-snapshot, in one boot.  /dev/vda is the original, /dev/vdb the
# difference storage (or dm-snapshot's COW device); /dev/nullb0 is a 1 TiB
# null_blk for the memory measurement.  Everything is printed for the host
# (harness/bench.py) to parse: fio's JSON between BENCH-FIO markers, and
# "BENCH key value..." lines.
set -u
export DM_DISABLE_UDEV=1
# BENCH_REPEAT, BENCH_SIZE and BENCH_LOOPS, if the host set them.
[ -f /bench.env ] && . /bench.env
orig=/dev/vda
store=/dev/vdb
size=${BENCH_SIZE:-256M}
repeat=${BENCH_REPEAT:-5}
chunk_sectors=512	# dm-snapshot chunk = blksnap's 256 KiB chunk for 1 GiB

modprobe blksnap || exit 1
mkdir -p /mnt/bstore
store_sectors=$(blockdev --getsz $store)

fio_run() {
	name=$1 run=$2
	shift 2
	echo "BENCH-FIO-BEGIN $name $run"
	fio --output-format=json --name="$name" --direct=1 --ioengine=libaio "$@"
	echo "BENCH-FIO-END $name $run"
}
# A pass over 256 MiB takes a tenth of a second here: steady-state
# workloads repeat it (loops) so that one measurement lasts long enough to
# mean something; first writes cannot, each chunk is first only once.
loops=${BENCH_LOOPS:-6}
seq_write() {
	name=$1 run=$2 file=$3
	shift 3
	fio_run "$name" "$run" --filename="$file" --rw=write --bs=1M --iodepth=8 --size=$size "$@"
}
seq_read() {
	fio_run "$1" "$2" --filename="$3" --rw=read --bs=1M --iodepth=8 --size=$size --loops=$loops
}
rand_write() {
	fio_run "$1" "$2" --filename="$3" --rw=randwrite --bs=4k --iodepth=16 --size=$size \
		--io_size=32M --randrepeat=1 --random_generator=lfsr
}

snap_new() {
	id=$(blksnap snapshot_create -d $orig) &&
		blksnap snapshot_appendstorage -i "$id" -d $store -r 0:"$store_sectors" >/dev/null &&
		blksnap snapshot_take -i "$id" && echo "$id"
}

dm_new() {
	sz=$(blockdev --getsz $orig)
	dmsetup create bsnap --table "0 $sz snapshot $orig $store N $chunk_sectors" &&
		dmsetup create borig --table "0 $sz snapshot-origin $orig"
}
dm_remove() {
	dmsetup remove borig
	dmsetup remove bsnap
}
wipe_store() { dd if=/dev/zero of=$store bs=1M count=4 oflag=direct 2>/dev/null; }

# The disk images are sparse files on the host: the first write to a
# region makes the host allocate it, which the first round alone would
# pay for.  Write the storage disk once in full.
dd if=/dev/zero of=$store bs=1M oflag=direct 2>/dev/null

# Fill the region once so that reads and copies move real data, and the
# one after it, which the copy ceiling writes.
fio_run prefill 0 --filename=$orig --rw=write --bs=1M --iodepth=8 --size=$size >/dev/null
fio_run prefill 0 --filename=$orig --rw=write --bs=1M --iodepth=8 --size=$size \
	--offset=$size >/dev/null

# The most a first write can reach here: the three transfers it needs (read
# the old chunk, store it, write the new data) as concurrent streams on the
# same disks, without a snapshot.  bench.py takes a third of their total.
copy_ceiling() {
	echo "BENCH-FIO-BEGIN copy_ceiling $1"
	fio --output-format=json --direct=1 --ioengine=libaio --bs=1M --iodepth=8 \
		--time_based --runtime=3 \
		--name=load --filename=$orig --rw=read --size=$size \
		--name=store --filename=$store --rw=write --size=$size \
		--name=write --filename=$orig --rw=write --offset=$size --size=$size
	echo "BENCH-FIO-END copy_ceiling $1"
}

for run in $(seq 1 "$repeat"); do
	# Raw and tracked writes back to back, after an unrecorded pass: a
	# write that follows idle time finds the host's page cache written
	# back and runs faster, which would show up as a cost of tracking.
	seq_write warmup "$run" $orig --loops=$loops >/dev/null
	seq_write raw_write "$run" $orig --loops=$loops
	blksnap attach -d $orig
	seq_write tracked_write "$run" $orig --loops=$loops
	blksnap detach -d $orig
	copy_ceiling "$run"
	rand_write raw_randwrite "$run" $orig
	seq_read orig_read "$run" $orig

	blksnap attach -d $orig
	id=$(snap_new)
	seq_write cow_first_write "$run" $orig
	seq_write cow_rewrite "$run" $orig --loops=$loops
	# fio splits file names at ':', and image names have one: use a link.
	ln -sf "$(blksnap snapshot_info -d $orig | sed -n 's/^image=//p')" /dev/bench-image
	seq_read image_read "$run" /dev/bench-image
	seq_read orig_read_snap "$run" $orig
	blksnap snapshot_destroy -i "$id"
	id=$(snap_new)
	rand_write cow_randwrite "$run" $orig
	blksnap snapshot_destroy -i "$id"
	blksnap detach -d $orig
	# First writes again with four times the default bound on loaded
	# chunks in memory: how much the depth of the copy pipeline matters.
	rmmod blksnap && modprobe blksnap chunk_maximum_in_queue=64
	blksnap attach -d $orig
	id=$(snap_new)
	seq_write cow_first_write_q64 "$run" $orig
	blksnap snapshot_destroy -i "$id"
	blksnap detach -d $orig
	rmmod blksnap && modprobe blksnap

	# The same three with storage in a file the module creates and grows,
	# on ext4 on the storage disk, against the sector ranges above.  The
	# inode tables and the journal are written at mkfs, as in a file
	# system long in use: otherwise ext4 zeroes them in the background,
	# on the storage disk, while the first writes are measured.
	mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $store &&
		mount $store /mnt/bstore
	blksnap attach -d $orig
	id=$(blksnap snapshot_create -d $orig)
	blksnap snapshot_setstorage -i "$id" -p /mnt/bstore -l $((store_sectors * 3 / 4))
	blksnap snapshot_take -i "$id"
	seq_write file_first_write "$run" $orig
	seq_write file_rewrite "$run" $orig --loops=$loops
	ln -sf "$(blksnap snapshot_info -d $orig | sed -n 's/^image=//p')" /dev/bench-image
	seq_read file_image_read "$run" /dev/bench-image
	blksnap snapshot_destroy -i "$id"
	blksnap detach -d $orig
	# First writes once more, into a named file written in full
	# beforehand: no growth, and no unwritten extents for the file system
	# to convert as chunks are stored.  Where the gap above comes from.
	dd if=/dev/zero of=/mnt/bstore/written bs=1M count=384 oflag=direct 2>/dev/null
	sync
	blksnap attach -d $orig
	id=$(blksnap snapshot_create -d $orig)
	blksnap snapshot_setstorage -i "$id" -p /mnt/bstore/written -l $((384 * 2048))
	blksnap snapshot_take -i "$id"
	seq_write file_written_first_write "$run" $orig
	blksnap snapshot_destroy -i "$id"
	blksnap detach -d $orig
	umount /mnt/bstore

	wipe_store
	dm_new
	seq_write dm_first_write "$run" /dev/mapper/borig
	seq_write dm_rewrite "$run" /dev/mapper/borig --loops=$loops
	seq_read dm_image_read "$run" /dev/mapper/bsnap
	dm_remove
	wipe_store
	dm_new
	rand_write dm_randwrite "$run" /dev/mapper/borig
	dm_remove
done

# How long writes stall while a snapshot is taken: the worst write latency
# of a steady 4 KiB writer, with and without a take in the middle.
blksnap attach -d $orig
for run in $(seq 1 "$repeat"); do
	fio_run lat_no_take "$run" --filename=$orig --rw=randwrite --bs=4k --iodepth=1 \
		--size=$size --runtime=4 --time_based
	id=$(blksnap snapshot_create -d $orig)
	blksnap snapshot_appendstorage -i "$id" -d $store -r 0:"$store_sectors" >/dev/null
	(sleep 2; blksnap snapshot_take -i "$id") &
	fio_run lat_take "$run" --filename=$orig --rw=randwrite --bs=4k --iodepth=1 \
		--size=$size --runtime=4 --time_based
	wait
	blksnap snapshot_destroy -i "$id"
done
blksnap detach -d $orig

# Kernel memory for a 1 TiB device: slab and vmalloc, before attaching,
# with a snapshot taken and nothing written, and after writing 1 GiB.
mem() {
	sync
	echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
	sleep 1
	slab=$(awk '/^Slab:/ {print $2}' /proc/meminfo)
	vmalloc=$(awk '/^VmallocUsed:/ {print $2}' /proc/meminfo)
	percpu=$(awk '/^Percpu:/ {print $2}' /proc/meminfo)
	echo "BENCH mem $1 slab_kib=$slab vmalloc_kib=$vmalloc percpu_kib=$percpu"
}
null=/dev/nullb0
echo "BENCH nullb_sectors $(blockdev --getsz $null)"
mem before
blksnap attach -d $null
id=$(blksnap snapshot_create -d $null)
blksnap snapshot_appendstorage -i "$id" -d $store -r 0:"$store_sectors" >/dev/null
blksnap snapshot_take -i "$id"
mem taken
fio --name=fill --filename=$null --rw=write --bs=1M --iodepth=8 --direct=1 \
	--ioengine=libaio --size=1G >/dev/null
mem written_1g
echo "BENCH info $(blksnap snapshot_info -d $null | tr "\n" " ")"
blksnap snapshot_destroy -i "$id"
blksnap detach -d $null
mem released

# Metadata per changed chunk: with 4 KiB chunks, 1 GiB of writes to the
# original copies 262144 chunks, enough for the metadata to stand out of
# the noise of slab caches growing and shrinking.
rmmod blksnap && modprobe blksnap chunk_minimum_shift=12 chunk_maximum_count=1048576 || exit 1
blksnap attach -d $orig
id=$(snap_new)
mem small_chunks_taken
fio --name=fill --filename=$orig --rw=write --bs=1M --iodepth=8 --direct=1 \
	--ioengine=libaio --size=1G >/dev/null
mem small_chunks_written
echo "BENCH small_chunks_info $(blksnap snapshot_info -d $orig | tr "\n" " ")"
echo "BENCH small_chunks $(($(blockdev --getsize64 $orig) / 4096))"
blksnap snapshot_destroy -i "$id"
blksnap detach -d $orig
