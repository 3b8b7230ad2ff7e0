// SPDX-License-Identifier: GPL-2.0
/*
 * Snapshot images appear only once copy-on-write is on, and look like
 * their original to the programs that read them: the same block sizes,
 * I/O hints and discard limits, and no partition scan of their own.
 *
 * The originals and the storage are memory-backed null_blk disks.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define DEV_MB 16
#define DEV_SIZE ((off_t)DEV_MB << 20)
#define ORIG "bsnap_img_orig"
#define STORE "bsnap_img_store"

/* A memory-backed null_blk disk with `bs`-byte blocks that takes discards. */
static int nullb_create_bs(const char *name, const char *bs)
{
	char path[128];

	snprintf(path, sizeof(path), NULLB_DIR "%s", name);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	if (nullb_set(name, "size", "16") || nullb_set(name, "memory_backed", "1") ||
	    nullb_set(name, "blocksize", bs) || nullb_set(name, "discard", "1"))
		return -1;
	return nullb_set(name, "power", "1");
}

FIXTURE(image) {
	int ctl, orig;
	char image[64], image_sys[96];
};

FIXTURE_VARIANT(image) {
	const char *block_size;
};

FIXTURE_VARIANT_ADD(image, bs512) {
	.block_size = "512",
};

FIXTURE_VARIANT_ADD(image, bs4096) {
	.block_size = "4096",
};

FIXTURE_SETUP(image)
{
	struct stat st;

	self->ctl = self->orig = -1;
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create_bs(ORIG, variant->block_size));
	ASSERT_EQ(0, nullb_create(STORE, DEV_MB, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open("/dev/" ORIG, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	ASSERT_EQ(0, fstat(self->orig, &st));
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
	snprintf(self->image_sys, sizeof(self->image_sys), "/sys/block/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
	ASSERT_EQ(0, blksnap_attach(self->orig));
}

FIXTURE_TEARDOWN(image)
{
	nullb_pair_teardown(self->ctl, self->orig, ORIG, STORE);
}

static long sysfs_num(const char *dir, const char *attr)
{
	char path[160], buf[32] = "";
	int fd, n;

	snprintf(path, sizeof(path), "%s/%s", dir, attr);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	return n > 0 ? strtol(buf, NULL, 10) : -1;
}

/*
 * Item 3: the image announces the original's geometry and scans no
 * partitions; O_DIRECT reads below the logical block size fail on it as
 * they do on the original.
 */
TEST_F(image, item3_image_has_the_original_geometry)
{
	static const char *const attrs[] = {
		"queue/logical_block_size", "queue/physical_block_size",
		"queue/minimum_io_size", "queue/optimal_io_size",
		"queue/discard_granularity", "queue/discard_max_bytes",
	};
	unsigned char *buf = aligned_alloc(4096, 4096);
	struct blksnap_uuid id;
	int fd;
	size_t i;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &id, "/dev/" STORE, DEV_SIZE >> 9));
	for (i = 0; i < ARRAY_SIZE(attrs); i++) {
		long want = sysfs_num("/sys/block/" ORIG, attrs[i]);

		ASSERT_LE(0, want);
		EXPECT_EQ(want, sysfs_num(self->image_sys, attrs[i])) TH_LOG("%s", attrs[i]);
	}
	EXPECT_EQ(0, sysfs_num(self->image_sys, "partscan"));

	fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	if (atoi(variant->block_size) > 512) {
		EXPECT_EQ(-1, pread(fd, buf, 512, 0));
		EXPECT_EQ(EINVAL, errno);
	} else {
		EXPECT_EQ(512, pread(fd, buf, 512, 0));
	}
	EXPECT_EQ(4096, pread(fd, buf, 4096, 0));
	close(fd);
	/* An image is the module's own device: nothing is attached to it. */
	fd = open(self->image, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(EINVAL, blksnap_attach(fd));
	close(fd);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id));
	free(buf);
}

struct race {
	int orig;
	const char *image;
	int stop;		/* atomic */
	int held;		/* atomic: the image, opened the moment it appeared */
	unsigned char first[4096];
};

/* Rewrites block 0 of the original with a new number, again and again. */
static void *rewrite_block0(void *arg)
{
	struct race *r = arg;
	unsigned char *b = aligned_alloc(4096, 4096);
	uint32_t n = 0;

	if (!b)
		return NULL;
	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		memset(b, 0, 4096);
		memcpy(b, &n, sizeof(n));
		n++;
		if (pwrite(r->orig, b, 4096, 0) != 4096)
			break;
	}
	free(b);
	return NULL;
}

/* Opens the image as soon as it exists, reads block 0 through the page cache, holds it open. */
static void *open_at_once(void *arg)
{
	struct race *r = arg;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		int fd = open(r->image, O_RDONLY | O_CLOEXEC);

		if (fd >= 0) {
			if (pread(fd, r->first, 4096, 0) != 4096)
				memset(r->first, 0xff, 4096);
			__atomic_store_n(&r->held, fd, __ATOMIC_RELEASE);
			return NULL;
		}
	}
	return NULL;
}

/*
 * Item 3: block 0 of the original is rewritten all the time while a
 * reader opens the image the moment it appears and reads it through the
 * page cache.  After the take, what that reader has cached is what an
 * O_DIRECT read of the image returns.
 */
TEST_F(image, item3_image_opened_at_once_shows_the_point_in_time)
{
	unsigned char *direct = aligned_alloc(4096, 4096);
	unsigned char cached[4096];
	struct race r = { .orig = self->orig, .image = self->image };
	pthread_t writer, opener;
	struct blksnap_uuid id;
	int round, fd, i, bad = 0;

	ASSERT_NE(NULL, direct);
	for (round = 0; round < 10; round++) {
		__atomic_store_n(&r.stop, 0, __ATOMIC_RELEASE);
		r.held = -1;
		ASSERT_EQ(0, pthread_create(&writer, NULL, rewrite_block0, &r));
		ASSERT_EQ(0, pthread_create(&opener, NULL, open_at_once, &r));
		usleep(10000);
		ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &id, "/dev/" STORE,
					     DEV_SIZE >> 9));
		/*
		 * The opener, spinning on open(), got the image: on a loaded
		 * machine that can take longer than the writer's 10 ms.
		 */
		for (i = 0; i < 5000 && __atomic_load_n(&r.held, __ATOMIC_ACQUIRE) < 0; i++)
			usleep(1000);
		usleep(10000);
		__atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
		ASSERT_EQ(0, pthread_join(writer, NULL));
		ASSERT_EQ(0, pthread_join(opener, NULL));
		ASSERT_LE(0, r.held);

		fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		ASSERT_LE(0, fd);
		ASSERT_EQ(4096, pread(fd, direct, 4096, 0));
		close(fd);
		ASSERT_EQ(4096, pread(r.held, cached, 4096, 0));
		if (memcmp(cached, direct, 4096) || memcmp(r.first, direct, 4096)) {
			bad++;
			TH_LOG("round %d: block 0 cached %u, first read %u, image %u", round,
			       *(uint32_t *)cached, *(uint32_t *)r.first, *(uint32_t *)direct);
		}
		close(r.held);
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &id));
	}
	EXPECT_EQ(0, bad);
	free(direct);
}

TEST_HARNESS_MAIN
