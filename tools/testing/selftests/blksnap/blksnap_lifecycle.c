// SPDX-License-Identifier: GPL-2.0
/*
 * The life of a snapshot on each kind of device the test guest offers: a
 * virtio disk, a partition (whose bios the filter sees with whole-disk
 * sectors), a brd ramdisk and a loop device.  Data is written, the
 * snapshot taken, the device overwritten, zeroed and discarded, and then
 * the image must hash to what the device held at the take while the
 * original holds exactly the new data.  A second test keeps the difference
 * storage in a preallocated file on the very file system being snapshotted,
 * found with FIEMAP, as backup agents do.
 *
 * Devices come from the environment (see harness/guest/init):
 * BLKSNAP_TEST_DISK, BLKSNAP_TEST_PART, BLKSNAP_TEST_RAM, BLKSNAP_TEST_LOOP,
 * and BLKSNAP_TEST_PART2 as difference storage.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fiemap.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

/* Under emulation with a debug kernel, data checks take their time. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
/* The part of each device the test writes to; all of it is verified. */
#define REGION (16 * MIB)

static uint64_t hash_mib(const unsigned char *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	size_t i;

	for (i = 0; i < len; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL;
	return h;
}

/* Hashes each MiB of the device at path into hashes[]; 0 or errno. */
static int hash_device(const char *path, unsigned long long size, uint64_t *hashes)
{
	unsigned char *buf = aligned_alloc(4096, MIB);
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	unsigned long long off;
	int err = 0;

	if (fd < 0 || !buf) {
		err = fd < 0 ? errno : ENOMEM;
		goto out;
	}
	for (off = 0; off < size; off += MIB) {
		size_t len = size - off < MIB ? size - off : MIB;
		ssize_t n = pread(fd, buf, len, off);

		if (n != (ssize_t)len) {
			err = n < 0 ? errno : EIO;
			break;
		}
		hashes[off / MIB] = hash_mib(buf, len);
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

static unsigned long long device_size(int fd)
{
	unsigned long long size = 0;

	return ioctl(fd, BLKGETSIZE64, &size) ? 0 : size;
}

static void image_of(int fd, char *buf, size_t len)
{
	struct stat st;

	fstat(fd, &st);
	snprintf(buf, len, "/dev/blksnap-image_%u:%u", major(st.st_rdev), minor(st.st_rdev));
}

FIXTURE(life) {
	int ctl, fd;
	const char *dev, *store;
	unsigned long long size, nr_mib;
	uint64_t *before;	/* per-MiB hashes at the take */
	unsigned char *now;	/* what the region must hold afterwards */
	unsigned char *buf;
	struct blksnap_uuid id;
	bool attached, created;
};

FIXTURE_VARIANT(life) {
	const char *dev_env;
};

FIXTURE_VARIANT_ADD(life, virtio_disk) { .dev_env = "BLKSNAP_TEST_DISK" };
FIXTURE_VARIANT_ADD(life, partition) { .dev_env = "BLKSNAP_TEST_PART" };
FIXTURE_VARIANT_ADD(life, ramdisk) { .dev_env = "BLKSNAP_TEST_RAM" };
FIXTURE_VARIANT_ADD(life, loop) { .dev_env = "BLKSNAP_TEST_LOOP" };

FIXTURE_SETUP(life)
{
	struct blksnap_sectors all;
	unsigned long long region;
	int sfd;

	self->fd = -1;
	self->ctl = -1;
	self->attached = false;
	self->created = false;
	self->before = NULL;
	self->now = NULL;
	self->buf = NULL;
	self->dev = getenv(variant->dev_env);
	self->store = getenv("BLKSNAP_TEST_STORAGE_DISK");
	if (!self->dev || !self->store)
		SKIP(return, "%s or BLKSNAP_TEST_STORAGE_DISK not set", variant->dev_env);
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->fd = open(self->dev, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->fd);
	self->size = device_size(self->fd);
	ASSERT_LE(REGION, self->size);
	self->nr_mib = (self->size + MIB - 1) / MIB;
	self->before = calloc(self->nr_mib, sizeof(uint64_t));
	self->now = aligned_alloc(4096, REGION);
	self->buf = aligned_alloc(4096, REGION);
	ASSERT_NE(NULL, self->before);
	ASSERT_NE(NULL, self->now);
	ASSERT_NE(NULL, self->buf);

	region = REGION;
	fill_random(self->now, region, 4711);
	ASSERT_EQ(0, pwrite_all(self->fd, self->now, region, 0));
	ASSERT_EQ(0, hash_device(self->dev, self->size, self->before));

	ASSERT_EQ(0, blksnap_attach(self->fd));
	self->attached = true;
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	self->created = true;
	ASSERT_EQ(0, snapshot_add(self->fd, &self->id));
	sfd = open(self->store, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, sfd);
	all.offset = 0;
	all.count = device_size(sfd) >> 9;
	close(sfd);
	ASSERT_EQ(0, storage_append(self->ctl, &self->id, self->store, &all, 1));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
}

FIXTURE_TEARDOWN(life)
{
	if (self->created)
		snapshot_destroy(self->ctl, &self->id);
	if (self->attached)
		blksnap_detach(self->fd);
	if (self->fd >= 0)
		close(self->fd);
	if (self->ctl >= 0)
		close(self->ctl);
	free(self->before);
	free(self->now);
	free(self->buf);
}

TEST_F(life, overwrite_zero_discard)
{
	uint64_t *hashes = calloc(self->nr_mib, sizeof(uint64_t));
	unsigned long long range[2];
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	off_t discarded = -1;
	char image[64];
	unsigned long long m;
	int i;

	ASSERT_NE(NULL, hashes);
	srandom(17);
	for (i = 0; i < 40; i++) {
		size_t n = ((random() % 32) + 1) * 4096;
		off_t off = (random() % ((REGION - n) / 4096)) * 4096;

		fill_random(self->buf, n, 900 + i);
		ASSERT_EQ(0, pwrite_all(self->fd, self->buf, n, off));
		memcpy(self->now + off, self->buf, n);
	}
	range[0] = REGION / 2;
	range[1] = MIB;
	ASSERT_EQ(0, ioctl(self->fd, BLKZEROOUT, range));
	memset(self->now + range[0], 0, range[1]);
	/* Not every device discards, nor says what a discarded range reads. */
	range[0] = REGION / 4;
	if (ioctl(self->fd, BLKDISCARD, range) == 0)
		discarded = range[0];
	else
		ASSERT_EQ(EOPNOTSUPP, errno);

	image_of(self->fd, image, sizeof(image));
	ASSERT_EQ(0, hash_device(image, self->size, hashes));
	for (m = 0; m < self->nr_mib; m++) {
		EXPECT_EQ(self->before[m], hashes[m])
			TH_LOG("image MiB %llu", m);
	}

	ASSERT_EQ(REGION, pread(self->fd, self->buf, REGION, 0));
	for (m = 0; m < REGION / MIB; m++) {
		if ((off_t)(m * MIB) == discarded)
			continue;
		EXPECT_EQ(0, memcmp(self->buf + m * MIB, self->now + m * MIB, MIB))
			TH_LOG("original MiB %llu", m);
	}
	ASSERT_EQ(0, hash_device(self->dev, self->size, hashes));
	for (m = REGION / MIB; m < self->nr_mib; m++) {
		EXPECT_EQ(self->before[m], hashes[m])
			TH_LOG("original MiB %llu", m);
	}

	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	EXPECT_EQ(0, info.error_code);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	self->created = false;
	EXPECT_NE(0, access(image, F_OK));
	free(hashes);
}

/* ----- storage in a file on the snapshotted file system ----- */

#define MAX_RANGES 64

/* The extents of the file at path as sector ranges; their number or -1. */
static int file_ranges(const char *path, struct blksnap_sectors *ranges)
{
	size_t size = sizeof(struct fiemap) + MAX_RANGES * sizeof(struct fiemap_extent);
	struct fiemap *fm = calloc(1, size);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int n = -1;
	unsigned int i;

	if (fd < 0 || !fm)
		goto out;
	fm->fm_length = FIEMAP_MAX_OFFSET;
	fm->fm_flags = FIEMAP_FLAG_SYNC;
	fm->fm_extent_count = MAX_RANGES;
	if (ioctl(fd, FS_IOC_FIEMAP, fm))
		goto out;
	for (i = 0; i < fm->fm_mapped_extents; i++) {
		ranges[i].offset = fm->fm_extents[i].fe_physical >> 9;
		ranges[i].count = fm->fm_extents[i].fe_length >> 9;
	}
	n = fm->fm_mapped_extents;
out:
	if (fd >= 0)
		close(fd);
	free(fm);
	return n;
}

static int write_file(const char *path, unsigned int seed, size_t len)
{
	unsigned char *buf = malloc(len);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0644);
	int err = fd < 0 || !buf;

	if (!err) {
		fill_random(buf, len, seed);
		err = pwrite_all(fd, buf, len, 0);
	}
	if (fd >= 0)
		close(fd);
	free(buf);
	return err;
}

/* 0 if the file at path holds the data of seed, else 1. */
static int check_file(const char *path, unsigned int seed, size_t len)
{
	unsigned char *want = malloc(len), *got = malloc(len + 1);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int bad = 1;

	if (fd >= 0 && want && got && read(fd, got, len + 1) == (ssize_t)len) {
		fill_random(want, len, seed);
		bad = memcmp(want, got, len) != 0;
	}
	if (fd >= 0)
		close(fd);
	free(want);
	free(got);
	return bad;
}

#define FILE_SIZE (48 * 1024)
#define NR_FILES 32

TEST(storage_in_a_file_on_the_same_file_system)
{
	struct blksnap_sectors ranges[MAX_RANGES];
	const char *dev = getenv("BLKSNAP_TEST_DISK");
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	struct blksnap_uuid id;
	char cmd[256], path[64], image[64];
	int ctl, fd, n, i, err;

	if (!dev)
		SKIP(return, "BLKSNAP_TEST_DISK not set");
	if (run("command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null"))
		SKIP(return, "mkfs.ext4 or e2fsck missing");
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s", dev);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, run("mkdir -p /tmp/fs /tmp/fsimg"));
	snprintf(cmd, sizeof(cmd), "mount -t ext4 %s /tmp/fs", dev);
	ASSERT_EQ(0, run(cmd));
	for (i = 0; i < NR_FILES; i++) {
		snprintf(path, sizeof(path), "/tmp/fs/f%d", i);
		ASSERT_EQ(0, write_file(path, i, FILE_SIZE));
	}
	/* The difference storage: 64 MiB allocated, never written. */
	fd = open("/tmp/fs/snapstore", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fallocate(fd, 0, 0, 64 * MIB));
	ASSERT_EQ(0, fsync(fd));
	close(fd);
	n = file_ranges("/tmp/fs/snapstore", ranges);
	ASSERT_LT(0, n);
	sync();

	fd = open(dev, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, blksnap_attach(fd));
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	ASSERT_EQ(0, snapshot_add(fd, &id));
	ASSERT_EQ(0, storage_append(ctl, &id, dev, ranges, n));
	ASSERT_EQ(0, snapshot_take(ctl, &id));

	/* Change everything on the live file system. */
	for (i = 0; i < NR_FILES; i++) {
		snprintf(path, sizeof(path), "/tmp/fs/f%d", i);
		if (i % 4 == 3)
			err = unlink(path);
		else
			err = write_file(path, 1000 + i, FILE_SIZE);
		EXPECT_EQ(0, err);
	}
	EXPECT_EQ(0, write_file("/tmp/fs/new", 77, 8 * MIB));
	sync();

	ASSERT_EQ(0, blksnap_ctl(fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL));
	EXPECT_EQ(0, info.error_code);
	image_of(fd, image, sizeof(image));
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", image);
	EXPECT_EQ(0, run(cmd));
	snprintf(cmd, sizeof(cmd), "mount -t ext4 -o ro %s /tmp/fsimg", image);
	ASSERT_EQ(0, run(cmd));
	for (i = 0; i < NR_FILES; i++) {
		snprintf(path, sizeof(path), "/tmp/fsimg/f%d", i);
		EXPECT_EQ(0, check_file(path, i, FILE_SIZE)) TH_LOG("image file %d", i);
		snprintf(path, sizeof(path), "/tmp/fs/f%d", i);
		if (i % 4 == 3) {
			EXPECT_NE(0, access(path, F_OK));
		} else {
			EXPECT_EQ(0, check_file(path, 1000 + i, FILE_SIZE))
				TH_LOG("live file %d", i);
		}
	}
	EXPECT_NE(0, access("/tmp/fsimg/new", F_OK));
	EXPECT_EQ(0, check_file("/tmp/fs/new", 77, 8 * MIB));
	EXPECT_EQ(0, run("umount /tmp/fsimg"));

	EXPECT_EQ(0, snapshot_destroy(ctl, &id));
	EXPECT_EQ(0, run("umount /tmp/fs"));
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", dev);
	EXPECT_EQ(0, run(cmd));
	EXPECT_EQ(0, blksnap_detach(fd));
	close(fd);
	close(ctl);
}

TEST_HARNESS_MAIN
