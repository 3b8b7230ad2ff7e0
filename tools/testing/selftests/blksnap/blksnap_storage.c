// SPDX-License-Identifier: GPL-2.0
/*
 * Difference storage: IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE accepts valid
 * sector ranges of a block device given by path, refuses every malformed
 * argument with a clear errno, and lets go of the device when the snapshot
 * is destroyed.
 *
 * BLKSNAP_TEST_STORAGE names a block device (at least 1 MiB) to use; it is
 * not written.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

static int append(int ctl, const struct blksnap_uuid *id, const char *path,
		  struct blksnap_sectors *ranges, unsigned int count)
{
	struct blksnap_snapshot_append_storage a = {
		.id = *id,
		.bdev_path = (uintptr_t)path,
		.bdev_path_size = path ? strlen(path) + 1 : 0,
		.count = count,
		.ranges = (uintptr_t)ranges,
	};

	return sys_errno(ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a));
}

FIXTURE(storage) {
	int ctl;
	const char *path;
	unsigned long long sectors;
	struct blksnap_uuid id;
};

FIXTURE_SETUP(storage)
{
	int fd;

	self->ctl = -1;
	self->path = getenv("BLKSNAP_TEST_STORAGE");
	if (!self->path)
		SKIP(return, "BLKSNAP_TEST_STORAGE not set");
	ASSERT_EQ(0, run("modprobe blksnap"));
	fd = open(self->path, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, BLKGETSIZE64, &self->sectors));
	self->sectors >>= 9;
	close(fd);
	ASSERT_LE(2048, self->sectors);
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
}

FIXTURE_TEARDOWN(storage)
{
	if (self->ctl >= 0) {
		snapshot_destroy(self->ctl, &self->id);
		close(self->ctl);
	}
}

TEST_F(storage, valid_ranges)
{
	struct blksnap_sectors r[2] = {
		{ .offset = 0, .count = 1024 },
		{ .offset = self->sectors - 8, .count = 8 },
	};

	EXPECT_EQ(0, append(self->ctl, &self->id, self->path, r, 2));
	/* More later, next to the first ones. */
	r[0] = (struct blksnap_sectors){ .offset = 1024, .count = 8 };
	EXPECT_EQ(0, append(self->ctl, &self->id, self->path, r, 1));
}

TEST_F(storage, bad_ranges)
{
	unsigned long long n = self->sectors;
	struct blksnap_sectors r[2];

	r[0] = (struct blksnap_sectors){ .offset = 0, .count = 0 };
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, self->path, r, 1));
	r[0] = (struct blksnap_sectors){ .offset = n - 8, .count = 9 };
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, self->path, r, 1));
	r[0] = (struct blksnap_sectors){ .offset = ~0ULL - 3, .count = 8 };
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, self->path, r, 1));
	/* Overlapping each other, or what was given before. */
	r[0] = (struct blksnap_sectors){ .offset = 0, .count = 16 };
	r[1] = (struct blksnap_sectors){ .offset = 8, .count = 16 };
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, self->path, r, 2));
	EXPECT_EQ(0, append(self->ctl, &self->id, self->path, r, 1));
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, self->path, &r[1], 1));
	/* Unreadable ranges. */
	EXPECT_EQ(EFAULT, append(self->ctl, &self->id, self->path, NULL, 1));
}

TEST_F(storage, bad_paths)
{
	struct blksnap_sectors r = { .offset = 0, .count = 8 };
	struct blksnap_snapshot_append_storage a = {
		.id = self->id,
		.count = 1,
		.ranges = (uintptr_t)&r,
	};
	char unterminated[8];

	EXPECT_EQ(ENOENT, append(self->ctl, &self->id, "/dev/no-such-device", &r, 1));
	EXPECT_EQ(ENOTBLK, append(self->ctl, &self->id, "/dev/null", &r, 1));
	EXPECT_EQ(EINVAL, append(self->ctl, &self->id, NULL, &r, 1));

	memset(unterminated, 'x', sizeof(unterminated));
	a.bdev_path = (uintptr_t)unterminated;
	a.bdev_path_size = sizeof(unterminated);
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a)));
	a.bdev_path = 16;
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a)));
	a.bdev_path = (uintptr_t)self->path;
	a.bdev_path_size = 1 << 20;
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, NULL)));
}

TEST_F(storage, unknown_or_destroyed_snapshot)
{
	struct blksnap_sectors r = { .offset = 0, .count = 8 };
	struct blksnap_uuid unknown = { .b = { 0x42 } };

	EXPECT_EQ(ESRCH, append(self->ctl, &unknown, self->path, &r, 1));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(ESRCH, append(self->ctl, &self->id, self->path, &r, 1));
}

TEST_F(storage, need_cap_sys_admin)
{
	struct blksnap_sectors r = { .offset = 0, .count = 8 };
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setresuid(65534, 65534, 65534))
			_exit(10);
		_exit(append(self->ctl, &self->id, self->path, &r, 1) == EPERM ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* Destroying the snapshot closes its storage devices. */
TEST_F(storage, destroy_releases_device)
{
	char img[] = "/tmp/blksnap-storage-XXXXXX";
	struct blksnap_sectors r = { .offset = 0, .count = 1024 };
	struct loop_config cfg = { 0 };
	int lctl, nr, lfd, ffd;
	char path[32];

	ffd = mkstemp(img);
	ASSERT_LE(0, ffd);
	ASSERT_EQ(0, ftruncate(ffd, 8 << 20));
	lctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, lctl);
	nr = ioctl(lctl, LOOP_CTL_GET_FREE);
	ASSERT_LE(0, nr);
	snprintf(path, sizeof(path), "/dev/loop%d", nr);
	lfd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, lfd);
	cfg.fd = ffd;
	ASSERT_EQ(0, ioctl(lfd, LOOP_CONFIGURE, &cfg));
	close(lfd);

	ASSERT_EQ(0, append(self->ctl, &self->id, path, &r, 1));
	/* Still open by the snapshot: the loop device cannot go. */
	EXPECT_EQ(EBUSY, sys_errno(ioctl(lctl, LOOP_CTL_REMOVE, nr)));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));

	lfd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, lfd);
	EXPECT_EQ(0, ioctl(lfd, LOOP_CLR_FD, 0));
	close(lfd);
	EXPECT_EQ(0, sys_errno(ioctl(lctl, LOOP_CTL_REMOVE, nr)));
	close(lctl);
	close(ffd);
	unlink(img);
}

TEST_HARNESS_MAIN
