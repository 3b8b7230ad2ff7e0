// SPDX-License-Identifier: GPL-2.0
/*
 * Difference storage that the module opens itself
 * (IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE): a whole block device, held
 * exclusively, that keeps the point in time; a limit that asks for more
 * with a no-space event, breaks the snapshot with -ENOSPC when it is
 * reached (the original losing nothing) and can be raised in time; and
 * the configurations that are refused, each with its errno.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/wait.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#define MIB (1024 * 1024)
#define ORIG_SIZE (16 * MIB)
#define CHUNK (256 * 1024)	/* chunk_minimum_shift 18 */
#define MINIMUM 4096		/* diff_storage_minimum, in sectors: 8 chunks */

static int set_storage(int ctl, const struct blksnap_uuid *id, const char *path,
		       unsigned long long limit)
{
	struct blksnap_snapshot_storage st = {
		.id = *id,
		.path = (uintptr_t)path,
		.path_size = path ? strlen(path) + 1 : 0,
		.limit_sect = limit,
	};

	return sys_errno(ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st));
}

FIXTURE(setstorage) {
	int ctl;
	struct loopdev orig, store;
	struct blksnap_uuid id;
	unsigned char *before, *now, *buf;
	struct blksnap_snapshot_event *ev;
};

FIXTURE_SETUP(setstorage)
{
	self->orig.fd = -1;
	self->store.fd = -1;
	self->before = aligned_alloc(4096, ORIG_SIZE);
	self->now = aligned_alloc(4096, ORIG_SIZE);
	self->buf = aligned_alloc(4096, ORIG_SIZE);
	self->ev = calloc(1, sizeof(*self->ev));
	ASSERT_NE(NULL, self->before);
	ASSERT_NE(NULL, self->now);
	ASSERT_NE(NULL, self->buf);
	ASSERT_NE(NULL, self->ev);
	run("rmmod blksnap 2>/dev/null");
	ASSERT_EQ(0, run("modprobe blksnap diff_storage_minimum=4096"));
	ASSERT_EQ(0, loop_create(&self->orig, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&self->store, 3 * ORIG_SIZE / 2));
	fill_random(self->before, ORIG_SIZE, 77);
	memcpy(self->now, self->before, ORIG_SIZE);
	ASSERT_EQ(0, pwrite_all(self->orig.fd, self->before, ORIG_SIZE, 0));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
}

FIXTURE_TEARDOWN(setstorage)
{
	snapshot_destroy_all(self->ctl);
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	close(self->ctl);
	free(self->before);
	free(self->now);
	free(self->buf);
	free(self->ev);
}

/* Writes 4 KiB of new data into each of chunks first..first+count-1. */
static int overwrite_chunks(struct _test_data_setstorage *self, int first, int count,
			    unsigned int seed)
{
	int i;

	for (i = first; i < first + count; i++) {
		off_t off = (off_t)i * CHUNK + 4096;

		fill_random(self->buf, 4096, seed + i);
		if (pwrite_all(self->orig.fd, self->buf, 4096, off))
			return -1;
		memcpy(self->now + off, self->buf, 4096);
	}
	return 0;
}

/* The next event of code `code` within `ms`, skipping others; 0 or errno. */
static int next_event(struct _test_data_setstorage *self, unsigned int code, unsigned int ms)
{
	int err;

	do {
		err = snapshot_wait_event(self->ctl, &self->id, ms, self->ev);
	} while (!err && self->ev->code != code);
	return err;
}

static int64_t event_u64(struct _test_data_setstorage *self)
{
	uint64_t v;

	memcpy(&v, self->ev->data, sizeof(v));
	return v;
}

static int info_error(struct _test_data_setstorage *self)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);

	if (blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL))
		return 1;
	return info.error_code;
}

static int image_equals(struct _test_data_setstorage *self, const unsigned char *want)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	char path[64];

	if (blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL))
		return -1;
	snprintf(path, sizeof(path), "/dev/%s", (char *)info.image);
	if (read_whole(path, self->buf, ORIG_SIZE))
		return -1;
	return memcmp(self->buf, want, ORIG_SIZE) ? -1 : 0;
}

/* The original as written, byte for byte: the module lost nothing. */
static int original_intact(struct _test_data_setstorage *self)
{
	if (pread(self->orig.fd, self->buf, ORIG_SIZE, 0) != ORIG_SIZE)
		return -1;
	return memcmp(self->buf, self->now, ORIG_SIZE) ? -1 : 0;
}

/* A whole device as storage keeps the point in time of every chunk. */
TEST_F(setstorage, whole_device_keeps_the_point_in_time)
{
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, 0));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 500));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	/* The chunks went to the device, in the order they were copied. */
	ASSERT_EQ(0, read_whole(self->store.path, self->buf, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->buf, self->before, ORIG_SIZE));
	/* 64 chunks of the 96 the device holds: no request for more. */
	EXPECT_EQ(ENOENT, next_event(self, blksnap_event_code_no_space, 0));
	EXPECT_EQ(0, original_intact(self));
}

/* Held exclusively until the snapshot is destroyed. */
TEST_F(setstorage, device_held_exclusively_until_destroy)
{
	int fd;

	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, 0));
	fd = open(self->store.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	EXPECT_EQ(EBUSY, errno);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	fd = open(self->store.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	EXPECT_LE(0, fd);
	close(fd);
	/* The same after a take, and after a take refused. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, 0));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	EXPECT_EQ(EALREADY, snapshot_take(self->ctl, &self->id));
	fd = open(self->store.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	EXPECT_EQ(-1, fd);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	fd = open(self->store.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	EXPECT_LE(0, fd);
	close(fd);
}

TEST_F(setstorage, refused_arguments)
{
	struct blksnap_snapshot_storage st = { .id = self->id };
	struct blksnap_sectors r = { .offset = 0, .count = 2048 };
	struct blksnap_uuid unknown = { .b = { 0x42 } };
	struct blksnap_uuid other;
	int fd, status;
	pid_t pid;

	st.flags = 1;
	st.path = (uintptr_t)self->store.path;
	st.path_size = strlen(self->store.path) + 1;
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st)));
	st.flags = 0;
	st.path = 0;
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st)));
	st.path = (uintptr_t)self->store.path;
	st.path_size = 0;
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st)));
	st.path_size = 1 << 20;	/* over PATH_MAX */
	EXPECT_EQ(EINVAL, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st)));
	st.path = 16;
	st.path_size = 8;
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, &st)));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, NULL)));
	/* A new limit without storage to limit. */
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, NULL, 100));
	EXPECT_EQ(ESRCH, set_storage(self->ctl, &unknown, self->store.path, 0));
	EXPECT_EQ(ENOENT, set_storage(self->ctl, &self->id, "/dev/no-such-device", 0));
	EXPECT_EQ(ENOTBLK, set_storage(self->ctl, &self->id, "/dev/null", 0));
	/* Held exclusively by someone else. */
	fd = open(self->store.path, O_RDONLY | O_EXCL | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &self->id, self->store.path, 0));
	close(fd);
	/* Only root's agent. */
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		if (setresuid(65534, 65534, 65534))
			_exit(10);
		_exit(set_storage(self->ctl, &self->id, self->store.path, 0) == EPERM ? 0 : 1);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));

	/* One storage, of one kind. */
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, 0));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &self->id, self->store.path, 0));
	EXPECT_EQ(EBUSY, storage_append(self->ctl, &self->id, self->store.path, &r, 1));
	ASSERT_EQ(0, snapshot_create(self->ctl, &other));
	ASSERT_EQ(0, storage_append(self->ctl, &other, self->orig.path, &r, 1));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &other, self->store.path, 0));
	/* Another snapshot cannot have the same device. */
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &other));
	ASSERT_EQ(0, snapshot_create(self->ctl, &other));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &other, self->store.path, 0));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &other));
	/* After the take, only the limit changes. */
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &self->id, self->store.path, 0));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 4, 900));
	/* Not below what is used (4 chunks of 512 sectors), nor above the size. */
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, NULL, 1024));
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, NULL, self->store.size / 512 + 1));
	/* No room left: the request for more comes with the new limit. */
	EXPECT_EQ(ENOENT, next_event(self, blksnap_event_code_no_space, 0));
	EXPECT_EQ(0, set_storage(self->ctl, &self->id, NULL, 2048));
	EXPECT_EQ(0, next_event(self, blksnap_event_code_no_space, 0));
	EXPECT_EQ(0, info_error(self));
}

/* Storage that shares sectors with an original would overwrite it. */
TEST_F(setstorage, storage_on_an_original_is_refused)
{
	struct loopdev disk = { .fd = -1 };
	struct blksnap_uuid id2;
	char p1[48], p2[48];
	int fd;

	EXPECT_EQ(ELOOP, set_storage(self->ctl, &self->id, self->orig.path, 0));

	/* Another snapshot's original, or a device only tracked, alike. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(ELOOP, set_storage(self->ctl, &id2, self->orig.path, 0));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	/* And no filter on a device given as storage. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	ASSERT_EQ(0, set_storage(self->ctl, &id2, self->store.path, 0));
	EXPECT_EQ(EBUSY, blksnap_attach(self->store.fd));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	EXPECT_EQ(0, blksnap_attach(self->store.fd));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));

	/* A partition of a disk: its whole disk is refused, its neighbour is not. */
	ASSERT_EQ(0, loop_create(&disk, 64 * MIB));
	ASSERT_EQ(0, loop_partition(&disk));
	snprintf(p1, sizeof(p1), "%sp1", disk.path);
	snprintf(p2, sizeof(p2), "%sp2", disk.path);
	fd = open(p1, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, blksnap_attach(fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	ASSERT_EQ(0, snapshot_add(fd, &id2));
	EXPECT_EQ(ELOOP, set_storage(self->ctl, &id2, disk.path, 0));
	EXPECT_EQ(0, set_storage(self->ctl, &id2, p2, 0));
	EXPECT_EQ(0, snapshot_take(self->ctl, &id2));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	blksnap_detach(fd);
	close(fd);
	loop_destroy(&disk);
}

/*
 * At the limit: a no-space event asks for more; nothing comes, so the
 * snapshot breaks with -ENOSPC and the original keeps every write.
 */
TEST_F(setstorage, limit_reached_breaks_with_enospc)
{
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, MINIMUM));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 16, 300));
	ASSERT_EQ(0, next_event(self, blksnap_event_code_no_space, 1000));
	EXPECT_EQ(MINIMUM, event_u64(self));
	ASSERT_EQ(0, next_event(self, blksnap_event_code_corrupted, 1000));
	EXPECT_EQ(ENOSPC, ((struct blksnap_event_corrupted *)self->ev->data)->err_code);
	EXPECT_EQ(-ENOSPC, info_error(self));
	EXPECT_EQ(0, original_intact(self));
	/* The first 8 chunks stored, nothing past the limit. */
	ASSERT_EQ(0, read_whole(self->store.path, self->buf, 2 * MINIMUM * 512));
	EXPECT_EQ(0, memcmp(self->buf, self->before, MINIMUM * 512));
	memset(self->now, 0, MINIMUM * 512);
	EXPECT_EQ(0, memcmp(self->buf + MINIMUM * 512, self->now, MINIMUM * 512));
}

/* A limit raised when the event comes keeps the snapshot whole. */
TEST_F(setstorage, limit_raised_in_time_keeps_the_snapshot)
{
	int i, asked = 0;

	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, MINIMUM));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	for (i = 0; i < 24; i++) {
		ASSERT_EQ(0, overwrite_chunks(self, i, 1, 700));
		if (next_event(self, blksnap_event_code_no_space, 0) == 0) {
			asked++;
			ASSERT_EQ(0, set_storage(self->ctl, &self->id, NULL,
						 (unsigned long long)MINIMUM * (asked + 1)));
		}
	}
	/* Half of 8 chunks left after the 4th, 12th and 20th chunk. */
	EXPECT_EQ(3, asked);
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, original_intact(self));
}

TEST_HARNESS_MAIN
