/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Block device filters: a registered filter can be attached to a block device
 * or partition and then sees every bio sent to it, before the driver does.
 */
#ifndef _LINUX_BLK_FILTER_H
#define _LINUX_BLK_FILTER_H

#include <linux/list.h>
#include <uapi/linux/blk-filter.h>

struct bio;
struct block_device;
struct blkfilter_operations;
struct module;

/**
 * struct blkfilter - one attachment of a filter to a block device
 * @ops: The filter the attachment belongs to; set by the block layer.
 *
 * A filter embeds this structure in its own per-device state and returns it
 * from &blkfilter_operations.attach.  The block layer keeps it in
 * &block_device.bd_filter until it hands it back to
 * &blkfilter_operations.detach.
 */
struct blkfilter {
	const struct blkfilter_operations *ops;
};

/**
 * struct blkfilter_operations - a block device filter
 * @link: Entry in the list of registered filters; owned by the block layer.
 * @owner: Module implementing the filter.  It stays pinned while the filter
 *	is attached to any device.
 * @name: Unique, NUL-terminated name, shorter than %BLKFILTER_NAME_LENGTH.
 * @attach: Create the per-device state for @bdev.  Returns it, or an
 *	ERR_PTR() whose error is passed on to user space.
 * @detach: Tear down state created by @attach.  No call to @submit_bio for
 *	this attachment is in flight or will follow.
 * @ctl: Optional.  Execute filter command @cmd with the user buffer @buf of
 *	@len bytes.  Returns a non-negative value for user space or a negative
 *	errno.
 * @submit_bio: Look at @bio before its driver does.  Return %false to let
 *	the block layer carry on with it, or %true if the filter took over the
 *	bio and will complete or resubmit it itself.
 *
 * @attach, @detach and @ctl run under the disk's open_mutex, so they are
 * serialised against each other and against partition and disk removal; they
 * must not open the disk they are called for.
 *
 * @submit_bio is called for each bio when the block layer dispatches it to
 * the driver: after it has been checked, throttled, taken off
 * current->bio_list and, by blk-mq, split to the device's limits (each part
 * is offered once).  The device's queue is entered and stays entered until a
 * bio the filter lets pass has been dispatched, so a freeze of the queue
 * waits for those bios too.  @submit_bio runs in the context that issues the
 * bio.  It may sleep, but it must not wait for bios it submitted
 * itself, which may only be dispatched after it returns, nor for anything
 * that waits for a freeze of this queue.
 *
 * A filter attached to a whole disk also sees the bios sent to its
 * partitions; a partition and its disk cannot both have a filter.  A filter
 * attached to a partition also sees the writes sent to the whole disk that
 * land in the partition, split at its edges; their @bi_bdev is the whole
 * disk.  A bio sent
 * to a partition has already been remapped: its sectors count from the start
 * of the whole disk and %BIO_REMAPPED is set.
 *
 * A bio the filter took over goes on with blkfilter_resubmit_bio().  Bios the
 * filter creates for the device it filters must have %BIO_FILTERED set, so
 * that they are not offered to it.
 */
struct blkfilter_operations {
	struct list_head link;
	struct module *owner;
	const char *name;
	struct blkfilter *(*attach)(struct block_device *bdev);
	void (*detach)(struct blkfilter *flt);
	int (*ctl)(struct blkfilter *flt, unsigned int cmd, __u8 __user *buf,
		   __u32 len);
	bool (*submit_bio)(struct blkfilter *flt, struct bio *bio);
};

int blkfilter_register(struct blkfilter_operations *ops);
void blkfilter_unregister(struct blkfilter_operations *ops);
void blkfilter_resubmit_bio(struct bio *bio);

#endif /* _LINUX_BLK_FILTER_H */
