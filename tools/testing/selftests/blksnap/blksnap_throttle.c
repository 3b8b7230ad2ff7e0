// SPDX-License-Identifier: GPL-2.0
/*
 * Writes that are held back on their way to the original's queue at the
 * moment of the take: by blk-throttle (a writer in a cgroup with io.max),
 * or stacked under a device-mapper target.  Such a write has not reached
 * the device when the take happens, so the image must not show it, ever,
 * and the next snapshot's change map must flag its blocks.
 *
 * The original and the storage are memory-backed null_blk disks.
 */
#define _GNU_SOURCE
#include <signal.h>
#include <linux/fs.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 120

#define MIB (1ULL << 20)
#define DEV_MB 16
#define DEV_SIZE (DEV_MB * MIB)
#define WRITE_OFF (4 * MIB)
#define WRITE_LEN (4 * MIB)
#define CGROUP "/sys/fs/cgroup/bsnap_throttle"
#define ORIG "bsnap_thr_orig"
#define STORE "bsnap_thr_store"
#define LINEAR "bsnap_thr_linear"

FIXTURE(throttle) {
	int ctl, orig;
	dev_t devt;
	char image[64];
	unsigned char *a, *b, *img;
	pid_t writer;
	bool linear;
};

FIXTURE_SETUP(throttle)
{
	struct stat st;
	char limit[64];

	self->ctl = self->orig = -1;
	self->writer = 0;
	self->linear = false;
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		run("mount -t cgroup2 none /sys/fs/cgroup");
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		SKIP(return, "cgroup v2 is not available");
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, write_str("/sys/fs/cgroup/cgroup.subtree_control", "+io"));
	/* What a case that stopped half-way may have left. */
	run("dmsetup remove bsnap_thr_delay 2>/dev/null");
	nullb_delete(ORIG);
	nullb_delete(STORE);
	ASSERT_EQ(0, nullb_create(ORIG, DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create(STORE, DEV_MB, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open("/dev/" ORIG, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	ASSERT_EQ(0, fstat(self->orig, &st));
	self->devt = st.st_rdev;
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));

	self->a = aligned_alloc(4096, DEV_SIZE);
	self->b = aligned_alloc(4096, WRITE_LEN);
	self->img = aligned_alloc(4096, DEV_SIZE);
	ASSERT_NE(NULL, self->a);
	ASSERT_NE(NULL, self->b);
	ASSERT_NE(NULL, self->img);
	fill_random(self->a, DEV_SIZE, 17);
	fill_random(self->b, WRITE_LEN, 18);
	ASSERT_EQ(0, pwrite_all(self->orig, self->a, DEV_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(self->orig));

	/* 1 MiB/s of writes to the original for the writer's cgroup. */
	rmdir(CGROUP);
	ASSERT_EQ(0, mkdir(CGROUP, 0755));
	snprintf(limit, sizeof(limit), "%u:%u wbps=1048576", major(self->devt),
		 minor(self->devt));
	ASSERT_EQ(0, write_str(CGROUP "/io.max", limit));
}

FIXTURE_TEARDOWN(throttle)
{
	if (self->writer > 0) {
		kill(self->writer, SIGKILL);
		waitpid(self->writer, NULL, 0);
	}
	if (self->linear)
		run("dmsetup remove " LINEAR);
	rmdir(CGROUP);
	nullb_pair_teardown(self->ctl, self->orig, ORIG, STORE);
	free(self->a);
	free(self->b);
	free(self->img);
}

/* Forks a writer into the throttled cgroup: pattern B over A at WRITE_OFF. */
static pid_t start_writer(const char *path, const unsigned char *b)
{
	pid_t pid = fork();
	char me[32];
	int fd;

	if (pid)
		return pid;
	snprintf(me, sizeof(me), "%d", getpid());
	if (write_str(CGROUP "/cgroup.procs", me))
		_exit(2);
	fd = open(path, O_WRONLY | O_DIRECT | O_CLOEXEC);
	if (fd < 0)
		_exit(3);
	_exit(pwrite_all(fd, b, WRITE_LEN, WRITE_OFF) ? 4 : 0);
}

/*
 * The writer's 4 MiB need about four seconds at 1 MiB/s; the snapshot is
 * taken while they are held.  The image reads A over the whole device,
 * right after the take and again once the writer is done; the next take's
 * change map flags every block the write touched.
 */
static void throttled_write_at_take(struct __test_metadata *_metadata,
				    struct _test_data_throttle *self, const char *path)
{
	struct blksnap_uuid s1, s2;
	struct blksnap_cbtinfo info;
	unsigned char map[4096];
	struct blksnap_cbtmap m = { .offset = 0, .buffer = (uintptr_t)map };
	unsigned int len, first, last, blk;
	int status, ret = 0;

	self->writer = start_writer(path, self->b);
	ASSERT_LT(0, self->writer);
	usleep(300000);
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &s1, "/dev/" STORE, DEV_SIZE >> 9));
	/* Still held back: otherwise this run shows nothing. */
	ASSERT_EQ(0, waitpid(self->writer, &status, WNOHANG));
	ASSERT_EQ(0, read_whole(self->image, self->img, DEV_SIZE));
	EXPECT_EQ(0, memcmp(self->img, self->a, DEV_SIZE))
		TH_LOG("the image shows a write held back at the take");

	ASSERT_EQ(self->writer, waitpid(self->writer, &status, 0));
	self->writer = 0;
	ASSERT_TRUE(WIFEXITED(status));
	ASSERT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, read_whole(self->image, self->img, DEV_SIZE));
	EXPECT_EQ(0, memcmp(self->img, self->a, DEV_SIZE))
		TH_LOG("the image changed when the held-back write landed");

	/* The original has B now; the next map flags all of it. */
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &s2, "/dev/" STORE, DEV_SIZE >> 9));
	len = sizeof(info);
	ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_cbtinfo, &info, &len, NULL));
	ASSERT_GE(sizeof(map), info.block_count);
	m.length = info.block_count;
	len = sizeof(m);
	ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret));
	first = WRITE_OFF / info.block_size;
	last = (WRITE_OFF + WRITE_LEN - 1) / info.block_size;
	for (blk = first; blk <= last; blk++) {
		EXPECT_EQ(info.changes_number, map[blk])
			TH_LOG("block %u written after take %u is marked %u", blk,
			       info.changes_number - 1, map[blk]);
	}
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s2));
}

/* Item 1: the writer writes to the original itself. */
TEST_F(throttle, item1_throttled_write_held_at_take)
{
	throttled_write_at_take(_metadata, self, "/dev/" ORIG);
}

/*
 * Item 1 with a dm-linear device on the original: the writer writes to the
 * dm device, throttled there (7.3 throttles a dm device's clones by the
 * limits of the dm device, not of the device below).  A clone passes the
 * original's filter when dm issues it, after the take.
 */
TEST_F(throttle, item1_throttled_write_through_dm_linear_held_at_take)
{
	char cmd[160], limit[64], path[32];
	struct stat st;

	if (access("/usr/bin/dmsetup", X_OK) && access("/sbin/dmsetup", X_OK))
		SKIP(return, "dmsetup is not available");
	snprintf(cmd, sizeof(cmd), "dmsetup create " LINEAR " --table '0 %llu linear /dev/%s 0'",
		 DEV_SIZE >> 9, ORIG);
	ASSERT_EQ(0, run(cmd));
	self->linear = true;
	ASSERT_EQ(0, dm_path(LINEAR, path, sizeof(path)));
	ASSERT_EQ(0, stat(path, &st));
	snprintf(limit, sizeof(limit), "%u:%u wbps=1048576", major(st.st_rdev),
		 minor(st.st_rdev));
	ASSERT_EQ(0, write_str(CGROUP "/io.max", limit));
	throttled_write_at_take(_metadata, self, path);
}

/*
 * Writes dm-delay holds in its queue.  dm-delay, like dm-crypt, dm-thin
 * and dm-cache, counts a bio in flight only once it passes it down, so
 * the device's in-flight count does not show it.
 */
static int delayed_writes(const char *name, unsigned int *writes)
{
	char cmd[96], line[160];
	unsigned int reads;
	FILE *f;
	int n;

	snprintf(cmd, sizeof(cmd), "dmsetup status %s", name);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	n = 0;
	if (fgets(line, sizeof(line), f))
		n = sscanf(line, "%*u %*u delay %u %u", &reads, writes);
	pclose(f);
	return n == 2 ? 0 : -1;
}

#define DELAY_MS 3000
#define HELD_LEN (256 * 1024)

/*
 * Item 1 on a bio-based original: a dm-delay device over a null_blk disk
 * holds each write for three seconds.  A write the filter let pass before
 * the take, still held in dm-delay's queue at the take, lies before the
 * point in time: the take waits for it, so the image shows it at once and
 * never changes.  Failed before the take counted such writes itself: the
 * take returned with the write still held, and the image changed when it
 * landed.
 */
TEST(item1_write_in_flight_below_a_bio_based_original)
{
	unsigned char *a = aligned_alloc(4096, DEV_SIZE);
	unsigned char *b = aligned_alloc(4096, HELD_LEN);
	unsigned char *img1 = aligned_alloc(4096, DEV_SIZE);
	unsigned char *img2 = aligned_alloc(4096, DEV_SIZE);
	uint64_t zeroes[2] = { DEV_SIZE - 65536, 65536 };
	unsigned int held = 0;
	struct blksnap_uuid id;
	char cmd[200], image[64], path[32];
	int ctl, fd, status, i;
	pid_t writer;

	ASSERT_NE(NULL, a);
	ASSERT_NE(NULL, b);
	ASSERT_NE(NULL, img1);
	ASSERT_NE(NULL, img2);
	if (access("/usr/bin/dmsetup", X_OK) && access("/sbin/dmsetup", X_OK))
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, nullb_available());
	ASSERT_EQ(0, nullb_create(ORIG, DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create(STORE, DEV_MB, NULL));
	snprintf(cmd, sizeof(cmd),
		 "dmsetup create bsnap_thr_delay --table '0 %llu delay /dev/%s 0 0 /dev/%s 0 %d'",
		 DEV_SIZE >> 9, ORIG, ORIG, DELAY_MS);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	ASSERT_EQ(0, dm_path("bsnap_thr_delay", path, sizeof(path)));
	fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, image_path_of(fd, image, sizeof(image)));
	fill_random(a, DEV_SIZE, 19);
	fill_random(b, HELD_LEN, 20);
	ASSERT_EQ(0, pwrite_all(fd, a, DEV_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(fd));
	/*
	 * A write of zeroes, which the block layer sends as bios chained to
	 * one another: each is counted and ends as it would.
	 */
	ASSERT_EQ(0, ioctl(fd, BLKZEROOUT, zeroes));
	memset(a + DEV_SIZE - 65536, 0, 65536);
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	ASSERT_EQ(0, snapshot_add(fd, &id));
	ASSERT_EQ(0, storage_append(ctl, &id, "/dev/" STORE,
				    &(struct blksnap_sectors){ 0, DEV_SIZE >> 9 }, 1));

	writer = fork();
	ASSERT_LE(0, writer);
	if (!writer)
		_exit(pwrite_all(fd, b, HELD_LEN, WRITE_OFF) ? 1 : 0);
	/* Take only once dm-delay holds the write, and while it does. */
	for (i = 0; i < 200 && !held; i++) {
		ASSERT_EQ(0, delayed_writes("bsnap_thr_delay", &held));
		if (!held)
			usleep(10000);
	}
	ASSERT_NE(0, held)
		TH_LOG("dm-delay never held the write");
	ASSERT_EQ(0, snapshot_take(ctl, &id));
	ASSERT_EQ(0, read_whole(image, img1, DEV_SIZE));
	ASSERT_EQ(writer, waitpid(writer, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(0, read_whole(image, img2, DEV_SIZE));
	EXPECT_EQ(0, memcmp(img1 + WRITE_OFF, b, HELD_LEN))
		TH_LOG("the image lacks a write the device held at the take");
	EXPECT_EQ(0, memcmp(img1, img2, DEV_SIZE))
		TH_LOG("the image changed when a write held at the take landed");
	EXPECT_EQ(0, memcmp(img2, a, WRITE_OFF));
	EXPECT_EQ(0, memcmp(img2 + WRITE_OFF + HELD_LEN, a + WRITE_OFF + HELD_LEN,
			    DEV_SIZE - WRITE_OFF - HELD_LEN));

	snapshot_destroy(ctl, &id);
	blksnap_detach(fd);
	close(fd);
	close(ctl);
	run("dmsetup remove bsnap_thr_delay");
	nullb_delete(ORIG);
	nullb_delete(STORE);
	free(a);
	free(b);
	free(img1);
	free(img2);
}

TEST_HARNESS_MAIN
