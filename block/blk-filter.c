// SPDX-License-Identifier: GPL-2.0-only
/*
 * Block device filters.
 *
 * A filter module registers a named &struct blkfilter_operations.  User space
 * attaches it to a block device with BLKFILTER_ATTACH; from then on the
 * filter's submit_bio sees each bio sent to the device before the driver
 * does, until BLKFILTER_DETACH or until the device goes away.
 *
 * Publishing and clearing &block_device.bd_filter happens with the queue
 * frozen, and the hook only calls the filter with the queue entered, so a
 * detach never races with a filter call.  Attach, detach, filter commands and
 * device removal are serialised by the disk's open_mutex.
 */
#include <linux/blk-filter.h>
#include <linux/blk-mq.h>
#include <linux/capability.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/uaccess.h>
#include <kunit/visibility.h>
#include <trace/events/block.h>

#include "blk.h"

static LIST_HEAD(blkfilters);
static DEFINE_MUTEX(blkfilters_lock);

static bool blkfilter_name_ok(const char *name)
{
	return name && name[0] &&
	       strnlen(name, BLKFILTER_NAME_LENGTH) < BLKFILTER_NAME_LENGTH;
}

static struct blkfilter_operations *blkfilter_find(const char *name)
{
	struct blkfilter_operations *ops;

	lockdep_assert_held(&blkfilters_lock);
	list_for_each_entry(ops, &blkfilters, link)
		if (!strcmp(ops->name, name))
			return ops;
	return NULL;
}

/**
 * blkfilter_get() - look up a filter by the name user space gave
 * @name: %BLKFILTER_NAME_LENGTH bytes that should hold a NUL-terminated name.
 *
 * Return: the filter with its module pinned, ERR_PTR(-EINVAL) if @name is not
 * terminated within its buffer, or ERR_PTR(-ENOENT) if no such filter is
 * registered (or its module is going away).
 */
VISIBLE_IF_KUNIT const struct blkfilter_operations *
blkfilter_get(const char name[BLKFILTER_NAME_LENGTH])
{
	struct blkfilter_operations *ops;

	if (!memchr(name, '\0', BLKFILTER_NAME_LENGTH))
		return ERR_PTR(-EINVAL);

	mutex_lock(&blkfilters_lock);
	ops = blkfilter_find(name);
	if (ops && !try_module_get(ops->owner))
		ops = NULL;
	mutex_unlock(&blkfilters_lock);

	return ops ?: ERR_PTR(-ENOENT);
}
EXPORT_SYMBOL_IF_KUNIT(blkfilter_get);

/**
 * blkfilter_put() - drop the module reference taken by blkfilter_get()
 * @ops: The filter.
 */
VISIBLE_IF_KUNIT void blkfilter_put(const struct blkfilter_operations *ops)
{
	module_put(ops->owner);
}
EXPORT_SYMBOL_IF_KUNIT(blkfilter_put);

/* Does a partition of @disk carry a filter?  Called with open_mutex held. */
static bool blkfilter_on_partition(struct gendisk *disk)
{
	struct block_device *part;
	unsigned long idx;

	xa_for_each_start(&disk->part_tbl, idx, part, 1)
		if (part->bd_filter)
			return true;
	return false;
}

/*
 * A bio passes at most one filter: the one on its partition or the one on
 * the whole disk.  Refuse attachments that would stack the two.
 */
static bool blkfilter_stacked(struct block_device *bdev)
{
	if (bdev_is_partition(bdev))
		return bdev_whole(bdev)->bd_filter != NULL;
	return blkfilter_on_partition(bdev->bd_disk);
}

/* Is @bdev still part of a live disk?  Called with open_mutex held. */
static bool blkfilter_bdev_live(struct block_device *bdev)
{
	struct gendisk *disk = bdev->bd_disk;

	if (test_bit(GD_DEAD, &disk->state))
		return false;
	return !bdev_is_partition(bdev) ||
	       xa_load(&disk->part_tbl, bdev_partno(bdev)) == bdev;
}

static void blkfilter_publish(struct block_device *bdev, struct blkfilter *flt)
{
	struct request_queue *q = bdev_get_queue(bdev);
	unsigned int memflags;

	memflags = blk_mq_freeze_queue(q);
	WRITE_ONCE(bdev->bd_filter, flt);
	/* Writes to the whole disk then look for partitions' filters. */
	if (bdev_is_partition(bdev)) {
		if (blkfilter_on_partition(bdev->bd_disk))
			bdev_set_flag(bdev_whole(bdev), BD_FILTERED_PARTS);
		else
			bdev_clear_flag(bdev_whole(bdev), BD_FILTERED_PARTS);
	}
	blk_mq_unfreeze_queue(q, memflags);
}

static int blkfilter_attach(struct block_device *bdev,
			    const struct blkfilter_operations *ops)
{
	struct blkfilter *flt;

	lockdep_assert_held(&bdev->bd_disk->open_mutex);

	if (!blkfilter_bdev_live(bdev))
		return -ENODEV;
	if (bdev->bd_filter)
		return bdev->bd_filter->ops == ops ? -EALREADY : -EBUSY;
	if (blkfilter_stacked(bdev))
		return -EBUSY;

	/* Let the filter allocate before the queue is frozen. */
	flt = ops->attach(bdev);
	if (IS_ERR(flt))
		return PTR_ERR(flt);
	flt->ops = ops;
	blkfilter_publish(bdev, flt);
	return 0;
}

static void __blkfilter_detach(struct block_device *bdev)
{
	struct blkfilter *flt = bdev->bd_filter;
	const struct blkfilter_operations *ops = flt->ops;

	blkfilter_publish(bdev, NULL);
	ops->detach(flt);
	blkfilter_put(ops);
}

/**
 * blkfilter_detach() - detach the filter of a block device that goes away
 * @bdev: The partition being dropped or the whole disk being deleted.
 *
 * Context: the disk's open_mutex is held.
 */
void blkfilter_detach(struct block_device *bdev)
{
	lockdep_assert_held(&bdev->bd_disk->open_mutex);

	if (bdev->bd_filter)
		__blkfilter_detach(bdev);
}

static int blkfilter_ioctl_attach(struct block_device *bdev,
				  struct blkfilter_name __user *argp)
{
	const struct blkfilter_operations *ops;
	struct blkfilter_name name;
	int ret;

	if (copy_from_user(&name, argp, sizeof(name)))
		return -EFAULT;
	ops = blkfilter_get(name.name);
	if (IS_ERR(ops))
		return PTR_ERR(ops);

	mutex_lock(&bdev->bd_disk->open_mutex);
	ret = blkfilter_attach(bdev, ops);
	mutex_unlock(&bdev->bd_disk->open_mutex);

	/* On success the attachment keeps the module reference. */
	if (ret)
		blkfilter_put(ops);
	return ret;
}

static int blkfilter_ioctl_detach(struct block_device *bdev,
				  struct blkfilter_name __user *argp)
{
	struct blkfilter_name name;
	int ret = 0;

	if (copy_from_user(&name, argp, sizeof(name)))
		return -EFAULT;
	if (!memchr(name.name, '\0', sizeof(name.name)))
		return -EINVAL;

	mutex_lock(&bdev->bd_disk->open_mutex);
	if (!bdev->bd_filter)
		ret = -ENOENT;
	else if (strcmp(bdev->bd_filter->ops->name, name.name))
		ret = -EINVAL;
	else
		__blkfilter_detach(bdev);
	mutex_unlock(&bdev->bd_disk->open_mutex);

	return ret;
}

static int blkfilter_ioctl_ctl(struct block_device *bdev,
			       struct blkfilter_ctl __user *argp)
{
	struct blkfilter_ctl ctl;
	struct blkfilter *flt;
	int ret;

	if (copy_from_user(&ctl, argp, sizeof(ctl)))
		return -EFAULT;
	if (!memchr(ctl.name, '\0', sizeof(ctl.name)))
		return -EINVAL;

	mutex_lock(&bdev->bd_disk->open_mutex);
	flt = bdev->bd_filter;
	if (!flt || strcmp(flt->ops->name, ctl.name))
		ret = -ENOENT;
	else if (!flt->ops->ctl)
		ret = -ENOTTY;
	else
		ret = flt->ops->ctl(flt, ctl.cmd, u64_to_user_ptr(ctl.opt),
				    ctl.optlen);
	mutex_unlock(&bdev->bd_disk->open_mutex);

	return ret;
}

/**
 * blkfilter_ioctl() - handle the BLKFILTER_* block device ioctls
 * @bdev: The block device the ioctl was issued on.
 * @cmd: BLKFILTER_ATTACH, BLKFILTER_DETACH or BLKFILTER_CTL.
 * @argp: User space argument.
 *
 * Return: 0 or a positive value from the filter on success, a negative errno
 * otherwise.
 */
int blkfilter_ioctl(struct block_device *bdev, unsigned int cmd,
		    void __user *argp)
{
	if (!capable(CAP_SYS_ADMIN))
		return -EPERM;

	switch (cmd) {
	case BLKFILTER_ATTACH:
		return blkfilter_ioctl_attach(bdev, argp);
	case BLKFILTER_DETACH:
		return blkfilter_ioctl_detach(bdev, argp);
	case BLKFILTER_CTL:
		return blkfilter_ioctl_ctl(bdev, argp);
	default:
		return -ENOTTY;
	}
}

/* Splits of whole-disk writes at the edges of filtered partitions. */
static struct bio_set blkfilter_bio_set;

/*
 * The filter of the partition a bio sent to the whole disk writes into, if
 * it has one.  A bio that reaches into a filtered partition but does not lie
 * wholly in one partition is split at the last partition edge inside it:
 * the front goes around again (and is split further if need be), the rest
 * is in one partition or in none.
 *
 * Return: the filter, NULL, or an error pointer if the bio could not be
 * split and has been completed.
 */
static struct blkfilter *blkfilter_of_partition(struct bio *bio)
{
	struct gendisk *disk = bio->bi_bdev->bd_disk;
	sector_t start = bio->bi_iter.bi_sector;
	sector_t end = bio_end_sector(bio);
	struct blkfilter *flt = NULL;
	struct block_device *part;
	sector_t edge = start;
	unsigned long idx;
	struct bio *front;

	if (!op_is_write(bio_op(bio)) || !bio_sectors(bio))
		return NULL;

	/*
	 * RCU keeps partitions without a filter while we look at them.  The
	 * filter found is kept by the caller's queue reference: a partition
	 * detaches its filter, with the queue frozen, before it goes.
	 */
	rcu_read_lock();
	xa_for_each_start(&disk->part_tbl, idx, part, 1) {
		sector_t first = part->bd_start_sect;
		sector_t last = first + bdev_nr_sectors(part);

		if (!READ_ONCE(part->bd_filter) || last <= start || first >= end)
			continue;
		if (first > start)
			edge = max(edge, first);
		if (last < end)
			edge = max(edge, last);
	}
	rcu_read_unlock();

	if (edge > start) {
		/* As blk-mq does: a bio that must wait is not split. */
		if (bio->bi_opf & REQ_NOWAIT) {
			bio_wouldblock_error(bio);
			return ERR_PTR(-EAGAIN);
		}
		front = bio_split(bio, edge - start, GFP_NOIO, &blkfilter_bio_set);
		if (IS_ERR(front)) {
			bio_endio_status(bio, errno_to_blk_status(PTR_ERR(front)));
			return ERR_CAST(front);
		}
		/* Polling a bio that was split may never see it end. */
		bio_clear_polled(bio);
		bio_clear_polled(front);
		bio_chain(front, bio);
		trace_block_split(front, bio->bi_iter.bi_sector);
		submit_bio_noacct_nocheck(front, true);
		start = edge;
	}

	rcu_read_lock();
	xa_for_each_start(&disk->part_tbl, idx, part, 1) {
		flt = READ_ONCE(part->bd_filter);
		if (flt && start >= part->bd_start_sect &&
		    start < part->bd_start_sect + bdev_nr_sectors(part))
			break;
		flt = NULL;
	}
	rcu_read_unlock();
	return flt;
}

/**
 * __blkfilter_submit_bio() - offer a bio to the filter of its device
 * @bio: The bio, about to be dispatched to the driver.
 *
 * Called with the queue entered, when the bio's device, the whole disk it
 * belongs to, or a partition it may write into, has a filter attached.  The
 * caller keeps the queue entered until the bio is dispatched, so the filter
 * pointers cannot change under it and a freeze of the queue waits for every
 * bio the filter let pass.
 *
 * Return: %true if the filter took the bio over, or if the bio has been
 * completed because it could not be split.
 */
bool __blkfilter_submit_bio(struct bio *bio)
{
	struct block_device *bdev = bio->bi_bdev;
	struct blkfilter *flt;

	flt = READ_ONCE(bdev->bd_filter);
	if (!flt)
		flt = READ_ONCE(bdev_whole(bdev)->bd_filter);
	if (!flt && bdev_test_flag(bdev, BD_FILTERED_PARTS)) {
		flt = blkfilter_of_partition(bio);
		if (IS_ERR(flt))
			return true;
	}
	return flt && flt->ops->submit_bio(flt, bio);
}

/**
 * blkfilter_resubmit_bio() - send a bio on to its driver, past the filter
 * @bio: A bio the filter took over in &blkfilter_operations.submit_bio.
 *
 * The bio has been checked, remapped and throttled already: pass it on
 * without repeating that and without offering it to the filter again.
 */
void blkfilter_resubmit_bio(struct bio *bio)
{
	bio_set_flag(bio, BIO_FILTERED);
	submit_bio_noacct_nocheck(bio, false);
}
EXPORT_SYMBOL_GPL(blkfilter_resubmit_bio);

static int __init blkfilter_init(void)
{
	return bioset_init(&blkfilter_bio_set, BIO_POOL_SIZE, 0, 0);
}
subsys_initcall(blkfilter_init);

/**
 * blkfilter_register() - make a filter available for attaching
 * @ops: The filter.  Must stay valid until blkfilter_unregister().
 *
 * Return: 0, -EINVAL if the name is empty or too long, or -EBUSY if a filter
 * with the same name is already registered.
 */
int blkfilter_register(struct blkfilter_operations *ops)
{
	int ret = 0;

	if (!blkfilter_name_ok(ops->name) || !ops->attach || !ops->detach ||
	    !ops->submit_bio)
		return -EINVAL;

	mutex_lock(&blkfilters_lock);
	if (blkfilter_find(ops->name))
		ret = -EBUSY;
	else
		list_add_tail(&ops->link, &blkfilters);
	mutex_unlock(&blkfilters_lock);

	return ret;
}
EXPORT_SYMBOL_GPL(blkfilter_register);

/**
 * blkfilter_unregister() - stop offering a filter for attaching
 * @ops: A filter registered with blkfilter_register().
 *
 * A filter attached to a device pins its module, so a module's exit function
 * runs only when no attachment is left and may call this unconditionally.
 */
void blkfilter_unregister(struct blkfilter_operations *ops)
{
	mutex_lock(&blkfilters_lock);
	list_del_init(&ops->link);
	mutex_unlock(&blkfilters_lock);
}
EXPORT_SYMBOL_GPL(blkfilter_unregister);
