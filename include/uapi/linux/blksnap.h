/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * User interface of the blksnap module: point-in-time snapshots of block
 * devices and tracking of the blocks changed between snapshots.
 *
 * Two channels carry commands.  Per-device commands travel through the block
 * device filter ioctl BLKFILTER_CTL (see linux/blk-filter.h) on the device
 * itself, with the filter name "blksnap".  Snapshot-wide commands are ioctls
 * on the control device /dev/blksnap-control.
 *
 * Every field that carries a user space address is a __u64, and every
 * 64-bit field is 8-byte aligned (__aligned_u64), so that 32-bit programs
 * see exactly the layout and sizes of 64-bit ones.
 */
#ifndef _UAPI_LINUX_BLKSNAP_H
#define _UAPI_LINUX_BLKSNAP_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define BLKSNAP_CTL		"blksnap-control"
#define BLKSNAP_IMAGE_NAME	"blksnap-image"
#define BLKSNAP			'V'

/**
 * enum blkfilter_ctl_blksnap - commands for BLKFILTER_CTL on a block device
 * @blkfilter_ctl_blksnap_cbtinfo: Fill a &struct blksnap_cbtinfo describing
 *	the device's change tracker.
 * @blkfilter_ctl_blksnap_cbtmap: Copy part of the change map as it was when
 *	the last snapshot was taken, as described by a &struct
 *	blksnap_cbtmap.  Returns the number of bytes copied.
 * @blkfilter_ctl_blksnap_cbtdirty: Mark the sector ranges listed in a
 *	&struct blksnap_cbtdirty as changed, for example after a backup
 *	program modified a snapshot image.
 * @blkfilter_ctl_blksnap_snapshotadd: Add the device to the snapshot named
 *	in a &struct blksnap_snapshotadd.
 * @blkfilter_ctl_blksnap_snapshotinfo: Fill a &struct blksnap_snapshotinfo
 *	with the state of the device's snapshot.
 */
enum blkfilter_ctl_blksnap {
	blkfilter_ctl_blksnap_cbtinfo,
	blkfilter_ctl_blksnap_cbtmap,
	blkfilter_ctl_blksnap_cbtdirty,
	blkfilter_ctl_blksnap_snapshotadd,
	blkfilter_ctl_blksnap_snapshotinfo,
};

#ifndef UUID_SIZE
#define UUID_SIZE 16
#endif

/**
 * struct blksnap_uuid - a 128-bit identifier
 * @b: The identifier's bytes.
 */
struct blksnap_uuid {
	__u8 b[UUID_SIZE];
};

/**
 * struct blksnap_cbtinfo - the change tracker of a device
 * @device_capacity: Size of the device in bytes.
 * @block_size: Size of one tracking block in bytes, a power of two.
 * @block_count: Number of tracking blocks, and so of bytes in the map.
 * @generation_id: Changes whenever the tracker starts over, for example
 *	after the map ran out of snapshot numbers or the device changed size.
 *	Maps of different generations cannot be compared.
 * @changes_number: Number of the last snapshot taken in this generation.
 *	A map byte holds the number of the last snapshot after which its
 *	block was written, or 0 if it was not written in this generation.
 */
struct blksnap_cbtinfo {
	__aligned_u64 device_capacity;
	__u32 block_size;
	__u32 block_count;
	struct blksnap_uuid generation_id;
	__u8 changes_number;
};

/**
 * struct blksnap_cbtmap - a window into the change map
 * @offset: Index of the first map byte (tracking block) to copy.
 * @length: Number of bytes the buffer at @buffer can take.
 * @buffer: User space address of the buffer.
 */
struct blksnap_cbtmap {
	__u32 offset;
	__u32 length;
	__aligned_u64 buffer;
};

/**
 * struct blksnap_sectors - a range of sectors
 * @offset: First sector.
 * @count: Number of sectors; never zero.
 */
struct blksnap_sectors {
	__u64 offset;
	__u64 count;
};

/**
 * struct blksnap_cbtdirty - ranges to mark as changed
 * @count: Number of elements at @dirty_sectors.
 * @dirty_sectors: User space address of an array of &struct blksnap_sectors.
 */
struct blksnap_cbtdirty {
	__u32 count;
	__aligned_u64 dirty_sectors;
};

/**
 * struct blksnap_snapshotadd - the snapshot to add a device to
 * @id: Identifier returned by IOCTL_BLKSNAP_SNAPSHOT_CREATE.
 */
struct blksnap_snapshotadd {
	struct blksnap_uuid id;
};

#define IMAGE_DISK_NAME_LEN 32

/**
 * struct blksnap_snapshotinfo - the state of a device's snapshot
 * @error_code: 0 while the snapshot is intact.  Otherwise the negative errno
 *	that broke it: -ENOSPC if the difference storage ran out, another
 *	error if data could not be copied.  Cleared when the device is added
 *	to a new snapshot.
 * @image: Name of the image block device once the snapshot is taken
 *	("blksnap-image_MAJ:MIN"), an empty string before.
 *
 * A device in no snapshot, or in one not taken yet, gets all zeroes.
 */
struct blksnap_snapshotinfo {
	__s32 error_code;
	__u8 image[IMAGE_DISK_NAME_LEN];
};

/**
 * enum blksnap_ioctl - numbers of the ioctls on /dev/blksnap-control
 * @blksnap_ioctl_version: IOCTL_BLKSNAP_VERSION
 * @blksnap_ioctl_snapshot_create: IOCTL_BLKSNAP_SNAPSHOT_CREATE
 * @blksnap_ioctl_snapshot_destroy: IOCTL_BLKSNAP_SNAPSHOT_DESTROY
 * @blksnap_ioctl_snapshot_append_storage: IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE
 * @blksnap_ioctl_snapshot_take: IOCTL_BLKSNAP_SNAPSHOT_TAKE
 * @blksnap_ioctl_snapshot_collect: IOCTL_BLKSNAP_SNAPSHOT_COLLECT
 * @blksnap_ioctl_snapshot_wait_event: IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT
 * @blksnap_ioctl_snapshot_set_storage: IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE
 */
enum blksnap_ioctl {
	blksnap_ioctl_version,
	blksnap_ioctl_snapshot_create,
	blksnap_ioctl_snapshot_destroy,
	blksnap_ioctl_snapshot_append_storage,
	blksnap_ioctl_snapshot_take,
	blksnap_ioctl_snapshot_collect,
	blksnap_ioctl_snapshot_wait_event,
	blksnap_ioctl_snapshot_set_storage,
};

/**
 * struct blksnap_version - version of the module's interface
 * @major: Incompatible changes.
 * @minor: Compatible additions.
 * @revision: Fixes.
 * @build: Build number.
 */
struct blksnap_version {
	__u16 major;
	__u16 minor;
	__u16 revision;
	__u16 build;
};

/**
 * define IOCTL_BLKSNAP_VERSION - report the interface version
 *
 * Fills a &struct blksnap_version.
 */
#define IOCTL_BLKSNAP_VERSION							\
	_IOW(BLKSNAP, blksnap_ioctl_version, struct blksnap_version)

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_CREATE - create an empty snapshot
 *
 * Stores the new snapshot's identifier in the &struct blksnap_uuid.  Devices
 * are then added with blkfilter_ctl_blksnap_snapshotadd, difference storage
 * with IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, and the snapshot is taken with
 * IOCTL_BLKSNAP_SNAPSHOT_TAKE.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_CREATE						\
	_IOW(BLKSNAP, blksnap_ioctl_snapshot_create,				\
	     struct blksnap_uuid)

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_DESTROY - release a snapshot
 *
 * Removes the snapshot named by the &struct blksnap_uuid, its images and its
 * difference storage.  Change tracking of its devices goes on.  Returns
 * -ENODEV if there is no such snapshot.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_DESTROY						\
	_IOR(BLKSNAP, blksnap_ioctl_snapshot_destroy,				\
	     struct blksnap_uuid)

/**
 * struct blksnap_snapshot_append_storage - difference storage to add
 * @id: The snapshot.
 * @bdev_path: User space address of the path of the block device that holds
 *	the ranges.
 * @bdev_path_size: Size of the buffer at @bdev_path, including the NUL.
 * @count: Number of elements at @ranges; 0 adds nothing.
 * @ranges: User space address of an array of &struct blksnap_sectors.
 */
struct blksnap_snapshot_append_storage {
	struct blksnap_uuid id;
	__aligned_u64 bdev_path;
	__u32 bdev_path_size;
	__u32 count;
	__aligned_u64 ranges;
};

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE - give a snapshot more room
 *
 * Adds sector ranges of a block device to the snapshot's difference storage,
 * where data overwritten on the original devices is kept.  Allowed before and
 * after the snapshot is taken.  A device whose logical blocks are larger than
 * a sector, or that needs data buffers aligned to more than one, is refused
 * with -EINVAL.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE					\
	_IOW(BLKSNAP, blksnap_ioctl_snapshot_append_storage,			\
	     struct blksnap_snapshot_append_storage)

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_TAKE - take a snapshot
 *
 * Freezes all devices of the snapshot, switches them to copy-on-write
 * together and creates one image block device per device.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_TAKE						\
	_IOR(BLKSNAP, blksnap_ioctl_snapshot_take,				\
	     struct blksnap_uuid)

/**
 * struct blksnap_snapshot_collect - the list of existing snapshots
 * @count: In: number of elements the array at @ids can take.  Out: number of
 *	identifiers copied, or of snapshots if @ids is 0.
 * @ids: User space address of an array of &struct blksnap_uuid.
 */
struct blksnap_snapshot_collect {
	__u32 count;
	__aligned_u64 ids;
};

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_COLLECT - list the existing snapshots
 *
 * With @ids 0, only sets @count to the number of snapshots: the size query
 * a program makes first.  Otherwise copies as many identifiers as @count
 * allows and sets @count to the number copied; fails with -ENODATA if that
 * was not all of them.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_COLLECT						\
	_IOW(BLKSNAP, blksnap_ioctl_snapshot_collect,				\
	     struct blksnap_snapshot_collect)

/**
 * enum blksnap_event_codes - what an event reports
 * @blksnap_event_code_low_free_space: The difference storage is running low;
 *	&struct blksnap_event_low_free_space says how much more is wanted.
 * @blksnap_event_code_corrupted: A device's snapshot broke;
 *	&struct blksnap_event_corrupted says which and why.
 * @blksnap_event_code_no_space: Storage set with
 *	IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE is running out within its limit;
 *	&struct blksnap_event_no_space says how much more is wanted.
 */
enum blksnap_event_codes {
	blksnap_event_code_low_free_space,
	blksnap_event_code_corrupted,
	blksnap_event_code_no_space,
};

/**
 * struct blksnap_snapshot_event - one event of a snapshot
 * @id: In: the snapshot.
 * @timeout_ms: In: how long to wait for an event, in milliseconds.
 * @code: Out: an &enum blksnap_event_codes.
 * @time_label: Out: when the event was queued, in nanoseconds of
 *	CLOCK_MONOTONIC (ktime_get()).
 * @data: Out: the event's details, whose layout depends on @code; zeroes
 *	past them.
 *
 * The whole structure is written back, @id and @timeout_ms as they were.
 */
struct blksnap_snapshot_event {
	struct blksnap_uuid id;
	__u32 timeout_ms;
	__u32 code;
	__s64 time_label;
	__u8 data[4096 - 32];
};

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT - wait for a snapshot's next event
 *
 * Fails with -ENOENT when the timeout passes without an event, with -EINTR
 * when a signal interrupts the wait and with -ESRCH if there is no such
 * snapshot or it is destroyed while waiting.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT					\
	_IOW(BLKSNAP, blksnap_ioctl_snapshot_wait_event,			\
	     struct blksnap_snapshot_event)

/**
 * struct blksnap_event_low_free_space - details of a low-space event
 * @requested_nr_sect: Number of sectors of storage the module asks for.
 */
struct blksnap_event_low_free_space {
	__u64 requested_nr_sect;
};

/**
 * struct blksnap_event_corrupted - details of a corrupted-snapshot event
 * @dev_id_mj: Major number of the original device.
 * @dev_id_mn: Minor number of the original device.
 * @err_code: The errno that broke the snapshot, as a positive number
 *	(&struct blksnap_snapshotinfo has it negative).
 */
struct blksnap_event_corrupted {
	__u32 dev_id_mj;
	__u32 dev_id_mn;
	__s32 err_code;
};

/**
 * struct blksnap_snapshot_storage - difference storage the module opens
 * @id: The snapshot.
 * @path: User space address of the path of the storage, or 0 to change
 *	only the limit of the storage set before.
 * @path_size: Size of the buffer at @path, including the NUL; 0 with @path.
 * @flags: None are defined; must be 0.
 * @limit_sect: The most sectors of the storage the snapshot may use, or 0
 *	for all of a device; more than the device holds is refused
 *	(-EINVAL).  For a file, how far the module may grow it; not 0.
 */
struct blksnap_snapshot_storage {
	struct blksnap_uuid id;
	__aligned_u64 path;
	__u32 path_size;
	__u32 flags;
	__aligned_u64 limit_sect;
};

/**
 * define IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE - name the snapshot's storage
 *
 * Gives the snapshot difference storage that the module opens and manages
 * itself, instead of sector ranges computed by user space (which the module
 * would write to behind the back of whatever owns them): a whole block
 * device, opened exclusively, so that nothing else can mount it or claim it
 * while the snapshot holds it; in a directory, an unnamed file the module
 * creates (O_TMPFILE), which nothing else can reach and nothing is left of;
 * or a regular file, used from its start.  Files are written with direct
 * I/O through their file system (-EINVAL without it) and grown by the
 * module, by diff_storage_minimum at a time, up to @limit_sect.  Any other
 * kind of path is refused with -ENOTBLK.
 *
 * A snapshot has either such storage or ranges given with
 * IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, never both (-EBUSY).  The module's
 * writes to a device skip the block device filter, and its writes to a file
 * pass the filter of the file system's device, so a device that shares
 * sectors with a device blksnap is attached to (an original of any
 * snapshot, or a tracked device), or a file on a file system on such a
 * device, is refused with -ELOOP, and blksnap cannot be attached to a
 * device given as storage or holding a storage file's file system (-EBUSY).
 * Devices that device mapper or md stack the storage on count as well, as
 * far as the block layer records them: they are walked when the storage is
 * given and again when the snapshot is taken (the same errno then fails the
 * take); a stack too deep to follow is refused with -EMLINK, and one over
 * an image with -EINVAL.
 *
 * When at most half of diff_storage_minimum is left within @limit_sect, a
 * blksnap_event_code_no_space event asks for more; raising the limit (call
 * again with @path 0, never below what is used) before the storage runs out
 * keeps the snapshot going.  Otherwise the snapshot breaks with -ENOSPC,
 * as with ranges, and the originals are untouched; so it does when the
 * file system of a storage file is full.  A named file that shrinks under
 * the snapshot breaks it with -EIO.
 */
#define IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE					\
	_IOW(BLKSNAP, blksnap_ioctl_snapshot_set_storage,			\
	     struct blksnap_snapshot_storage)

/**
 * struct blksnap_event_no_space - details of a no-space event
 * @requested_nr_sect: How many more sectors of storage the module asks for.
 */
struct blksnap_event_no_space {
	__u64 requested_nr_sect;
};

#endif /* _UAPI_LINUX_BLKSNAP_H */
