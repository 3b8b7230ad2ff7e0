// SPDX-License-Identifier: GPL-2.0
/*
 * I/O faults under a snapshot, injected with fail_make_request: writes to
 * the difference storage fail, or the copy-on-write read of the original
 * fails.  Either way that device's snapshot is corrupted with the error and
 * says so in an event, its image fails with EIO, and every write to the
 * original completes as it would have without blksnap: the original
 * verifies byte for byte.
 *
 * Needs CONFIG_FAIL_MAKE_REQUEST and debugfs at /sys/kernel/debug.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

/* Under emulation with a debug kernel, data checks take their time. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
#define ORIG_SIZE (16 * MIB)

FIXTURE(faults) {
	int ctl;
	struct loopdev orig, store;
	unsigned char *now, *buf;
	struct blksnap_uuid id;
	char image[64];
};

FIXTURE_SETUP(faults)
{
	struct blksnap_sectors all = { .offset = 0, .count = (32 * MIB) >> 9 };
	struct stat st;

	self->orig.fd = -1;
	self->store.fd = -1;
	if (fail_requests_available())
		SKIP(return, "fail_make_request is not available");
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	ASSERT_EQ(0, loop_create(&self->orig, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&self->store, 32 * MIB));
	self->now = aligned_alloc(4096, ORIG_SIZE);
	self->buf = aligned_alloc(4096, ORIG_SIZE);
	ASSERT_NE(NULL, self->now);
	ASSERT_NE(NULL, self->buf);
	fill_random(self->now, ORIG_SIZE, 61);
	ASSERT_EQ(0, pwrite_all(self->orig.fd, self->now, ORIG_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	ASSERT_EQ(0, storage_append(self->ctl, &self->id, self->store.path, &all, 1));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, fstat(self->orig.fd, &st));
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
}

FIXTURE_TEARDOWN(faults)
{
	if (self->store.fd >= 0)
		stop_failing_requests(self->store.nr);
	if (self->orig.fd >= 0)
		stop_failing_requests(self->orig.nr);
	snapshot_destroy(self->ctl, &self->id);
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	free(self->now);
	free(self->buf);
	close(self->ctl);
}

/* Writes count 64 KiB blocks of new data to the original, one per chunk. */
static int overwrite(struct _test_data_faults *self, unsigned int seed, int count)
{
	int i;

	for (i = 0; i < count; i++) {
		off_t off = (off_t)i * 256 * 1024 + 8192;

		fill_random(self->buf, 65536, seed + i);
		if (pwrite_all(self->orig.fd, self->buf, 65536, off))
			return -1;
		memcpy(self->now + off, self->buf, 65536);
	}
	return 0;
}

/* The corrupted event of this snapshot, if one came; its errno or 0. */
static int corrupted_event(struct _test_data_faults *self)
{
	struct blksnap_snapshot_event *ev = calloc(1, sizeof(*ev));
	struct blksnap_event_corrupted c = { 0 };

	while (ev) {
		ev->id = self->id;
		ev->timeout_ms = 100;
		if (ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, ev))
			break;
		if (ev->code == blksnap_event_code_corrupted) {
			memcpy(&c, ev->data, sizeof(c));
			break;
		}
	}
	free(ev);
	return c.err_code;
}

static void expect_broken_snapshot(struct __test_metadata *_metadata,
				   struct _test_data_faults *self, int err)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	int fd;

	ASSERT_EQ(0, blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	/* The info says -errno, the event the positive errno (as v3). */
	EXPECT_EQ(err, info.error_code);
	EXPECT_EQ(-err, corrupted_event(self));
	fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, pread(fd, self->buf, MIB, 0));
	EXPECT_EQ(EIO, errno);
	close(fd);
	/* Not one byte of the original was lost. */
	ASSERT_EQ(ORIG_SIZE, pread(self->orig.fd, self->buf, ORIG_SIZE, 0));
	EXPECT_EQ(0, memcmp(self->buf, self->now, ORIG_SIZE));
}

TEST_F(faults, storage_writes_fail)
{
	ASSERT_EQ(0, fail_requests(self->store.nr, "1", "-1"));
	ASSERT_EQ(0, overwrite(self, 100, 20));
	stop_failing_requests(self->store.nr);
	expect_broken_snapshot(_metadata, self, -EIO);
}

/*
 * Only the copy-on-write read of the original fails: the user's write is
 * the first bio the injector sees and passes, the copy's read is the second
 * and fails, once.
 */
TEST_F(faults, original_read_fails)
{
	ASSERT_EQ(0, fail_requests(self->orig.nr, "2", "1"));
	ASSERT_EQ(0, overwrite(self, 200, 1));
	stop_failing_requests(self->orig.nr);
	ASSERT_EQ(0, overwrite(self, 300, 20));
	expect_broken_snapshot(_metadata, self, -EIO);
}

TEST_HARNESS_MAIN
