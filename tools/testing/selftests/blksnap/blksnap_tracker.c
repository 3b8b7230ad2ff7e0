// SPDX-License-Identifier: GPL-2.0
/*
 * blksnap without taking snapshots: the ABI of linux/blksnap.h, the control
 * device, change-tracker information, membership of devices in snapshots,
 * and the lifetime of the filter (module references, device removal).
 *
 * Devices come from the environment: BLKSNAP_TEST_DISK (a whole disk),
 * BLKSNAP_TEST_PART_DISK with its partitions BLKSNAP_TEST_PART (kept) and
 * BLKSNAP_TEST_PART2 (deleted and recreated).  The module must be loadable
 * with modprobe.
 */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdint.h>
#include <sys/mman.h>
#include <linux/blkpg.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

static const char *need_env(const char *name)
{
	return getenv(name);
}

/* ----- ABI: the numbers and layouts of the v3 series on 64-bit ----- */

TEST(abi_control_ioctl_numbers)
{
	EXPECT_EQ(0x40085600u, IOCTL_BLKSNAP_VERSION);
	EXPECT_EQ(0x40105601u, IOCTL_BLKSNAP_SNAPSHOT_CREATE);
	EXPECT_EQ(0x80105602u, IOCTL_BLKSNAP_SNAPSHOT_DESTROY);
	EXPECT_EQ(0x40285603u, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE);
	EXPECT_EQ(0x80105604u, IOCTL_BLKSNAP_SNAPSHOT_TAKE);
	EXPECT_EQ(0x40105605u, IOCTL_BLKSNAP_SNAPSHOT_COLLECT);
	EXPECT_EQ(0x50005606u, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT);
}

TEST(abi_struct_layouts)
{
	EXPECT_EQ(16, sizeof(struct blksnap_uuid));
	EXPECT_EQ(40, sizeof(struct blksnap_cbtinfo));
	EXPECT_EQ(0, offsetof(struct blksnap_cbtinfo, device_capacity));
	EXPECT_EQ(8, offsetof(struct blksnap_cbtinfo, block_size));
	EXPECT_EQ(12, offsetof(struct blksnap_cbtinfo, block_count));
	EXPECT_EQ(16, offsetof(struct blksnap_cbtinfo, generation_id));
	EXPECT_EQ(32, offsetof(struct blksnap_cbtinfo, changes_number));
	EXPECT_EQ(16, sizeof(struct blksnap_cbtmap));
	EXPECT_EQ(8, offsetof(struct blksnap_cbtmap, buffer));
	EXPECT_EQ(16, sizeof(struct blksnap_sectors));
	EXPECT_EQ(16, sizeof(struct blksnap_cbtdirty));
	EXPECT_EQ(8, offsetof(struct blksnap_cbtdirty, dirty_sectors));
	EXPECT_EQ(16, sizeof(struct blksnap_snapshotadd));
	EXPECT_EQ(36, sizeof(struct blksnap_snapshotinfo));
	EXPECT_EQ(4, offsetof(struct blksnap_snapshotinfo, image));
	EXPECT_EQ(8, sizeof(struct blksnap_version));
	EXPECT_EQ(40, sizeof(struct blksnap_snapshot_append_storage));
	EXPECT_EQ(16, offsetof(struct blksnap_snapshot_append_storage, bdev_path));
	EXPECT_EQ(24, offsetof(struct blksnap_snapshot_append_storage, bdev_path_size));
	EXPECT_EQ(28, offsetof(struct blksnap_snapshot_append_storage, count));
	EXPECT_EQ(32, offsetof(struct blksnap_snapshot_append_storage, ranges));
	EXPECT_EQ(16, sizeof(struct blksnap_snapshot_collect));
	EXPECT_EQ(8, offsetof(struct blksnap_snapshot_collect, ids));
	EXPECT_EQ(4096, sizeof(struct blksnap_snapshot_event));
	EXPECT_EQ(16, offsetof(struct blksnap_snapshot_event, timeout_ms));
	EXPECT_EQ(20, offsetof(struct blksnap_snapshot_event, code));
	EXPECT_EQ(24, offsetof(struct blksnap_snapshot_event, time_label));
	EXPECT_EQ(32, offsetof(struct blksnap_snapshot_event, data));
	EXPECT_EQ(8, sizeof(struct blksnap_event_low_free_space));
	EXPECT_EQ(12, sizeof(struct blksnap_event_corrupted));
	EXPECT_EQ(0, blkfilter_ctl_blksnap_cbtinfo);
	EXPECT_EQ(4, blkfilter_ctl_blksnap_snapshotinfo);
	EXPECT_EQ(1, blksnap_event_code_corrupted);
}

/* ----- the control device ----- */

FIXTURE(control) {
	int fd;
};

FIXTURE_SETUP(control)
{
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->fd = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd) TH_LOG("open %s: %s", BLKSNAP_CONTROL, strerror(errno));
}

FIXTURE_TEARDOWN(control)
{
	close(self->fd);
}

TEST_F(control, version)
{
	struct blksnap_version v;

	memset(&v, 0xff, sizeof(v));
	ASSERT_EQ(0, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_VERSION, &v)));
	EXPECT_EQ(2, v.major);
	EXPECT_EQ(0, v.minor);
	EXPECT_EQ(0, v.revision);
	EXPECT_EQ(0, v.build);
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_VERSION, NULL)));
}

TEST_F(control, create_collect_destroy)
{
	struct blksnap_uuid a, b, ids[4];
	struct blksnap_snapshot_collect c;
	int base = snapshot_count(self->fd);

	ASSERT_LE(0, base);
	ASSERT_EQ(0, snapshot_create(self->fd, &a));
	ASSERT_EQ(0, snapshot_create(self->fd, &b));
	EXPECT_NE(0, memcmp(&a, &b, sizeof(a)));
	EXPECT_EQ(base + 2, snapshot_count(self->fd));

	/* Too small an array: what fits is copied, and counted. */
	memset(ids, 0, sizeof(ids));
	c.count = 1;
	c.ids = (uintptr_t)ids;
	EXPECT_EQ(ENODATA, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
	EXPECT_EQ(1, c.count);
	EXPECT_NE(0, ids[0].b[0] | ids[0].b[1] | ids[0].b[15]);
	EXPECT_EQ(0, ids[1].b[0] | ids[1].b[15]);

	if (base + 2 <= 4) {
		c.count = 4;
		ASSERT_EQ(0, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
		EXPECT_EQ((unsigned int)base + 2, c.count);
		EXPECT_EQ(0, memcmp(&ids[base], &a, sizeof(a)));
		EXPECT_EQ(0, memcmp(&ids[base + 1], &b, sizeof(b)));
	}

	EXPECT_EQ(0, snapshot_destroy(self->fd, &a));
	EXPECT_EQ(ENODEV, snapshot_destroy(self->fd, &a));
	EXPECT_EQ(0, snapshot_destroy(self->fd, &b));
	EXPECT_EQ(base, snapshot_count(self->fd));
}

TEST_F(control, bad_arguments)
{
	struct blksnap_uuid unknown = { .b = { 1, 2, 3 } };
	struct blksnap_snapshot_collect c = { .count = 8, .ids = 16 };
	int base = snapshot_count(self->fd);

	EXPECT_EQ(ENODEV, snapshot_destroy(self->fd, &unknown));
	EXPECT_EQ(EFAULT, snapshot_destroy(self->fd, NULL));
	/* A create whose result cannot be stored leaves no snapshot behind. */
	EXPECT_EQ(EFAULT, snapshot_create(self->fd, NULL));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, NULL)));
	EXPECT_EQ(base, snapshot_count(self->fd));
	if (base > 0)
		EXPECT_EQ(EFAULT, sys_errno(ioctl(self->fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)));
	/* Not ours: wrong type, wrong size, unknown number. */
	EXPECT_EQ(ENOTTY, sys_errno(ioctl(self->fd, _IOW('W', 1, struct blksnap_uuid), &unknown)));
	EXPECT_EQ(ENOTTY, sys_errno(ioctl(self->fd, _IOW(BLKSNAP, 1, __u32), &unknown)));
	EXPECT_EQ(ENOTTY, sys_errno(ioctl(self->fd, _IOW(BLKSNAP, 7, struct blksnap_uuid),
					  &unknown)));
}

TEST_F(control, need_cap_sys_admin)
{
	struct blksnap_uuid id;
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setresuid(65534, 65534, 65534))
			_exit(10);
		if (snapshot_create(self->fd, &id) != EPERM)
			_exit(1);
		if (snapshot_destroy(self->fd, &id) != EPERM)
			_exit(2);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
}

/* ----- a tracked disk ----- */

FIXTURE(tracked) {
	int fd;
	int ctl;
	unsigned long long size;
};

FIXTURE_SETUP(tracked)
{
	const char *path = need_env("BLKSNAP_TEST_DISK");

	self->fd = self->ctl = -1;
	if (!path)
		SKIP(return, "BLKSNAP_TEST_DISK not set");
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->fd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->fd);
	ASSERT_EQ(0, ioctl(self->fd, BLKGETSIZE64, &self->size));
	ASSERT_EQ(0, blksnap_attach(self->fd));
}

FIXTURE_TEARDOWN(tracked)
{
	if (self->fd >= 0) {
		EXPECT_EQ(0, blksnap_detach(self->fd));
		close(self->fd);
	}
	if (self->ctl >= 0)
		close(self->ctl);
}

TEST_F(tracked, attach_twice_and_foreign_names)
{
	struct blkfilter_ctl ctl = { .cmd = blkfilter_ctl_blksnap_cbtinfo };

	EXPECT_EQ(EALREADY, blksnap_attach(self->fd));
	EXPECT_EQ(EINVAL, filter_ioctl(self->fd, BLKFILTER_DETACH, "other"));
	strcpy((char *)ctl.name, "other");
	EXPECT_EQ(ENOENT, sys_errno(ioctl(self->fd, BLKFILTER_CTL, &ctl)));
}

TEST_F(tracked, cbtinfo)
{
	struct blksnap_cbtinfo info;
	unsigned int len = sizeof(info);
	unsigned int expect_count;
	struct blksnap_cbtinfo again;

	memset(&info, 0xaa, sizeof(info));
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len, NULL));
	EXPECT_EQ(self->size, info.device_capacity);
	/* Default parameters: 64 KiB blocks unless that makes over 2 Mi. */
	EXPECT_EQ(65536, info.block_size);
	expect_count = (self->size + 65535) / 65536;
	EXPECT_EQ(expect_count, info.block_count);
	EXPECT_EQ(0, info.changes_number);

	/* The generation stays while the tracker lives... */
	len = sizeof(again);
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, &again, &len, NULL));
	EXPECT_EQ(0, memcmp(&info.generation_id, &again.generation_id, 16));
	/* ...and a new tracker starts a new one. */
	ASSERT_EQ(0, blksnap_detach(self->fd));
	ASSERT_EQ(0, blksnap_attach(self->fd));
	len = sizeof(again);
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, &again, &len, NULL));
	EXPECT_NE(0, memcmp(&info.generation_id, &again.generation_id, 16));

	len = sizeof(info) - 1;
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len, NULL));
	len = sizeof(info);
	EXPECT_EQ(EFAULT, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, NULL, &len, NULL));
}

TEST_F(tracked, cbtmap_in_pieces)
{
	struct blksnap_cbtinfo info;
	unsigned int len = sizeof(info);
	unsigned char *whole, *pieces;
	struct blksnap_cbtmap m;
	unsigned int off;
	int ret = -1;

	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len, NULL));
	whole = malloc(info.block_count + 100);
	pieces = malloc(info.block_count);
	ASSERT_NE(NULL, whole);
	ASSERT_NE(NULL, pieces);

	/* A buffer larger than the map gets the whole map. */
	memset(whole, 0x55, info.block_count + 100);
	m = (struct blksnap_cbtmap){ .offset = 0, .length = info.block_count + 100,
				     .buffer = (uintptr_t)whole };
	len = sizeof(m);
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret));
	EXPECT_EQ((int)info.block_count, ret);
	EXPECT_EQ(0x55, whole[info.block_count]);

	for (off = 0; off < info.block_count; off += 333) {
		m = (struct blksnap_cbtmap){ .offset = off, .length = 333,
					     .buffer = (uintptr_t)(pieces + off) };
		len = sizeof(m);
		ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret));
		EXPECT_EQ(off + 333 > info.block_count ? info.block_count - off : 333,
			  (unsigned int)ret);
	}
	EXPECT_EQ(0, memcmp(whole, pieces, info.block_count));

	m.offset = info.block_count;
	m.length = 1;
	len = sizeof(m);
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, NULL));
	m.offset = 0;
	m.buffer = 8;
	EXPECT_EQ(EFAULT, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, NULL));
	free(whole);
	free(pieces);
}

TEST_F(tracked, cbtdirty_ranges_checked)
{
	unsigned long long sectors = self->size >> 9;
	struct blksnap_sectors r[2];
	struct blksnap_cbtdirty d = { .count = 1, .dirty_sectors = (uintptr_t)r };
	unsigned int len = sizeof(d);

	r[0] = (struct blksnap_sectors){ .offset = 0, .count = 8 };
	EXPECT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	r[0] = (struct blksnap_sectors){ .offset = sectors - 8, .count = 8 };
	EXPECT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));

	/* Beyond the end, empty and overflowing ranges. */
	r[0] = (struct blksnap_sectors){ .offset = sectors - 8, .count = 9 };
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	r[0] = (struct blksnap_sectors){ .offset = 0, .count = 0 };
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	r[0] = (struct blksnap_sectors){ .offset = ~0ULL - 1, .count = 4 };
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	/* A bad second range fails the whole command. */
	r[0] = (struct blksnap_sectors){ .offset = 0, .count = 8 };
	r[1] = (struct blksnap_sectors){ .offset = sectors, .count = 1 };
	d.count = 2;
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	d.dirty_sectors = 16;
	EXPECT_EQ(EFAULT, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
	len = sizeof(d) - 1;
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_cbtdirty, &d, &len, NULL));
}

TEST_F(tracked, unknown_command)
{
	unsigned int len = 0;

	EXPECT_EQ(ENOTTY, blksnap_ctl(self->fd, 99, NULL, &len, NULL));
}

TEST_F(tracked, snapshot_membership)
{
	struct blksnap_uuid a, b, unknown = { .b = { 9 } };
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);

	/* In no snapshot: no error, no image. */
	memset(&info, 0xaa, sizeof(info));
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL));
	EXPECT_EQ(0, info.error_code);
	EXPECT_EQ(0, info.image[0]);
	ASSERT_EQ(0, snapshot_create(self->ctl, &a));
	ASSERT_EQ(0, snapshot_create(self->ctl, &b));

	EXPECT_EQ(ESRCH, snapshot_add(self->fd, &unknown));
	EXPECT_EQ(0, snapshot_add(self->fd, &a));
	EXPECT_EQ(EALREADY, snapshot_add(self->fd, &a));
	/* One device, one snapshot: the reviewers' double-add. */
	EXPECT_EQ(EBUSY, snapshot_add(self->fd, &b));

	memset(&info, 0xaa, sizeof(info));
	len = sizeof(info);
	ASSERT_EQ(0, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL));
	EXPECT_EQ(0, info.error_code);
	EXPECT_EQ(0, info.image[0]);
	len = sizeof(info) - 1;
	EXPECT_EQ(EINVAL, blksnap_ctl(self->fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
				      &len, NULL));

	/* Destroying the other snapshot first changes nothing for this one. */
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &b));
	EXPECT_EQ(EALREADY, snapshot_add(self->fd, &a));
	/* Destroying the device's snapshot frees it for another. */
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &a));
	ASSERT_EQ(0, snapshot_create(self->ctl, &b));
	EXPECT_EQ(0, snapshot_add(self->fd, &b));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &b));
}

/* The filter can leave while its device is still in a snapshot. */
TEST_F(tracked, detach_while_in_snapshot)
{
	struct blksnap_uuid a;

	ASSERT_EQ(0, snapshot_create(self->ctl, &a));
	ASSERT_EQ(0, snapshot_add(self->fd, &a));
	ASSERT_EQ(0, blksnap_detach(self->fd));
	ASSERT_EQ(0, blksnap_attach(self->fd));
	/* A new tracker is a new device as far as snapshots go. */
	EXPECT_EQ(0, snapshot_add(self->fd, &a));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &a));
}

/* ----- module and filter lifetime ----- */

TEST(module_pinned_while_attached)
{
	const char *path = need_env("BLKSNAP_TEST_DISK");
	int fd, refs;

	if (!path)
		SKIP(return, "BLKSNAP_TEST_DISK not set");
	ASSERT_EQ(0, run("modprobe blksnap"));
	fd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	refs = module_refcnt();
	ASSERT_EQ(0, blksnap_attach(fd));
	EXPECT_EQ(refs + 1, module_refcnt());
	EXPECT_NE(0, run("rmmod blksnap 2>/dev/null"));
	ASSERT_EQ(0, blksnap_detach(fd));
	EXPECT_EQ(refs, module_refcnt());
	EXPECT_EQ(0, run("rmmod blksnap"));
	EXPECT_EQ(-1, module_refcnt());
	EXPECT_EQ(ENOENT, blksnap_attach(fd));
	EXPECT_EQ(0, run("modprobe blksnap"));
	close(fd);
}

/* A partition and its disk never both carry a filter. */
TEST(partition_and_disk_exclusive)
{
	const char *disk = need_env("BLKSNAP_TEST_PART_DISK");
	const char *part = need_env("BLKSNAP_TEST_PART");
	int dfd, pfd;

	if (!disk || !part)
		SKIP(return, "BLKSNAP_TEST_PART_DISK/BLKSNAP_TEST_PART not set");
	ASSERT_EQ(0, run("modprobe blksnap"));
	dfd = open(disk, O_RDWR | O_CLOEXEC);
	pfd = open(part, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	ASSERT_LE(0, pfd);
	ASSERT_EQ(0, blksnap_attach(pfd));
	EXPECT_EQ(EBUSY, blksnap_attach(dfd));
	ASSERT_EQ(0, blksnap_detach(pfd));
	ASSERT_EQ(0, blksnap_attach(dfd));
	EXPECT_EQ(EBUSY, blksnap_attach(pfd));
	EXPECT_EQ(0, blksnap_detach(dfd));
	close(pfd);
	close(dfd);
}

/* Dropping a partition detaches its filter and releases the module. */
TEST(partition_delete_detaches)
{
	const char *disk = need_env("BLKSNAP_TEST_PART_DISK");
	const char *part = need_env("BLKSNAP_TEST_PART2");
	struct blkpg_partition p = { 0 };
	struct blkpg_ioctl_arg a = { .datalen = sizeof(p), .data = &p };
	unsigned long long start, size;
	char sysfs[128];
	FILE *f;
	int dfd, pfd, refs;

	if (!disk || !part)
		SKIP(return, "BLKSNAP_TEST_PART_DISK/BLKSNAP_TEST_PART2 not set");
	ASSERT_EQ(0, run("modprobe blksnap"));
	snprintf(sysfs, sizeof(sysfs), "/sys/class/block/%s/start", strrchr(part, '/') + 1);
	f = fopen(sysfs, "r");
	ASSERT_NE(NULL, f);
	ASSERT_EQ(1, fscanf(f, "%llu", &start));
	fclose(f);
	pfd = open(part, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, pfd);
	ASSERT_EQ(0, ioctl(pfd, BLKGETSIZE64, &size));
	refs = module_refcnt();
	ASSERT_EQ(0, blksnap_attach(pfd));
	close(pfd);
	EXPECT_EQ(refs + 1, module_refcnt());

	dfd = open(disk, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, dfd);
	p.pno = atoi(part + strlen(part) - 1);
	a.op = BLKPG_DEL_PARTITION;
	ASSERT_EQ(0, sys_errno(ioctl(dfd, BLKPG, &a)));
	EXPECT_EQ(refs, module_refcnt());

	/* Put it back for whoever comes next. */
	p.start = start << 9;
	p.length = size;
	a.op = BLKPG_ADD_PARTITION;
	EXPECT_EQ(0, sys_errno(ioctl(dfd, BLKPG, &a)));
	close(dfd);
}

/* Deleting the disk detaches its filter and releases the module. */
TEST(disk_delete_detaches)
{
	char img[] = "/tmp/blksnap-delete-XXXXXX";
	struct loop_config cfg = { 0 };
	int ctl, loop_nr, lfd, ffd, refs;
	char path[32];

	ASSERT_EQ(0, run("modprobe blksnap"));
	ffd = mkstemp(img);
	ASSERT_LE(0, ffd);
	ASSERT_EQ(0, ftruncate(ffd, 16 << 20));
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	loop_nr = ioctl(ctl, LOOP_CTL_GET_FREE);
	ASSERT_LE(0, loop_nr);
	snprintf(path, sizeof(path), "/dev/loop%d", loop_nr);
	lfd = open(path, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, lfd);
	cfg.fd = ffd;
	ASSERT_EQ(0, ioctl(lfd, LOOP_CONFIGURE, &cfg));

	refs = module_refcnt();
	ASSERT_EQ(0, blksnap_attach(lfd));
	EXPECT_EQ(refs + 1, module_refcnt());
	ASSERT_EQ(0, ioctl(lfd, LOOP_CLR_FD, 0));
	close(lfd);
	/* Removing the loop device deletes its disk. */
	ASSERT_EQ(0, sys_errno(ioctl(ctl, LOOP_CTL_REMOVE, loop_nr)));
	EXPECT_EQ(refs, module_refcnt());
	close(ctl);
	close(ffd);
	unlink(img);
}

TEST_HARNESS_MAIN
