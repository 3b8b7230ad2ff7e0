// SPDX-License-Identifier: GPL-2.0
/*
 * Lock order across takes: a take freezes every device of its snapshot,
 * and two snapshots whose devices are partitions of the same two disks,
 * listed in opposite orders, must freeze them in one global order.  The
 * debug kernel's lockdep reports any cycle; the case reads the kernel log.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 180

#define MIB (1ULL << 20)

/* The open partition `part` (1 or 2) of loop device `l`, or -1. */
static int open_part(struct loopdev *l, int part)
{
	char path[48];

	snprintf(path, sizeof(path), "%sp%d", l->path, part);
	return open(path, O_RDWR | O_CLOEXEC);
}

FIXTURE(order) {
	int ctl;
	int kmsg;
	struct loopdev disk[2];	/* A and B */
	struct loopdev store;
	int part[2][2];		/* [disk][partition - 1] */
};

FIXTURE_SETUP(order)
{
	int d, p;

	memset(self->part, 0xff, sizeof(self->part));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->kmsg = kmsg_mark();
	ASSERT_LE(0, self->kmsg);
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->store.fd = -1;
	ASSERT_EQ(0, loop_create(&self->store, 32 * MIB));
	for (d = 0; d < 2; d++) {
		self->disk[d].fd = -1;
		ASSERT_EQ(0, loop_create(&self->disk[d], 40 * MIB));
		ASSERT_EQ(0, loop_partition(&self->disk[d]));
		for (p = 0; p < 2; p++) {
			self->part[d][p] = open_part(&self->disk[d], p + 1);
			ASSERT_LE(0, self->part[d][p]);
			ASSERT_EQ(0, blksnap_attach(self->part[d][p]));
		}
	}
}

FIXTURE_TEARDOWN(order)
{
	int d, p;

	for (d = 0; d < 2; d++) {
		for (p = 0; p < 2; p++) {
			if (self->part[d][p] < 0)
				continue;
			blksnap_detach(self->part[d][p]);
			close(self->part[d][p]);
		}
		loop_destroy(&self->disk[d]);
	}
	loop_destroy(&self->store);
	close(self->ctl);
	EXPECT_NO_SPLAT(self->kmsg);
}

/* A snapshot of fds[0] and fds[1], added in that order, taken. */
static int take_two(struct _test_data_order *self, int first, int second,
		    unsigned long long store_at, struct blksnap_uuid *id)
{
	struct blksnap_sectors r = { .offset = store_at, .count = 16 * MIB >> 9 };

	if (snapshot_create(self->ctl, id))
		return -1;
	if (snapshot_add(first, id) || snapshot_add(second, id) ||
	    storage_append(self->ctl, id, self->store.path, &r, 1) ||
	    snapshot_take(self->ctl, id)) {
		snapshot_destroy(self->ctl, id);
		return -1;
	}
	return 0;
}

/*
 * Item 8: {A1, B1} then {B2, A2}, one after the other and both at once,
 * with writes to every partition while they are taken.
 */
TEST_F(order, opposite_device_orders_in_two_snapshots)
{
	unsigned char *buf = aligned_alloc(4096, 4096);
	struct blksnap_uuid s1, s2;
	int round, d, p;

	ASSERT_NE(NULL, buf);
	memset(buf, 0x5a, 4096);
	for (round = 0; round < 3; round++) {
		ASSERT_EQ(0, take_two(self, self->part[0][0], self->part[1][0], 0, &s1));
		if (round > 0)
			ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
		ASSERT_EQ(0, take_two(self, self->part[1][1], self->part[0][1],
				      16 * MIB >> 9, &s2));
		for (d = 0; d < 2; d++)
			for (p = 0; p < 2; p++)
				ASSERT_EQ(0, pwrite_all(self->part[d][p], buf, 4096,
							4096 * round));
		if (round == 0)
			ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &s2));
	}
	free(buf);
}

TEST_HARNESS_MAIN
