// SPDX-License-Identifier: GPL-2.0
/*
 * Writes that could bypass tracking: writes sent to the whole disk that land
 * in a partition carrying the filter, and zone resets of a zoned original.
 * The image must not change, and the next change map must flag the blocks.
 */
#define _GNU_SOURCE
#include <linux/blkzoned.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#define MIB (1ULL << 20)
#define STORE "bsnap_bp_store"
#define ZONED "bsnap_bp_zoned"

/* Map byte of each block of [off, off + len) is `want`; returns the misses. */
static int map_misses(struct __test_metadata *_metadata, int fd, off_t off, size_t len)
{
	struct blksnap_cbtinfo info;
	unsigned char map[4096];
	struct blksnap_cbtmap m = { .offset = 0, .buffer = (uintptr_t)map };
	unsigned int optlen = sizeof(info), b;
	int misses = 0, ret;

	if (blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtinfo, &info, &optlen, NULL) ||
	    info.block_count > sizeof(map))
		return -1;
	m.length = info.block_count;
	optlen = sizeof(m);
	if (blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtmap, &m, &optlen, &ret))
		return -1;
	for (b = off / info.block_size; b <= (off + len - 1) / info.block_size; b++) {
		if (map[b] != info.changes_number) {
			TH_LOG("block %u is marked %u, not %u", b, map[b], info.changes_number);
			misses++;
		}
	}
	return misses;
}

FIXTURE(part) {
	struct loopdev disk;
	int ctl, p1;
	char p1_path[48];
	unsigned char *a, *b, *img;
};

#define DISK_SIZE (32 * MIB)
#define P1_OFF (2048 * 512ULL)
#define P1_SIZE (16384 * 512ULL)

FIXTURE_SETUP(part)
{
	self->disk.fd = -1;
	self->ctl = self->p1 = -1;
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create(STORE, 16, NULL));
	ASSERT_EQ(0, loop_create(&self->disk, DISK_SIZE));
	ASSERT_EQ(0, loop_partition(&self->disk));
	snprintf(self->p1_path, sizeof(self->p1_path), "%sp1", self->disk.path);
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->p1 = open(self->p1_path, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->p1);
	self->a = aligned_alloc(4096, P1_SIZE);
	self->b = aligned_alloc(4096, 1 * MIB);
	self->img = aligned_alloc(4096, P1_SIZE);
	ASSERT_NE(NULL, self->a);
	ASSERT_NE(NULL, self->b);
	ASSERT_NE(NULL, self->img);
	fill_random(self->a, P1_SIZE, 61);
	fill_random(self->b, 1 * MIB, 62);
	ASSERT_EQ(0, pwrite_all(self->p1, self->a, P1_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(self->p1));
}

FIXTURE_TEARDOWN(part)
{
	if (self->p1 >= 0) {
		blksnap_detach(self->p1);
		close(self->p1);
	}
	snapshot_destroy_all(self->ctl);
	if (self->ctl >= 0)
		close(self->ctl);
	loop_destroy(&self->disk);
	nullb_delete(STORE);
	free(self->a);
	free(self->b);
	free(self->img);
}

/*
 * Item 6: the filter is on p1; after the take, O_DIRECT writes go to the
 * whole disk at p1's offsets: one inside p1, one across p1's end into p2,
 * one across p1's start.  The image of p1 still reads as at the take, and
 * the next take's map flags every block of p1 they touched.
 */
TEST_F(part, item6_whole_disk_write_into_filtered_partition)
{
	static const struct { off_t off; size_t len; } w[] = {
		{ P1_OFF + 64 * 1024, 64 * 1024 },		/* inside p1 */
		{ P1_OFF + P1_SIZE - 128 * 1024, 256 * 1024 },	/* into p2 */
		{ P1_OFF - 64 * 1024, 128 * 1024 },		/* from before p1 */
	};
	struct blksnap_uuid s1, s2;
	char image[64];
	size_t i;

	ASSERT_EQ(0, image_path_of(self->p1, image, sizeof(image)));
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->p1, &s1, "/dev/" STORE, (16 * MIB) >> 9));
	for (i = 0; i < ARRAY_SIZE(w); i++)
		ASSERT_EQ(0, pwrite_all(self->disk.fd, self->b, w[i].len, w[i].off));
	ASSERT_EQ(0, read_whole(image, self->img, P1_SIZE));
	EXPECT_EQ(0, memcmp(self->img, self->a, P1_SIZE)) {
		for (i = 0; i < P1_SIZE; i += 4096)
			if (memcmp(self->img + i, self->a + i, 4096)) {
				TH_LOG("image of p1 changed at byte %zu", i);
				break;
			}
	}

	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->p1, &s2, "/dev/" STORE, (16 * MIB) >> 9));
	EXPECT_EQ(0, map_misses(_metadata, self->p1, 64 * 1024, 64 * 1024));
	EXPECT_EQ(0, map_misses(_metadata, self->p1, P1_SIZE - 128 * 1024, 128 * 1024));
	EXPECT_EQ(0, map_misses(_metadata, self->p1, 0, 64 * 1024));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s2));
}

FIXTURE(zoned) {
	int ctl, fd;
	unsigned char *a, *img;
};

FIXTURE_SETUP(zoned)
{
	char path[128];

	self->ctl = self->fd = -1;
	self->a = aligned_alloc(4096, 16 * MIB);
	self->img = aligned_alloc(4096, 16 * MIB);
	ASSERT_NE(NULL, self->a);
	ASSERT_NE(NULL, self->img);
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	snprintf(path, sizeof(path), NULLB_DIR ZONED);
	ASSERT_EQ(0, mkdir(path, 0755));
	ASSERT_EQ(0, nullb_set(ZONED, "size", "16"));
	ASSERT_EQ(0, nullb_set(ZONED, "memory_backed", "1"));
	ASSERT_EQ(0, nullb_set(ZONED, "zoned", "1"));
	ASSERT_EQ(0, nullb_set(ZONED, "zone_size", "4"));
	ASSERT_EQ(0, nullb_set(ZONED, "power", "1"));
	ASSERT_EQ(0, nullb_create(STORE, 16, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->fd = open("/dev/" ZONED, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->fd);
}

FIXTURE_TEARDOWN(zoned)
{
	if (self->fd >= 0) {
		blksnap_detach(self->fd);
		close(self->fd);
	}
	snapshot_destroy_all(self->ctl);
	if (self->ctl >= 0)
		close(self->ctl);
	nullb_delete(ZONED);
	nullb_delete(STORE);
	free(self->a);
	free(self->img);
}

/*
 * Item 6: a zone reset on a zoned original after the take empties a zone
 * that held data at the take.  The image keeps the data; the next map flags
 * the zone.
 */
TEST_F(zoned, item6_zone_reset_counts_as_write)
{
	struct blk_zone_range zone0 = { .sector = 0, .nr_sectors = 4 * MIB >> 9 };
	struct blksnap_uuid s1, s2;
	char image[64];

	ASSERT_EQ(0, image_path_of(self->fd, image, sizeof(image)));
	/* 1 MiB written at the start of zone 0, the rest of it unwritten. */
	memset(self->a, 0, 16 * MIB);
	fill_random(self->a, 1 * MIB, 63);
	ASSERT_EQ(0, pwrite_all(self->fd, self->a, 1 * MIB, 0));
	ASSERT_EQ(0, blksnap_attach(self->fd));
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->fd, &s1, "/dev/" STORE, (16 * MIB) >> 9));

	ASSERT_EQ(0, ioctl(self->fd, BLKRESETZONE, &zone0));
	ASSERT_EQ(0, read_whole(image, self->img, 16 * MIB));
	EXPECT_EQ(0, memcmp(self->img, self->a, 1 * MIB))
		TH_LOG("the zone reset reached the image");

	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s1));
	ASSERT_EQ(0, snapshot_simple(self->ctl, self->fd, &s2, "/dev/" STORE, (16 * MIB) >> 9));
	EXPECT_EQ(0, map_misses(_metadata, self->fd, 0, 4 * MIB));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &s2));
}

TEST_HARNESS_MAIN
