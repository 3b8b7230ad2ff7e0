// SPDX-License-Identifier: GPL-2.0
/*
 * Tracked devices that change size, and change maps whose geometry comes
 * from the module parameters: a take after a resize starts the maps over
 * without sleeping in atomic context, change-map commands racing such a take
 * only ever get errnos, and tracking blocks too large for the ABI's 32-bit
 * block size are never made.
 *
 * Each case also reads the kernel log it caused: a splat fails the case
 * that made it.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/stat.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 180

#define MIB (1ULL << 20)

/* Sets the size of loop device `l` to `size` bytes: file, then device. */
static int loop_resize(struct loopdev *l, unsigned long long size)
{
	if (truncate(l->img, size) || ioctl(l->fd, LOOP_SET_CAPACITY, 0))
		return -1;
	l->size = size;
	return 0;
}

static int cbtinfo(int fd, struct blksnap_cbtinfo *ci)
{
	unsigned int len = sizeof(*ci);

	return blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtinfo, ci, &len, NULL);
}

/* Creates a snapshot of `orig` with all of `store` and takes it. */
static int snapshot_of(int ctl, struct loopdev *orig, struct loopdev *store,
		       struct blksnap_uuid *id)
{
	struct blksnap_sectors r = { .offset = 0, .count = store->size >> 9 };

	if (snapshot_create(ctl, id))
		return -1;
	if (snapshot_add(orig->fd, id) || storage_append(ctl, id, store->path, &r, 1) ||
	    snapshot_take(ctl, id)) {
		snapshot_destroy(ctl, id);
		return -1;
	}
	return 0;
}

FIXTURE(resize) {
	int ctl;
	int kmsg;
	struct loopdev orig;
	struct loopdev store;
};

FIXTURE_SETUP(resize)
{
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->kmsg = kmsg_mark();
	ASSERT_LE(0, self->kmsg);
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig.fd = -1;
	self->store.fd = -1;
	ASSERT_EQ(0, loop_create(&self->orig, 16 * MIB));
	ASSERT_EQ(0, loop_create(&self->store, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
}

FIXTURE_TEARDOWN(resize)
{
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	close(self->ctl);
	EXPECT_NO_SPLAT(self->kmsg);
}

/*
 * Item 7: the take after LOOP_SET_CAPACITY replaces both change maps; the
 * old ones were freed (vfree) under the active map's spinlock.
 */
TEST_F(resize, take_after_grow_resets_maps_without_atomic_sleep)
{
	struct blksnap_cbtinfo before, after;
	struct blksnap_uuid id;

	ASSERT_EQ(0, cbtinfo(self->orig.fd, &before));
	EXPECT_EQ(16 * MIB, before.device_capacity);
	ASSERT_EQ(0, loop_resize(&self->orig, 40 * MIB));
	ASSERT_EQ(0, snapshot_of(self->ctl, &self->orig, &self->store, &id));
	ASSERT_EQ(0, cbtinfo(self->orig.fd, &after));
	EXPECT_EQ(40 * MIB, after.device_capacity);
	EXPECT_NE(0, memcmp(&before.generation_id, &after.generation_id, 16));
	EXPECT_EQ(1, after.changes_number);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &id));

	/* Shrinking starts over too. */
	ASSERT_EQ(0, loop_resize(&self->orig, 8 * MIB));
	ASSERT_EQ(0, snapshot_of(self->ctl, &self->orig, &self->store, &id));
	ASSERT_EQ(0, cbtinfo(self->orig.fd, &before));
	EXPECT_EQ(8 * MIB, before.device_capacity);
	EXPECT_NE(0, memcmp(&before.generation_id, &after.generation_id, 16));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &id));
}

struct dirtier {
	int fd;
	int stop;		/* atomic */
	int bad;		/* an errno that is not EINVAL */
	unsigned long calls;
};

/* Marks many ranges in [12 MiB, 16 MiB) of the device, over and over. */
static void *dirty_loop(void *arg)
{
	enum { N = 16384 };
	struct dirtier *d = arg;
	struct blksnap_sectors *r = calloc(N, sizeof(*r));
	struct blksnap_cbtdirty c = { .count = N, .dirty_sectors = (uintptr_t)r };
	unsigned int i, len;
	int e;

	if (!r)
		return NULL;
	for (i = 0; i < N; i++)
		r[i] = (struct blksnap_sectors){ .offset = (16 * MIB >> 9) - 8 - (i % 1024) * 8,
						 .count = 8 };
	while (!__atomic_load_n(&d->stop, __ATOMIC_RELAXED)) {
		len = sizeof(c);
		e = blksnap_ctl(d->fd, blkfilter_ctl_blksnap_cbtdirty, &c, &len, NULL);
		if (e && e != EINVAL)
			d->bad = e;
		d->calls++;
	}
	free(r);
	return NULL;
}

/*
 * With at most 300 tracking blocks, 16 MiB is 256 blocks of 64 KiB and
 * 24 MiB 192 blocks of 128 KiB: growing the device makes the map shorter.
 */
FIXTURE(few_blocks) {
	struct _test_data_resize r;
};

FIXTURE_SETUP(few_blocks)
{
	struct _test_data_resize *r = &self->r;

	r->ctl = r->kmsg = -1;
	r->orig.fd = r->store.fd = -1;
	run("rmmod blksnap 2>/dev/null");
	ASSERT_EQ(0, run("modprobe blksnap tracking_block_maximum_count=300"));
	r->kmsg = kmsg_mark();
	ASSERT_LE(0, r->kmsg);
	r->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, r->ctl);
	ASSERT_EQ(0, loop_create(&r->orig, 16 * MIB));
	ASSERT_EQ(0, loop_create(&r->store, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(r->orig.fd));
}

FIXTURE_TEARDOWN(few_blocks)
{
	struct _test_data_resize *r = &self->r;

	if (r->orig.fd >= 0)
		blksnap_detach(r->orig.fd);
	loop_destroy(&r->orig);
	loop_destroy(&r->store);
	if (r->ctl >= 0)
		close(r->ctl);
	EXPECT_EQ(0, run("rmmod blksnap && modprobe blksnap"));
	EXPECT_NO_SPLAT(r->kmsg);
}

/*
 * Item 9: cbtdirty checked its ranges against the geometry it saw first
 * and marked the map of the last snapshot with it, while a take could
 * replace that map with a shorter one: an index beyond the map.
 */
TEST_F(few_blocks, cbtdirty_racing_a_take_that_shortens_the_maps)
{
	struct _test_data_resize *r = &self->r;
	struct dirtier d = { .fd = r->orig.fd };
	struct blksnap_cbtinfo ci;
	struct blksnap_uuid id;
	pthread_t th;
	int round;

	for (round = 0; round < 10; round++) {
		ASSERT_EQ(0, loop_resize(&r->orig, 16 * MIB));
		ASSERT_EQ(0, snapshot_of(r->ctl, &r->orig, &r->store, &id));
		ASSERT_EQ(0, snapshot_destroy(r->ctl, &id));
		ASSERT_EQ(0, cbtinfo(r->orig.fd, &ci));
		ASSERT_EQ(256, ci.block_count);
		__atomic_store_n(&d.stop, 0, __ATOMIC_RELAXED);
		ASSERT_EQ(0, pthread_create(&th, NULL, dirty_loop, &d));
		usleep(5000 + round * 3000);
		ASSERT_EQ(0, loop_resize(&r->orig, 24 * MIB));
		ASSERT_EQ(0, snapshot_of(r->ctl, &r->orig, &r->store, &id));
		usleep(20000);
		__atomic_store_n(&d.stop, 1, __ATOMIC_RELAXED);
		ASSERT_EQ(0, pthread_join(th, NULL));
		ASSERT_EQ(0, cbtinfo(r->orig.fd, &ci));
		ASSERT_EQ(192, ci.block_count);
		ASSERT_EQ(0, snapshot_destroy(r->ctl, &id));
	}
	TH_LOG("%lu cbtdirty calls", d.calls);
	EXPECT_EQ(0, d.bad);
}

/*
 * Item 9: a tracking block of 2^32 bytes or more cannot be reported in
 * blksnap_cbtinfo.block_size (a __u32); cbtinfo shifted a u32 that far.
 * The largest block is 2^31 bytes, whatever the parameters say.
 */
/* Last: a failure here (a panic before the fix) leaves the module busy. */
FIXTURE(huge_blocks) {
	int kmsg;
};

FIXTURE_SETUP(huge_blocks)
{
	self->kmsg = kmsg_mark();
	ASSERT_LE(0, self->kmsg);
}

FIXTURE_TEARDOWN(huge_blocks)
{
	close(self->kmsg);
}

TEST_F(huge_blocks, cbtinfo_with_tracking_blocks_of_4_gib)
{
	struct loopdev orig = { .fd = -1 };
	struct blksnap_cbtinfo ci;
	const char *load =
		"modprobe blksnap tracking_block_minimum_shift=32 tracking_block_maximum_shift=40";
	int kmsg = self->kmsg;
	char line[256];

	run("rmmod blksnap 2>/dev/null");
	ASSERT_EQ(0, run(load));
	ASSERT_EQ(0, loop_create(&orig, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(orig.fd));
	ASSERT_EQ(0, cbtinfo(orig.fd, &ci));
	EXPECT_EQ(1U << 31, ci.block_size);
	EXPECT_EQ(1, ci.block_count);
	EXPECT_EQ(0, blksnap_detach(orig.fd));
	loop_destroy(&orig);
	EXPECT_EQ(0, run("rmmod blksnap && modprobe blksnap"));
	EXPECT_EQ(0, kmsg_splat(kmsg, line, sizeof(line))) TH_LOG("kernel log: %s", line);
}

TEST_HARNESS_MAIN
