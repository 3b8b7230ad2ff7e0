// SPDX-License-Identifier: GPL-2.0
/*
 * The interface as a v3 backup tool uses it, call by call.
 *
 * Each case walks one part of the interface the way a program written
 * against the v3 blksnap series does (size query before fetch, info before
 * and after add, event waits that read the whole structure, low-space
 * requests answered one for one) and checks each answer against what v3
 * gives.  The "kept_" cases check where blksnap deliberately differs from
 * v3 (see "Differences from the v3 interface" in
 * Documentation/block/blksnap.rst).
 *
 * Works on loop devices over files in /tmp.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 120

#define MIB (1ULL << 20)
#define ORIG_SIZE (16 * MIB)
/* blksnap's copy-on-write chunk for a 16 MiB device, in sectors. */
#define CHUNK_SECTORS 512

FIXTURE(v3) {
	int ctl;
	struct loopdev orig;
	struct loopdev store;
	struct blksnap_uuid id;
	struct blksnap_snapshot_event *ev;
	unsigned char *page;
};

FIXTURE_SETUP(v3)
{
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig.fd = -1;
	self->store.fd = -1;
	ASSERT_EQ(0, loop_create(&self->orig, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&self->store, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	self->ev = calloc(1, sizeof(*self->ev));
	self->page = aligned_alloc(4096, 4096);
	ASSERT_NE(NULL, self->ev);
	ASSERT_NE(NULL, self->page);
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
}

FIXTURE_TEARDOWN(v3)
{
	snapshot_destroy(self->ctl, &self->id);
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	free(self->ev);
	free(self->page);
	close(self->ctl);
}

static unsigned long long requested(const struct blksnap_snapshot_event *ev)
{
	struct blksnap_event_low_free_space d;

	memcpy(&d, ev->data, sizeof(d));
	return d.requested_nr_sect;
}

static int give(struct _test_data_v3 *self, unsigned long long first,
		unsigned long long sectors)
{
	struct blksnap_sectors r = { .offset = first, .count = sectors };

	return storage_append(self->ctl, &self->id, self->store.path, &r, 1);
}

/* A 4 KiB write into copy-on-write chunk `chunk` of the original. */
static int write_chunk(struct _test_data_v3 *self, unsigned int chunk)
{
	memset(self->page, chunk + 1, 4096);
	return pwrite_all(self->orig.fd, self->page, 4096,
			  (off_t)chunk * CHUNK_SECTORS * 512);
}

static int info(int fd, struct blksnap_snapshotinfo *si)
{
	unsigned int len = sizeof(*si);

	memset(si, 0xaa, sizeof(*si));
	return blksnap_ctl(fd, blkfilter_ctl_blksnap_snapshotinfo, si, &len, NULL);
}

/* ----- 1: COLLECT, size query then fetch ----- */

TEST_F(v3, collect_size_query_then_fetch)
{
	struct blksnap_snapshot_collect c = { .count = 0, .ids = 0 };
	struct blksnap_uuid second, *ids;
	unsigned int n, i, found = 0;

	ASSERT_EQ(0, snapshot_create(self->ctl, &second));
	/* The size query: no array, count 0; v3 answers 0 and the number. */
	ASSERT_EQ(0, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
	n = c.count;
	EXPECT_LE(2, n);

	/* The fetch into an array of that size. */
	ids = calloc(n + 1, sizeof(*ids));
	ASSERT_NE(NULL, ids);
	c.count = n;
	c.ids = (uintptr_t)ids;
	ASSERT_EQ(0, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
	EXPECT_EQ(n, c.count);
	for (i = 0; i < n; i++)
		found += !memcmp(&ids[i], &self->id, 16) + !memcmp(&ids[i], &second, 16);
	EXPECT_EQ(2, found);

	/* Too small: v3 fills what fits, counts it and says ENODATA. */
	memset(ids, 0, (n + 1) * sizeof(*ids));
	c.count = n - 1;
	EXPECT_EQ(ENODATA, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
	EXPECT_EQ(n - 1, c.count);
	for (i = 0; i < n - 1; i++)
		EXPECT_NE(0, memcmp(&ids[i], &ids[n], 16));
	EXPECT_EQ(0, ids[n - 1].b[0] | ids[n - 1].b[15]);

	free(ids);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &second));
}

/* ----- 2: snapshotinfo before and after add ----- */

TEST_F(v3, snapshotinfo_before_and_after_add)
{
	struct blksnap_snapshotinfo si;
	struct stat st;
	char name[64];

	/* In no snapshot: v3 answers 0, no error and no image. */
	ASSERT_EQ(0, info(self->orig.fd, &si));
	EXPECT_EQ(0, si.error_code);
	EXPECT_EQ(0, si.image[0]);

	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	ASSERT_EQ(0, info(self->orig.fd, &si));
	EXPECT_EQ(0, si.error_code);
	EXPECT_EQ(0, si.image[0]);

	ASSERT_EQ(0, give(self, 0, 8192));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, info(self->orig.fd, &si));
	EXPECT_EQ(0, si.error_code);
	ASSERT_EQ(0, fstat(self->orig.fd, &st));
	snprintf(name, sizeof(name), "%s_%u:%u", BLKSNAP_IMAGE_NAME, major(st.st_rdev),
		 minor(st.st_rdev));
	EXPECT_STREQ(name, (char *)si.image);

	/* Destroyed: back to zeroes. */
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	ASSERT_EQ(0, info(self->orig.fd, &si));
	EXPECT_EQ(0, si.error_code);
	EXPECT_EQ(0, si.image[0]);
}

/* ----- 3: APPEND_STORAGE with no ranges ----- */

TEST_F(v3, append_storage_without_ranges)
{
	struct blksnap_uuid unknown = { .b = { 0x5a } };

	/* v3 opens the device and adds nothing. */
	EXPECT_EQ(0, storage_append(self->ctl, &self->id, self->store.path, NULL, 0));
	/* Its other checks still come first. */
	EXPECT_EQ(ESRCH, storage_append(self->ctl, &unknown, self->store.path, NULL, 0));
	EXPECT_EQ(ENOENT, storage_append(self->ctl, &self->id, "/dev/no-such-device", NULL, 0));
	/* Nothing was given: the take still needs storage. */
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	EXPECT_EQ(ENOSPC, snapshot_take(self->ctl, &self->id));
}

/* ----- 4: the corrupted event's errno ----- */

TEST_F(v3, corrupted_event_errno_is_positive)
{
	struct blksnap_event_corrupted c = { 0 };
	struct blksnap_snapshotinfo si;
	struct stat st;
	int i, found = 0;

	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	/* Room for two chunks; the third first write overflows. */
	ASSERT_EQ(0, give(self, 0, 2 * CHUNK_SECTORS));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	for (i = 0; i < 4; i++)
		ASSERT_EQ(0, write_chunk(self, i));
	while (!found && snapshot_wait_event(self->ctl, &self->id, 5000, self->ev) == 0) {
		if (self->ev->code != blksnap_event_code_corrupted)
			continue;
		found = 1;
		memcpy(&c, self->ev->data, sizeof(c));
	}
	ASSERT_TRUE(found);
	ASSERT_EQ(0, fstat(self->orig.fd, &st));
	EXPECT_EQ(major(st.st_rdev), c.dev_id_mj);
	EXPECT_EQ(minor(st.st_rdev), c.dev_id_mn);
	/* v3: abs(error) in the event, the error as it is in the info. */
	EXPECT_EQ(ENOSPC, c.err_code);
	ASSERT_EQ(0, info(self->orig.fd, &si));
	EXPECT_EQ(-ENOSPC, si.error_code);
}

/* ----- 5: time_label is ktime_get() ----- */

static long long monotonic_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

TEST_F(v3, event_time_is_the_monotonic_clock)
{
	struct blksnap_uuid id;
	long long before, after;

	before = monotonic_ns();
	ASSERT_EQ(0, snapshot_create(self->ctl, &id));
	ASSERT_EQ(0, snapshot_wait_event(self->ctl, &id, 1000, self->ev));
	after = monotonic_ns();
	EXPECT_EQ(blksnap_event_code_low_free_space, self->ev->code);
	EXPECT_LE(before, self->ev->time_label);
	EXPECT_GE(after, self->ev->time_label);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &id));
}

/* ----- 6: WAIT_EVENT writes the whole structure ----- */

TEST_F(v3, wait_event_writes_the_whole_structure)
{
	struct blksnap_snapshot_event *ev = self->ev;
	size_t i, dirty = 0;

	memset(ev, 0xa5, sizeof(*ev));
	ASSERT_EQ(0, snapshot_wait_event(self->ctl, &self->id, 1000, ev));
	/* The input comes back as it went in. */
	EXPECT_EQ(0, memcmp(&ev->id, &self->id, sizeof(self->id)));
	EXPECT_EQ(1000, ev->timeout_ms);
	EXPECT_EQ(blksnap_event_code_low_free_space, ev->code);
	EXPECT_NE(0, requested(ev));
	/* Past the event's own data, zeroes to the end of the page. */
	for (i = sizeof(struct blksnap_event_low_free_space); i < sizeof(ev->data); i++)
		dirty += ev->data[i] != 0;
	EXPECT_EQ(0, dirty);
}

/* ----- 8: BLKFILTER_CTL leaves optlen alone ----- */

TEST_F(v3, filter_ctl_does_not_write_optlen)
{
	struct blkfilter_ctl ctl = { .cmd = blkfilter_ctl_blksnap_cbtinfo };
	unsigned char buf[4096];

	strcpy((char *)ctl.name, "blksnap");
	ctl.opt = (uintptr_t)buf;
	ctl.optlen = sizeof(buf);
	ASSERT_EQ(0, sys_errno(ioctl(self->orig.fd, BLKFILTER_CTL, &ctl)));
	EXPECT_EQ(sizeof(buf), ctl.optlen);

	ctl.cmd = blkfilter_ctl_blksnap_snapshotinfo;
	ctl.optlen = 100;
	ASSERT_EQ(0, sys_errno(ioctl(self->orig.fd, BLKFILTER_CTL, &ctl)));
	EXPECT_EQ(100, ctl.optlen);
}

/* ----- 9: where blksnap keeps its own answer ----- */

/* A bad address is EFAULT everywhere (v3: ENODATA or EINVAL, varying). */
TEST_F(v3, kept_faulting_pointers_give_efault)
{
	void *bad = (void *)16;
	struct blkfilter_ctl ctl = { .cmd = blkfilter_ctl_blksnap_cbtinfo };

	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_VERSION, bad)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, bad)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, bad)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, bad)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, bad)));
	strcpy((char *)ctl.name, "blksnap");
	ctl.opt = 16;
	ctl.optlen = sizeof(struct blksnap_cbtinfo);
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->orig.fd, BLKFILTER_CTL, &ctl)));
}

/* A take without storage is ENOSPC (v3: EFAULT). */
TEST_F(v3, kept_take_without_storage_is_enospc)
{
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	EXPECT_EQ(ENOSPC, snapshot_take(self->ctl, &self->id));
}

/* A taken snapshot takes no more devices (v3 listed one with no image). */
TEST_F(v3, kept_add_to_taken_snapshot_is_ebusy)
{
	struct loopdev other = { .fd = -1 };

	ASSERT_EQ(0, loop_create(&other, 4 * MIB));
	ASSERT_EQ(0, blksnap_attach(other.fd));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	ASSERT_EQ(0, give(self, 0, 8192));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	EXPECT_EQ(EBUSY, snapshot_add(other.fd, &self->id));
	EXPECT_EQ(0, blksnap_detach(other.fd));
	loop_destroy(&other);
}

/*
 * cbtmap returns the bytes copied, as v3's documentation says (its code
 * returned 0; v3 tools only test for < 0), and refuses an offset past the
 * map, which v3 read past.
 */
TEST_F(v3, kept_cbtmap_returns_bytes_and_stops_at_the_map)
{
	struct blksnap_cbtinfo ci;
	unsigned char map[4096];
	struct blksnap_cbtmap m = { .offset = 0, .length = sizeof(map),
				    .buffer = (uintptr_t)map };
	unsigned int len = sizeof(ci);
	int ret = -1;

	ASSERT_EQ(0, blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_cbtinfo, &ci, &len, NULL));
	ASSERT_GT(sizeof(map), ci.block_count);
	len = sizeof(m);
	ASSERT_EQ(0, blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret));
	EXPECT_EQ(ci.block_count, ret);
	m.offset = ci.block_count;
	EXPECT_EQ(EINVAL, blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, NULL));
}

/* ----- 7: low-space requests (last: it reloads the module) ----- */

/* The v3 fixture on a module that asks for 4096 sectors at a time. */
FIXTURE(v3_small) {
	struct _test_data_v3 t;
};

FIXTURE_SETUP(v3_small)
{
	struct _test_data_v3 *t = &self->t;

	t->ctl = -1;
	t->orig.fd = -1;
	t->store.fd = -1;
	run("rmmod blksnap 2>/dev/null");
	/* Fails if the module is still in use: then the minimum is unknown. */
	ASSERT_EQ(0, run("modprobe blksnap diff_storage_minimum=4096"));
	t->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, t->ctl);
	t->page = aligned_alloc(4096, 4096);
	t->ev = calloc(1, sizeof(*t->ev));
	ASSERT_NE(NULL, t->page);
	ASSERT_NE(NULL, t->ev);
	ASSERT_EQ(0, loop_create(&t->orig, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&t->store, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(t->orig.fd));
	ASSERT_EQ(0, snapshot_create(t->ctl, &t->id));
	ASSERT_EQ(0, snapshot_add(t->orig.fd, &t->id));
}

/* Leaves the module loaded with its defaults for the programs after this. */
FIXTURE_TEARDOWN(v3_small)
{
	struct _test_data_v3 *t = &self->t;

	if (t->ctl >= 0) {
		snapshot_destroy(t->ctl, &t->id);
		close(t->ctl);
	}
	if (t->orig.fd >= 0)
		blksnap_detach(t->orig.fd);
	loop_destroy(&t->orig);
	loop_destroy(&t->store);
	free(t->page);
	free(t->ev);
	EXPECT_EQ(0, run("rmmod blksnap && modprobe blksnap"));
}

/* Writes chunks [*chunk, end) and checks that none makes a request. */
static void no_request_up_to(struct __test_metadata *_metadata, struct _test_data_v3 *t,
			     unsigned int *chunk, unsigned int end)
{
	for (; *chunk < end; (*chunk)++) {
		ASSERT_EQ(0, write_chunk(t, *chunk));
		EXPECT_EQ(ENOENT, snapshot_wait_event(t->ctl, &t->id, 200, t->ev)) {
			TH_LOG("request after chunk %u", *chunk);
		}
	}
}

/* Writes chunk *chunk and checks that it makes a request for 4096. */
static void request_at(struct __test_metadata *_metadata, struct _test_data_v3 *t,
		       unsigned int *chunk)
{
	ASSERT_EQ(0, write_chunk(t, *chunk));
	ASSERT_EQ(0, snapshot_wait_event(t->ctl, &t->id, 10000, t->ev)) {
		TH_LOG("no request after chunk %u", *chunk);
	}
	EXPECT_EQ(blksnap_event_code_low_free_space, t->ev->code);
	EXPECT_EQ(4096, requested(t->ev));
	(*chunk)++;
}

/*
 * v3 asks for diff_storage_minimum sectors when the snapshot is created and
 * again whenever at most half of that (in whole pages) is left of what it
 * has asked for so far, counted against what it asked for, not against
 * what it was given; a request stays open until the storage given adds up
 * to everything asked for.  Chunks here are 512 sectors.
 */
TEST_F(v3_small, low_space_requests_follow_what_was_asked)
{
	struct _test_data_v3 *t = &self->t;
	unsigned int chunk = 0;

	ASSERT_EQ(0, snapshot_wait_event(t->ctl, &t->id, 1000, t->ev));
	ASSERT_EQ(blksnap_event_code_low_free_space, t->ev->code);
	EXPECT_EQ(4096, requested(t->ev));
	/* Half of what was asked; the first request does not stay open. */
	ASSERT_EQ(0, give(t, 0, 2048));
	ASSERT_EQ(0, snapshot_take(t->ctl, &t->id));

	/* 2048 of the 4096 asked left after 4 chunks: the second request. */
	no_request_up_to(_metadata, t, &chunk, 3);
	request_at(_metadata, t, &chunk);

	/* 8192 asked, 4096 given: the request stays open, however low. */
	ASSERT_EQ(0, give(t, 2048, 2048));
	no_request_up_to(_metadata, t, &chunk, 8);
	/* All given: 2048 of the 8192 left after 12 chunks. */
	ASSERT_EQ(0, give(t, 4096, 4096));
	no_request_up_to(_metadata, t, &chunk, 11);
	request_at(_metadata, t, &chunk);

	/*
	 * Twice what was asked (16384 given, 12288 asked): counted against
	 * what was asked, 2048 left after 20 chunks though 6144 are free.
	 */
	ASSERT_EQ(0, give(t, 8192, 8192));
	no_request_up_to(_metadata, t, &chunk, 19);
	request_at(_metadata, t, &chunk);

	/* Not answered (16384 asked and given): no request up to the end. */
	no_request_up_to(_metadata, t, &chunk, 31);
	/* An empty answer closes it: given is all that was asked. */
	ASSERT_EQ(0, storage_append(t->ctl, &t->id, t->store.path, NULL, 0));
	request_at(_metadata, t, &chunk);
}

TEST_HARNESS_MAIN
