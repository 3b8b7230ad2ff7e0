// SPDX-License-Identifier: GPL-2.0
/*
 * The block device filter ioctls without any filter module: their ABI and
 * every error that can be provoked from user space alone.
 *
 * The devices come from the environment, so that the test never touches a
 * disk it was not given: BLKSNAP_TEST_DISK names a whole disk,
 * BLKSNAP_TEST_PART a partition, BLKSNAP_TEST_LOOP a loop device,
 * BLKSNAP_TEST_RAM a brd ramdisk and BLKSNAP_TEST_NULLB a null_blk device.
 * Each is opened read-write and its last MiB is overwritten.  A variant
 * whose variable is unset is skipped.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/blk-filter.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"

/* The numbers and layouts that existing user space was built against. */
TEST(abi_ioctl_numbers)
{
	EXPECT_EQ(0xc020128fUL, (unsigned long)BLKFILTER_ATTACH);
	EXPECT_EQ(0xc0201290UL, (unsigned long)BLKFILTER_DETACH);
	EXPECT_EQ(0xc0301291UL, (unsigned long)BLKFILTER_CTL);
}

TEST(abi_struct_layout)
{
	EXPECT_EQ(32, BLKFILTER_NAME_LENGTH);
	EXPECT_EQ(32, sizeof(struct blkfilter_name));
	EXPECT_EQ(48, sizeof(struct blkfilter_ctl));
	EXPECT_EQ(0, offsetof(struct blkfilter_ctl, name));
	EXPECT_EQ(32, offsetof(struct blkfilter_ctl, cmd));
	EXPECT_EQ(36, offsetof(struct blkfilter_ctl, optlen));
	EXPECT_EQ(40, offsetof(struct blkfilter_ctl, opt));
}

/* The errno of an ioctl, or 0 if it succeeded. */
static int ioctl_errno(int fd, unsigned long cmd, void *arg)
{
	return ioctl(fd, cmd, arg) == -1 ? errno : 0;
}

/* A page that is mapped and the address right after it, which is not. */
static char *page_before_hole(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 2 * page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	munmap(p + page, page);
	return p;
}

FIXTURE(bdev) {
	int fd;
	char *page;
	long page_size;
};

FIXTURE_VARIANT(bdev) {
	const char *env;
	bool keeps_data;	/* null_blk without memory backing does not */
};

FIXTURE_VARIANT_ADD(bdev, disk) {
	.env = "BLKSNAP_TEST_DISK",
	.keeps_data = true,
};

FIXTURE_VARIANT_ADD(bdev, partition) {
	.env = "BLKSNAP_TEST_PART",
	.keeps_data = true,
};

FIXTURE_VARIANT_ADD(bdev, loop) {
	.env = "BLKSNAP_TEST_LOOP",
	.keeps_data = true,
};

FIXTURE_VARIANT_ADD(bdev, ramdisk) {
	.env = "BLKSNAP_TEST_RAM",
	.keeps_data = true,
};

FIXTURE_VARIANT_ADD(bdev, null_blk) {
	.env = "BLKSNAP_TEST_NULLB",
	.keeps_data = false,
};

FIXTURE_SETUP(bdev)
{
	const char *path = getenv(variant->env);

	self->fd = -1;
	self->page = NULL;
	if (!path)
		SKIP(return, "%s does not name a block device", variant->env);
	self->fd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", path, strerror(errno));
	self->page_size = sysconf(_SC_PAGESIZE);
	self->page = page_before_hole();
	ASSERT_NE(NULL, self->page);
}

FIXTURE_TEARDOWN(bdev)
{
	if (self->page)
		munmap(self->page, self->page_size);
	if (self->fd >= 0)
		close(self->fd);
}

static void set_name(__u8 *dst, const char *name)
{
	memset(dst, 0, BLKFILTER_NAME_LENGTH);
	strncpy((char *)dst, name, BLKFILTER_NAME_LENGTH);
}

TEST_F(bdev, attach_unknown_filter)
{
	struct blkfilter_name name;

	set_name(name.name, "no-such-filter");
	EXPECT_EQ(ENOENT, ioctl_errno(self->fd, BLKFILTER_ATTACH, &name));
	set_name(name.name, "");
	EXPECT_EQ(ENOENT, ioctl_errno(self->fd, BLKFILTER_ATTACH, &name));
}

TEST_F(bdev, attach_unterminated_name)
{
	struct blkfilter_name name;

	memset(name.name, 'A', sizeof(name.name));
	EXPECT_EQ(EINVAL, ioctl_errno(self->fd, BLKFILTER_ATTACH, &name));
}

TEST_F(bdev, attach_bad_pointer)
{
	/* The name would end in the unmapped page. */
	char *tail = self->page + self->page_size - 8;

	memset(tail, 0, 8);
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_ATTACH, NULL));
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_ATTACH, tail));
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_ATTACH,
				      self->page + self->page_size));
}

TEST_F(bdev, detach_nothing_attached)
{
	struct blkfilter_name name;

	set_name(name.name, "blksnap");
	EXPECT_EQ(ENOENT, ioctl_errno(self->fd, BLKFILTER_DETACH, &name));
}

TEST_F(bdev, detach_unterminated_name)
{
	struct blkfilter_name name;

	memset(name.name, 'A', sizeof(name.name));
	EXPECT_EQ(EINVAL, ioctl_errno(self->fd, BLKFILTER_DETACH, &name));
}

TEST_F(bdev, detach_bad_pointer)
{
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_DETACH, NULL));
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_DETACH,
				      self->page + self->page_size - 8));
}

TEST_F(bdev, ctl_nothing_attached)
{
	struct blkfilter_ctl ctl = { .cmd = 0, .optlen = 0, .opt = 0 };

	set_name(ctl.name, "blksnap");
	EXPECT_EQ(ENOENT, ioctl_errno(self->fd, BLKFILTER_CTL, &ctl));
	/* A bad option pointer does not matter when there is no filter. */
	ctl.opt = (uintptr_t)(self->page + self->page_size);
	ctl.optlen = 4096;
	EXPECT_EQ(ENOENT, ioctl_errno(self->fd, BLKFILTER_CTL, &ctl));
	EXPECT_EQ(4096, ctl.optlen);
}

TEST_F(bdev, ctl_unterminated_name)
{
	struct blkfilter_ctl ctl = { .cmd = 1 };

	memset(ctl.name, 'A', sizeof(ctl.name));
	EXPECT_EQ(EINVAL, ioctl_errno(self->fd, BLKFILTER_CTL, &ctl));
}

TEST_F(bdev, ctl_bad_pointer)
{
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_CTL, NULL));
	/* The structure would end in the unmapped page. */
	EXPECT_EQ(EFAULT, ioctl_errno(self->fd, BLKFILTER_CTL,
				      self->page + self->page_size - 40));
}

/* Without CAP_SYS_ADMIN every filter ioctl is refused before anything else. */
TEST_F(bdev, need_cap_sys_admin)
{
	struct blkfilter_name name;
	struct blkfilter_ctl ctl = { 0 };
	int status;
	pid_t pid;

	set_name(name.name, "no-such-filter");
	set_name(ctl.name, "no-such-filter");
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		/* Dropping root drops the effective capabilities. */
		if (setresuid(65534, 65534, 65534))
			_exit(10);
		if (ioctl_errno(self->fd, BLKFILTER_ATTACH, &name) != EPERM)
			_exit(1);
		if (ioctl_errno(self->fd, BLKFILTER_DETACH, &name) != EPERM)
			_exit(2);
		if (ioctl_errno(self->fd, BLKFILTER_CTL, &ctl) != EPERM)
			_exit(3);
		/* Even a bad pointer: the permission check comes first. */
		if (ioctl_errno(self->fd, BLKFILTER_ATTACH, NULL) != EPERM)
			_exit(4);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	ASSERT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* With no filter attached, I/O goes through the new hook untouched. */
TEST_F(bdev, io_without_filter)
{
	unsigned long long size;
	size_t len = 1 << 20;
	char *wbuf, *rbuf;
	off_t off;
	size_t i;
	int dfd;

	if (!variant->keeps_data)
		SKIP(return, "this device does not store data");
	ASSERT_EQ(0, ioctl(self->fd, BLKGETSIZE64, &size));
	ASSERT_LE(len, size);
	off = size - len;
	ASSERT_EQ(0, posix_memalign((void **)&wbuf, 4096, len));
	ASSERT_EQ(0, posix_memalign((void **)&rbuf, 4096, len));
	srandom(getpid());
	for (i = 0; i < len; i++)
		wbuf[i] = random();

	dfd = open(getenv(variant->env), O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	ASSERT_EQ((ssize_t)len, pwrite(dfd, wbuf, len, off));
	ASSERT_EQ(0, fsync(dfd));
	memset(rbuf, 0, len);
	ASSERT_EQ((ssize_t)len, pread(dfd, rbuf, len, off));
	EXPECT_EQ(0, memcmp(wbuf, rbuf, len));
	close(dfd);
	free(wbuf);
	free(rbuf);
}

TEST_HARNESS_MAIN
