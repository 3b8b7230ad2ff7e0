// SPDX-License-Identifier: GPL-2.0
/*
 * Destroy, then take again at once: the difference area of the destroyed
 * snapshot can still hold first writes and store chunks for a while (its
 * storage is slow), and none of that may reach the next snapshot of the
 * same device, whose image must stay as it was at its take.
 *
 * The storage is a memory-backed null_blk disk that completes every bio
 * after 50 ms; the original is a memory-backed null_blk disk too.
 *
 * The same setup, then destroy, detach and unload at once: no work item of
 * the module may still run when its code is gone.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
#define DEV_MB 16
#define DEV_SIZE (DEV_MB * MIB)
#define CHUNK (256 * 1024)	/* blksnap's chunk for a 16 MiB device */
#define WRITERS 20

struct writer {
	int fd;
	off_t off;
	unsigned char *buf;
	int err;
};

static void *write_one(void *arg)
{
	struct writer *w = arg;

	w->err = pwrite_all(w->fd, w->buf, BLK, w->off);
	return NULL;
}

FIXTURE(retake) {
	int ctl, orig;
	char image[64];
	unsigned char *img1, *img2, *buf;
};

FIXTURE_SETUP(retake)
{
	struct stat st;

	self->ctl = self->orig = -1;
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create("bsnap_rt_orig", DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create("bsnap_rt_slow", DEV_MB, "50000000"));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open("/dev/bsnap_rt_orig", O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	self->img1 = aligned_alloc(4096, DEV_SIZE);
	self->img2 = aligned_alloc(4096, DEV_SIZE);
	self->buf = aligned_alloc(4096, DEV_SIZE);
	ASSERT_NE(NULL, self->img1);
	ASSERT_NE(NULL, self->img2);
	ASSERT_NE(NULL, self->buf);
	fill_random(self->buf, DEV_SIZE, 4711);
	ASSERT_EQ(0, pwrite_all(self->orig, self->buf, DEV_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(self->orig));
	ASSERT_EQ(0, fstat(self->orig, &st));
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
}

FIXTURE_TEARDOWN(retake)
{
	if (self->orig >= 0) {
		blksnap_detach(self->orig);
		close(self->orig);
	}
	if (self->ctl >= 0)
		close(self->ctl);
	nullb_delete("bsnap_rt_orig");
	nullb_delete("bsnap_rt_slow");
	free(self->img1);
	free(self->img2);
	free(self->buf);
}

/*
 * Item 2: S1 taken, 20 first writes in flight, S1 destroyed, S2 created,
 * given the same storage and taken at once; then more first writes under
 * S2.  S2's image reads the same before and after all of them ended.
 */
TEST_F(retake, destroy_then_take_again_at_once)
{
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	struct blksnap_uuid s1, s2;
	unsigned char *after = self->buf + DEV_SIZE - 64 * BLK;
	int i, round;

	memset(after, 0xc3, 64 * BLK);
	for (round = 0; round < 3; round++) {
		ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &s1, "/dev/bsnap_rt_slow",
					     DEV_SIZE >> 9));
		for (i = 0; i < WRITERS; i++) {
			w[i] = (struct writer){ .fd = self->orig,
						.off = (off_t)(i + round * WRITERS) * CHUNK,
						.buf = after };
			ASSERT_EQ(0, pthread_create(&th[i], NULL, write_one, &w[i]));
		}
		usleep(20000);
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
		ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &s2, "/dev/bsnap_rt_slow",
					     DEV_SIZE >> 9));
		ASSERT_EQ(0, read_whole(self->image, self->img1, DEV_SIZE));
		/* First writes under S2: its copies go to the start of storage. */
		for (i = 0; i < 8; i++)
			ASSERT_EQ(0, pwrite_all(self->orig, after, BLK,
						(off_t)(60 - i) * CHUNK + BLK));
		for (i = 0; i < WRITERS; i++) {
			ASSERT_EQ(0, pthread_join(th[i], NULL));
			EXPECT_EQ(0, w[i].err);
		}
		ASSERT_EQ(0, read_whole(self->image, self->img2, DEV_SIZE));
		EXPECT_EQ(0, memcmp(self->img1, self->img2, DEV_SIZE)) {
			for (i = 0; i < DEV_SIZE / CHUNK; i++)
				if (memcmp(self->img1 + i * CHUNK, self->img2 + i * CHUNK, CHUNK))
					TH_LOG("round %d: chunk %d of the image changed", round, i);
		}
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &s2));
	}
}

/*
 * Item 4: the setup of item 2, then destroy, detach and rmmod at once, 20
 * times.  The retired area's work can still be queued or running when
 * destroy returns; unloading must wait for it.  Defined last: it unloads
 * the module.
 */
FIXTURE(unload) {
	int orig, kmsg;
	unsigned char *buf;
};

FIXTURE_SETUP(unload)
{
	self->orig = -1;
	self->kmsg = kmsg_mark();
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create("bsnap_rt_orig", DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create("bsnap_rt_slow", DEV_MB, "50000000"));
	self->orig = open("/dev/bsnap_rt_orig", O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	self->buf = aligned_alloc(4096, BLK);
	ASSERT_NE(NULL, self->buf);
	memset(self->buf, 0x5a, BLK);
}

FIXTURE_TEARDOWN(unload)
{
	if (self->orig >= 0) {
		blksnap_detach(self->orig);
		close(self->orig);
	}
	nullb_delete("bsnap_rt_orig");
	nullb_delete("bsnap_rt_slow");
	free(self->buf);
	run("modprobe blksnap");
	EXPECT_NO_SPLAT(self->kmsg);
}

TEST_F(unload, item4_unload_at_once_after_destroy)
{
	struct writer w[WRITERS];
	pthread_t th[WRITERS];
	struct blksnap_uuid id;
	int i, round, ctl;

	for (round = 0; round < 20; round++) {
		ASSERT_EQ(0, run("modprobe blksnap"));
		ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, ctl);
		ASSERT_EQ(0, blksnap_attach(self->orig));
		ASSERT_EQ(0, snapshot_simple(ctl, self->orig, &id, "/dev/bsnap_rt_slow",
					     DEV_SIZE >> 9));
		for (i = 0; i < WRITERS; i++) {
			w[i] = (struct writer){ .fd = self->orig,
						.off = (i + round) % (DEV_SIZE / CHUNK) * CHUNK,
						.buf = self->buf };
			ASSERT_EQ(0, pthread_create(&th[i], NULL, write_one, &w[i]));
		}
		usleep(20000);
		ASSERT_EQ(0, snapshot_destroy(ctl, &id));
		ASSERT_EQ(0, blksnap_detach(self->orig));
		close(ctl);
		ASSERT_EQ(0, run("rmmod blksnap")) TH_LOG("round %d", round);
		for (i = 0; i < WRITERS; i++) {
			ASSERT_EQ(0, pthread_join(th[i], NULL));
			EXPECT_EQ(0, w[i].err);
		}
	}
}

TEST_HARNESS_MAIN
