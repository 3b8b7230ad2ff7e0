// SPDX-License-Identifier: GPL-2.0
/*
 * Taking snapshots: the image of each device shows, byte for byte, the data
 * of the moment the snapshot was taken while the originals change, several
 * devices are coherent, the change map records exactly what changed, and
 * failures (no storage left, destroy under a reader) end in errors, never in
 * lost original data.
 *
 * Works on loop devices over files in /tmp, so it needs nothing from the
 * environment but a loadable blksnap module.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#define MIB (1ULL << 20)

struct loopdev {
	int nr;
	int fd;		/* O_DIRECT */
	char path[32];
	char img[40];
	unsigned long long size;
};

static int loop_create(struct loopdev *l, unsigned long long size)
{
	struct loop_config cfg = { 0 };
	int ctl, ffd, fd;

	strcpy(l->img, "/tmp/blksnap-snap-XXXXXX");
	ffd = mkstemp(l->img);
	if (ffd < 0 || ftruncate(ffd, size))
		return -1;
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl < 0)
		return -1;
	l->nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	close(ctl);
	if (l->nr < 0)
		return -1;
	snprintf(l->path, sizeof(l->path), "/dev/loop%d", l->nr);
	fd = open(l->path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -1;
	cfg.fd = ffd;
	cfg.info.lo_flags = LO_FLAGS_DIRECT_IO;
	if (ioctl(fd, LOOP_CONFIGURE, &cfg))
		return -1;
	close(ffd);
	l->fd = fd;
	l->size = size;
	return 0;
}

static void loop_destroy(struct loopdev *l)
{
	int ctl;

	if (l->fd < 0)
		return;
	ioctl(l->fd, LOOP_CLR_FD, 0);
	close(l->fd);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	if (ctl >= 0) {
		ioctl(ctl, LOOP_CTL_REMOVE, l->nr);
		close(ctl);
	}
	unlink(l->img);
	l->fd = -1;
}

static void fill_random(unsigned char *buf, size_t len, unsigned int seed)
{
	size_t i;

	srandom(seed);
	for (i = 0; i < len; i += 4) {
		uint32_t r = random();

		memcpy(buf + i, &r, len - i < 4 ? len - i : 4);
	}
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off) == (ssize_t)len && fsync(fd) == 0 ? 0 : -1;
}

/* Reads a whole device through a fresh descriptor into buf; 0 or errno. */
static int read_device(const char *path, unsigned char *buf, size_t len)
{
	size_t done = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int err = 0;

	if (fd < 0)
		return errno;
	while (done < len) {
		ssize_t n = pread(fd, buf + done, len - done, done);

		if (n <= 0) {
			err = n < 0 ? errno : EIO;
			break;
		}
		done += n;
	}
	close(fd);
	return err;
}

static void image_path(struct loopdev *l, char *buf, size_t len)
{
	struct stat st;

	fstat(l->fd, &st);
	snprintf(buf, len, "/dev/blksnap-image_%u:%u", major(st.st_rdev), minor(st.st_rdev));
}

static int append_all(int ctl, const struct blksnap_uuid *id, struct loopdev *s,
		      unsigned long long first, unsigned long long sectors)
{
	struct blksnap_sectors r = { .offset = first, .count = sectors };
	struct blksnap_snapshot_append_storage a = {
		.id = *id,
		.bdev_path = (uintptr_t)s->path,
		.bdev_path_size = strlen(s->path) + 1,
		.count = 1,
		.ranges = (uintptr_t)&r,
	};

	return sys_errno(ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a));
}

static int take(int ctl, const struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, id));
}

FIXTURE(snap) {
	int ctl;
	struct loopdev orig[3];
	struct loopdev store;
	unsigned char *before[3];	/* data at the moment of the snapshot */
	unsigned char *now;		/* expected data of orig[0] afterwards */
	unsigned char *scratch;
	struct blksnap_uuid id;
};

#define ORIG_SIZE (24 * MIB)

FIXTURE_SETUP(snap)
{
	int i;

	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	for (i = 0; i < 3; i++) {
		self->orig[i].fd = -1;
		ASSERT_EQ(0, loop_create(&self->orig[i], ORIG_SIZE));
		self->before[i] = aligned_alloc(4096, ORIG_SIZE);
		ASSERT_NE(NULL, self->before[i]);
		fill_random(self->before[i], ORIG_SIZE, 1000 + i);
		ASSERT_EQ(0, blksnap_attach(self->orig[i].fd));
		ASSERT_EQ(0, pwrite_all(self->orig[i].fd, self->before[i], ORIG_SIZE, 0));
	}
	self->store.fd = -1;
	ASSERT_EQ(0, loop_create(&self->store, 32 * MIB));
	self->now = aligned_alloc(4096, ORIG_SIZE);
	self->scratch = aligned_alloc(4096, ORIG_SIZE);
	ASSERT_NE(NULL, self->now);
	ASSERT_NE(NULL, self->scratch);
	memcpy(self->now, self->before[0], ORIG_SIZE);
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
}

FIXTURE_TEARDOWN(snap)
{
	int i;

	snapshot_destroy(self->ctl, &self->id);
	for (i = 0; i < 3; i++) {
		if (self->orig[i].fd >= 0)
			blksnap_detach(self->orig[i].fd);
		loop_destroy(&self->orig[i]);
		free(self->before[i]);
	}
	loop_destroy(&self->store);
	free(self->now);
	free(self->scratch);
	close(self->ctl);
}

/* Overwrites pseudo-random extents of orig[0], keeping self->now in step. */
static void scribble(struct __test_metadata *_metadata, int fd, unsigned char *now,
		     unsigned int seed, int count)
{
	unsigned char *buf = aligned_alloc(4096, MIB);
	int i;

	ASSERT_NE(NULL, buf);
	srandom(seed);
	for (i = 0; i < count; i++) {
		size_t len = ((random() % 64) + 1) * 4096;
		off_t off = (random() % ((ORIG_SIZE - len) / 4096)) * 4096;

		fill_random(buf, len, seed * 100 + i);
		ASSERT_EQ(0, pwrite_all(fd, buf, len, off));
		memcpy(now + off, buf, len);
	}
	free(buf);
}

TEST_F(snap, image_keeps_the_moment)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	unsigned long long range[2];
	char image[64];

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	EXPECT_EQ(EALREADY, take(self->ctl, &self->id));

	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
				 &len, NULL));
	EXPECT_EQ(0, info.error_code);
	image_path(&self->orig[0], image, sizeof(image));
	EXPECT_EQ(0, strcmp((char *)info.image, image + 5));

	ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->before[0], ORIG_SIZE));

	/* Writes, a discard and zeroing on the original. */
	scribble(_metadata, self->orig[0].fd, self->now, 7, 40);
	range[0] = 4 * MIB;
	range[1] = MIB;
	ASSERT_EQ(0, ioctl(self->orig[0].fd, BLKZEROOUT, range));
	memset(self->now + range[0], 0, range[1]);
	range[0] = 10 * MIB;
	range[1] = 2 * MIB;
	ASSERT_EQ(0, ioctl(self->orig[0].fd, BLKDISCARD, range));
	/* A discarded loop range reads back as zeroes. */
	memset(self->now + range[0], 0, range[1]);

	ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->before[0], ORIG_SIZE));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));

	len = sizeof(info);
	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
				 &len, NULL));
	EXPECT_EQ(0, info.error_code);

	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_NE(0, access(image, F_OK));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
}

TEST_F(snap, three_devices_coherent)
{
	char image[64];
	int i;

	for (i = 0; i < 3; i++)
		ASSERT_EQ(0, snapshot_add(self->orig[i].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	for (i = 0; i < 3; i++) {
		fill_random(self->scratch, ORIG_SIZE / 4, 50 + i);
		ASSERT_EQ(0, pwrite_all(self->orig[i].fd, self->scratch, ORIG_SIZE / 4,
					ORIG_SIZE / 2));
	}
	for (i = 0; i < 3; i++) {
		image_path(&self->orig[i], image, sizeof(image));
		ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
		EXPECT_EQ(0, memcmp(self->scratch, self->before[i], ORIG_SIZE));
	}
}

TEST_F(snap, take_errors)
{
	struct blksnap_uuid unknown = { .b = { 0x77 } };

	EXPECT_EQ(ESRCH, take(self->ctl, &unknown));
	EXPECT_EQ(ENODEV, take(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	/* Without storage nothing is taken, and it can be given later. */
	EXPECT_EQ(ENOSPC, take(self->ctl, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 2048));
	EXPECT_EQ(0, take(self->ctl, &self->id));
	/* A taken snapshot takes no more devices. */
	EXPECT_EQ(EBUSY, snapshot_add(self->orig[1].fd, &self->id));
}

/* The change map of the second snapshot shows exactly the written blocks. */
TEST_F(snap, change_map_between_snapshots)
{
	struct blksnap_cbtinfo info;
	unsigned int len = sizeof(info);
	unsigned char map[1024];
	struct blksnap_cbtmap m = { .offset = 0, .length = sizeof(map),
				    .buffer = (uintptr_t)map };
	unsigned char *buf = aligned_alloc(4096, 65536);
	unsigned int i;
	int ret = -1;

	ASSERT_NE(NULL, buf);
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len,
				 NULL));
	EXPECT_EQ(1, info.changes_number);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));

	/* Blocks 3, 100 and 101 (a write across the boundary). */
	memset(buf, 0x5a, 65536);
	ASSERT_EQ(0, pwrite_all(self->orig[0].fd, buf, 4096, 3 * 65536 + 8192));
	ASSERT_EQ(0, pwrite_all(self->orig[0].fd, buf, 8192, 101 * 65536 - 4096));

	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	len = sizeof(info);
	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len,
				 NULL));
	EXPECT_EQ(2, info.changes_number);
	ASSERT_GE(sizeof(map), info.block_count);
	len = sizeof(m);
	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret));
	ASSERT_EQ((int)info.block_count, ret);
	for (i = 0; i < info.block_count; i++) {
		unsigned char want = (i == 3 || i == 100 || i == 101) ? 2 : 1;

		EXPECT_EQ(want, map[i]) TH_LOG("block %u", i);
	}
	free(buf);
}

/* Running out of storage breaks the snapshot, never the original. */
TEST_F(snap, overflow_keeps_original)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	char image[64];

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	/* Room for two 256 KiB chunks only. */
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 1024));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	scribble(_metadata, self->orig[0].fd, self->now, 11, 30);

	ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
				 &len, NULL));
	EXPECT_EQ(-ENOSPC, info.error_code);
	image_path(&self->orig[0], image, sizeof(image));
	EXPECT_EQ(EIO, read_device(image, self->scratch, ORIG_SIZE));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
}

/* Destroying a snapshot while its image is being read: errors, no crash. */
TEST_F(snap, destroy_under_reader)
{
	char image[64];
	int status, i;
	pid_t pid;

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	image_path(&self->orig[0], image, sizeof(image));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		int fd = open(image, O_RDONLY | O_DIRECT);
		unsigned char *b = aligned_alloc(4096, MIB);

		if (fd < 0 || !b)
			_exit(2);
		/* Read until the image goes away; the data must stay right. */
		for (i = 0; i < 1000; i++) {
			off_t off = (i % (ORIG_SIZE / MIB)) * MIB;

			if (pread(fd, b, MIB, off) != (ssize_t)MIB)
				_exit(0);
			if (memcmp(b, self->before[0] + off, MIB))
				_exit(3);
		}
		_exit(1);
	}
	scribble(_metadata, self->orig[0].fd, self->now, 13, 10);
	usleep(200000);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	/* 0: the reader saw its image end; 1: it finished before. */
	EXPECT_GE(1, WEXITSTATUS(status));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
}

/* The storage can live on the snapshotted device itself. */
TEST_F(snap, storage_on_the_same_device)
{
	unsigned long long keep = ORIG_SIZE - 8 * MIB;
	char image[64];

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	/* The last 8 MiB, as a preallocated file there would be. */
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->orig[0], keep >> 9, (8 * MIB) >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	fill_random(self->scratch, 4 * MIB, 99);
	ASSERT_EQ(0, pwrite_all(self->orig[0].fd, self->scratch, 4 * MIB, 2 * MIB));
	memcpy(self->now + 2 * MIB, self->scratch, 4 * MIB);

	image_path(&self->orig[0], image, sizeof(image));
	ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->before[0], keep));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, keep));
}

/* A mounted ext4, snapshotted in use: the image mounts and checks clean. */
TEST_F(snap, ext4_image_mounts_and_checks_clean)
{
	char cmd[256], image[64];
	FILE *f;
	int i;

	if (run("command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null"))
		SKIP(return, "mkfs.ext4 or e2fsck missing");
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s", self->orig[0].path);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, run("mkdir -p /tmp/live /tmp/snap"));
	snprintf(cmd, sizeof(cmd), "mount %s /tmp/live", self->orig[0].path);
	ASSERT_EQ(0, run(cmd));
	for (i = 0; i < 20; i++) {
		snprintf(cmd, sizeof(cmd), "/tmp/live/file%d", i);
		f = fopen(cmd, "w");
		ASSERT_NE(NULL, f);
		fprintf(f, "old %d\n", i);
		fclose(f);
	}
	sync();

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	EXPECT_EQ(0, run("for i in $(seq 0 19); do echo new $i >/tmp/live/file$i; done"));
	EXPECT_EQ(0, run("rm /tmp/live/file7"));
	EXPECT_EQ(0, run("dd if=/dev/urandom of=/tmp/live/big bs=1M count=4 2>/dev/null"));
	sync();

	image_path(&self->orig[0], image, sizeof(image));
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", image);
	EXPECT_EQ(0, run(cmd));
	snprintf(cmd, sizeof(cmd), "mount -o ro -t ext4 %s /tmp/snap", image);
	ASSERT_EQ(0, run(cmd));
	EXPECT_EQ(0, run("grep -qx 'old 7' /tmp/snap/file7"));
	EXPECT_EQ(0, run("grep -qx 'old 19' /tmp/snap/file19"));
	EXPECT_NE(0, run("test -e /tmp/snap/big"));
	EXPECT_EQ(0, run("grep -qx 'new 19' /tmp/live/file19 && ! test -e /tmp/live/file7"));
	EXPECT_EQ(0, run("umount /tmp/snap"));
	EXPECT_EQ(0, run("umount /tmp/live"));
}

TEST_HARNESS_MAIN
