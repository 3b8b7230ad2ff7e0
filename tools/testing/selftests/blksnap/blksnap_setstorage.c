// SPDX-License-Identifier: GPL-2.0
/*
 * Difference storage that the module opens itself
 * (IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE): a whole block device, held
 * exclusively, that keeps the point in time; a limit that asks for more
 * with a no-space event, breaks the snapshot with -ENOSPC when it is
 * reached (the original losing nothing) and can be raised in time; and
 * the configurations that are refused, each with its errno.  Then files:
 * an unnamed one in a tmpfs directory and a named one on ext4, which the
 * module grows as the snapshot fills them, up to the limit or until the
 * file system is full.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <time.h>
#include <dirent.h>
#include <sys/mount.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#define MIB (1024 * 1024)
#define ORIG_SIZE (16 * MIB)
#define CHUNK (256 * 1024)	/* chunk_minimum_shift 18 */
#define MINIMUM 4096		/* diff_storage_minimum, in sectors: 8 chunks */
#define DIR_TMPFS "/tmp/bsnap_store_dir"
#define MNT_EXT4 "/tmp/bsnap_store_ext4"
#define MNT_SMALL "/tmp/bsnap_store_small"
#define DM_STACK "bsnap_stack"

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

/* Device-mapper devices stacked on each other, each over the one before. */
#define DM_CHAIN 17
#define DM_CHAIN_NAME "bsnap_chain%d"

static void dm_chain_remove(void)
{
	char cmd[80];
	int pass, i;

	/* Top down; twice, for a device reloaded under the others. */
	for (pass = 0; pass < 2; pass++) {
		for (i = DM_CHAIN - 1; i >= 0; i--) {
			snprintf(cmd, sizeof(cmd), "dmsetup remove " DM_CHAIN_NAME " 2>/dev/null",
				 i);
			run(cmd);
		}
	}
}

/*
 * Makes device-mapper device `name`, `sectors` long, linear over `below`,
 * and puts its path into dm[len]: 0 or -1.
 */
static int dm_linear(const char *name, unsigned long long sectors, const char *below,
		     char *dm, size_t len)
{
	char cmd[200];

	snprintf(cmd, sizeof(cmd), "dmsetup create %s --table '0 %llu linear %s 0'", name,
		 sectors, below);
	if (run(cmd))
		return -1;
	return dm_path(name, dm, len);
}

/* Puts `table` in force for device-mapper device `name`. */
static int dm_reload(const char *name, const char *table)
{
	char cmd[512];

	snprintf(cmd, sizeof(cmd), "dmsetup reload %s --table '%s' && dmsetup resume %s", name,
		 table, name);
	return run(cmd);
}

static int have_dmsetup(void)
{
	return !access("/usr/bin/dmsetup", X_OK) || !access("/sbin/dmsetup", X_OK);
}

FIXTURE(setstorage) {
	int ctl;
	struct loopdev orig, store, extra;
	struct loopdev more[2];	/* a second original and its storage */
	struct blksnap_uuid id;
	unsigned char *before, *now, *buf;
	struct blksnap_snapshot_event *ev;
	int chain;	/* a case made a chain of device-mapper devices */
};

FIXTURE_SETUP(setstorage)
{
	self->orig.fd = -1;
	self->store.fd = -1;
	self->extra.fd = -1;
	self->more[0].fd = -1;
	self->more[1].fd = -1;
	self->chain = 0;
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
	if (self->store.fd >= 0)
		stop_failing_requests(self->store.nr);
	snapshot_destroy_all(self->ctl);
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	if (self->store.fd >= 0)
		blksnap_detach(self->store.fd);
	if (self->more[0].fd >= 0)
		blksnap_detach(self->more[0].fd);
	/* What a case that stopped half-way left mounted. */
	umount(MNT_EXT4);
	umount(MNT_SMALL);
	run("dmsetup remove " DM_STACK " 2>/dev/null");
	if (self->chain)
		dm_chain_remove();
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	loop_destroy(&self->extra);
	loop_destroy(&self->more[0]);
	loop_destroy(&self->more[1]);
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

/* The path of the original's image into path[size]; 0 or -1. */
static int image_path(struct _test_data_setstorage *self, char *path, size_t size)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);

	if (blksnap_ctl(self->orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len, NULL))
		return -1;
	snprintf(path, size, "/dev/%s", (char *)info.image);
	return 0;
}

static int image_equals(struct _test_data_setstorage *self, const unsigned char *want)
{
	char path[64];

	if (image_path(self, path, sizeof(path)))
		return -1;
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
static void limit_breaks(struct __test_metadata *_metadata, struct _test_data_setstorage *self,
			 const char *path, unsigned int seed)
{
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, path, MINIMUM));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 16, seed));
	ASSERT_EQ(0, next_event(self, blksnap_event_code_no_space, 1000));
	EXPECT_EQ(MINIMUM, event_u64(self));
	ASSERT_EQ(0, next_event(self, blksnap_event_code_corrupted, 1000));
	EXPECT_EQ(ENOSPC, ((struct blksnap_event_corrupted *)self->ev->data)->err_code);
	EXPECT_EQ(-ENOSPC, info_error(self));
	EXPECT_EQ(0, original_intact(self));
}

TEST_F(setstorage, limit_reached_breaks_with_enospc)
{
	limit_breaks(_metadata, self, self->store.path, 300);
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

/* Entries in `path` other than . and ..; -1 if it cannot be read. */
static int entries(const char *path)
{
	struct dirent *d;
	DIR *dir = opendir(path);
	int n = 0;

	if (!dir)
		return -1;
	while ((d = readdir(dir)))
		n += strcmp(d->d_name, ".") && strcmp(d->d_name, "..");
	closedir(dir);
	return n;
}

/*
 * Unmounts `path`: the module's last reference to a storage file goes from
 * a work item (a delayed fput), so the file system may be busy a moment
 * after the destroy.
 */
static int umount_soon(const char *path)
{
	int i;

	for (i = 0; i < 200; i++) {
		if (!umount(path))
			return 0;
		if (errno != EBUSY)
			return -1;
		usleep(10000);
	}
	return -1;
}

/* An ext4 file system on the storage loop device, mounted at MNT_EXT4. */
static int mount_ext4(struct _test_data_setstorage *self)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s",
		 self->store.path, MNT_EXT4, self->store.path, MNT_EXT4);
	return run(cmd);
}

/*
 * An unnamed file in a tmpfs directory: it starts empty, the module grows
 * it as chunks come, every chunk keeps its point in time, and nothing is
 * left in the directory, during the snapshot or after.
 */
TEST_F(setstorage, tmpfs_directory_grows_and_keeps_the_point_in_time)
{
	run("mkdir -p " DIR_TMPFS);
	ASSERT_EQ(0, entries(DIR_TMPFS));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, DIR_TMPFS, 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 1500));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, entries(DIR_TMPFS));
	EXPECT_EQ(ENOENT, next_event(self, blksnap_event_code_no_space, 0));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, entries(DIR_TMPFS));
	rmdir(DIR_TMPFS);
}

/*
 * A named, empty file on ext4, grown under a writer while a reader checks
 * the image against the take all along; the file is not held past the
 * snapshot, so the file system unmounts.
 */
TEST_F(setstorage, ext4_file_grows_under_a_writer_with_image_readers)
{
	char image[64];
	struct stat st;
	int fd, status, i;
	pid_t reader;

	ASSERT_EQ(0, mount_ext4(self));
	fd = open(MNT_EXT4 "/storage", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	close(fd);
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/storage", 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	reader = fork();
	ASSERT_LE(0, reader);
	if (!reader) {
		for (i = 0; i < 6; i++) {
			if (read_whole(image, self->buf, ORIG_SIZE) ||
			    memcmp(self->buf, self->before, ORIG_SIZE))
				_exit(1);
		}
		_exit(0);
	}
	for (i = 0; i < ORIG_SIZE / CHUNK; i += 8)
		ASSERT_EQ(0, overwrite_chunks(self, i, 8, 2500));
	ASSERT_EQ(reader, waitpid(reader, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status))
		TH_LOG("an image read differed from the data at the take");
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	/* Grown from nothing to hold every chunk, within the limit. */
	ASSERT_EQ(0, stat(MNT_EXT4 "/storage", &st));
	EXPECT_LE(ORIG_SIZE, st.st_size);
	EXPECT_GE(3 * ORIG_SIZE, st.st_size);
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/* At a file's limit: the event, then -ENOSPC; the original keeps all. */
TEST_F(setstorage, file_limit_reached_breaks_with_enospc)
{
	run("mkdir -p " DIR_TMPFS);
	limit_breaks(_metadata, self, DIR_TMPFS, 3300);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	rmdir(DIR_TMPFS);
}

/* A file system that fills up before the limit: -ENOSPC, nothing lost. */
TEST_F(setstorage, file_system_full_breaks_with_enospc)
{
	ASSERT_EQ(0, run("mkdir -p " MNT_SMALL " && mount -t tmpfs -o size=2m tmpfs " MNT_SMALL));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_SMALL, 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 24, 3700));
	ASSERT_EQ(0, next_event(self, blksnap_event_code_corrupted, 1000));
	EXPECT_EQ(ENOSPC, ((struct blksnap_event_corrupted *)self->ev->data)->err_code);
	EXPECT_EQ(-ENOSPC, info_error(self));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_SMALL));
}

/*
 * Files refused: on a file system whose device is filtered (its writes
 * would come back to the filter), with no limit, or of a kind that is
 * neither a file, a directory nor a block device; and no filter on the
 * device of a file system that holds a storage file.
 */
TEST_F(setstorage, file_storage_refusals)
{
	struct blksnap_uuid id2;

	ASSERT_EQ(0, mount_ext4(self));
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, MNT_EXT4, 0));
	EXPECT_EQ(ENOTBLK, set_storage(self->ctl, &self->id, "/dev/null", 0));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 8192));
	EXPECT_EQ(EBUSY, blksnap_attach(self->store.fd));
	/* A second snapshot may store in the same file system... */
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(0, set_storage(self->ctl, &id2, MNT_EXT4, 8192));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	/* ...but not in the same file, by any of its names. */
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	close(open(MNT_EXT4 "/named", O_CREAT | O_RDWR | O_CLOEXEC, 0600));
	ASSERT_EQ(0, link(MNT_EXT4 "/named", MNT_EXT4 "/other-name"));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/named", 8192));
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &id2, MNT_EXT4 "/named", 8192));
	EXPECT_EQ(EBUSY, set_storage(self->ctl, &id2, MNT_EXT4 "/other-name", 8192));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	/* Filtered, the device takes no storage file any more. */
	ASSERT_EQ(0, blksnap_attach(self->store.fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(ELOOP, set_storage(self->ctl, &id2, MNT_EXT4, 8192));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/*
 * A file that takes no direct I/O is refused, given as a directory or by
 * name: ext4 with data journalling sends direct I/O through its page
 * cache.  A file that starts journalling its data after it was given is
 * refused at the take (ext4 journals a file's data for its flag only
 * without delayed allocation).
 */
TEST_F(setstorage, file_without_direct_io_is_refused)
{
	unsigned int flags;
	char cmd[200];
	int fd;

	snprintf(cmd, sizeof(cmd),
		 "mkfs.ext4 -q -F %s && mkdir -p %s && mount -o data=journal %s %s",
		 self->store.path, MNT_EXT4, self->store.path, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	fd = open(MNT_EXT4 "/named", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	close(fd);
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, MNT_EXT4, 8192));
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &self->id, MNT_EXT4 "/named", 8192));
	ASSERT_EQ(0, umount_soon(MNT_EXT4));
	/* Journalling only metadata, the same file system takes the file. */
	ASSERT_EQ(0, mount(self->store.path, MNT_EXT4, "ext4", 0, "nodelalloc"));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/named", 8192));
	fd = open(MNT_EXT4 "/named", O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, ioctl(fd, FS_IOC_GETFLAGS, &flags));
	flags |= FS_JOURNAL_DATA_FL;
	ASSERT_EQ(0, ioctl(fd, FS_IOC_SETFLAGS, &flags));
	close(fd);
	EXPECT_EQ(EINVAL, snapshot_take(self->ctl, &self->id));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/*
 * A named file truncated behind the snapshot's back: its stored chunks
 * are gone, so the snapshot breaks with -EIO rather than show zeroes; a
 * named file unlinked in use goes on, and its space comes back at the
 * destroy.
 */
TEST_F(setstorage, named_file_truncated_or_unlinked)
{
	struct statfs before, during, after;
	int fd;

	ASSERT_EQ(0, mount_ext4(self));
	fd = open(MNT_EXT4 "/storage", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/storage", 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 8, 4100));
	ASSERT_EQ(0, ftruncate(fd, 0));
	close(fd);
	ASSERT_EQ(0, overwrite_chunks(self, 8, 8, 4200));
	EXPECT_EQ(-EIO, info_error(self));
	EXPECT_NE(0, image_equals(self, self->before));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));

	ASSERT_EQ(0, statfs(MNT_EXT4, &before));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	fd = open(MNT_EXT4 "/storage2", O_CREAT | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, fd);
	close(fd);
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/storage2", 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, unlink(MNT_EXT4 "/storage2"));
	/* The point in time of this snapshot: the original as it is now. */
	memcpy(self->before, self->now, ORIG_SIZE);
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 4300));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	ASSERT_EQ(0, statfs(MNT_EXT4, &during));
	EXPECT_GT(before.f_bfree, during.f_bfree);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	/* The last reference goes from a work item: wait for it, 2 s at most. */
	for (int i = 0; i < 200; i++) {
		ASSERT_EQ(0, statfs(MNT_EXT4, &after));
		if (after.f_bfree == before.f_bfree)
			break;
		usleep(10000);
	}
	EXPECT_EQ(before.f_bfree, after.f_bfree);
	EXPECT_EQ(0, original_intact(self));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/*
 * Destroy, and unload, while a writer keeps the file growing: both end
 * cleanly, and the original has every write.
 */
TEST_F(setstorage, destroy_and_unload_while_a_file_grows)
{
	int round, status;
	pid_t writer;

	run("mkdir -p " DIR_TMPFS);
	for (round = 0; round < 2; round++) {
		if (round) {
			ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
			ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
		}
		ASSERT_EQ(0, set_storage(self->ctl, &self->id, DIR_TMPFS, 3 * ORIG_SIZE / 512));
		ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
		writer = fork();
		ASSERT_LE(0, writer);
		if (!writer)
			_exit(overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 4400 + round) ? 1 : 0);
		usleep(50000);
		if (round == 0) {
			EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
		} else {
			/* The control device is closed and the filter detached first. */
			ASSERT_EQ(writer, waitpid(writer, &status, 0));
			writer = 0;
			close(self->ctl);
			self->ctl = -1;
			EXPECT_EQ(0, blksnap_detach(self->orig.fd));
			EXPECT_EQ(0, run("rmmod blksnap"));
		}
		if (writer)
			ASSERT_EQ(writer, waitpid(writer, &status, 0));
		EXPECT_EQ(0, WEXITSTATUS(status));
		/* What the child wrote, in the parent's copy of the original. */
		for (int i = 0; i < ORIG_SIZE / CHUNK; i++)
			fill_random(self->now + (size_t)i * CHUNK + 4096, 4096, 4400 + round + i);
		EXPECT_EQ(0, original_intact(self));
	}
	EXPECT_EQ(0, entries(DIR_TMPFS));
	rmdir(DIR_TMPFS);
	ASSERT_EQ(0, run("modprobe blksnap diff_storage_minimum=4096"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
}

/*
 * Writes to the image of a snapshot stored in a file: a chunk never copied
 * is copied to the file first, a chunk stored there is written there; the
 * image reads them back, and the original never sees them.
 */
TEST_F(setstorage, image_writes_go_to_the_file)
{
	unsigned char *data = self->buf;
	char image[64];
	int fd;

	run("mkdir -p " DIR_TMPFS);
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, DIR_TMPFS, 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	/* Chunk 5 copied to the file by a write to the original. */
	ASSERT_EQ(0, overwrite_chunks(self, 5, 1, 4600));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	fd = open(image, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	/* Into chunk 3, never copied, and chunk 5, stored in the file. */
	fill_random(data, 4096, 4700);
	ASSERT_EQ(0, pwrite_all(fd, data, 4096, 3 * CHUNK + 8192));
	memcpy(self->before + 3 * CHUNK + 8192, data, 4096);
	fill_random(data, 4096, 4800);
	ASSERT_EQ(0, pwrite_all(fd, data, 4096, 5 * CHUNK + 8192));
	memcpy(self->before + 5 * CHUNK + 8192, data, 4096);
	close(fd);
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	rmdir(DIR_TMPFS);
}

/*
 * Reads one chunk of the image at a time, over and over, each compared with
 * the data at the take, until a read fails: 0 if every read that succeeded
 * was right and there was one, 1 if one was wrong, 2 if none succeeded.  A
 * chunk-sized read of a stored chunk is served from the file alone.
 */
static int read_chunks_until_error(const char *image, const unsigned char *want,
				   unsigned char *buf, unsigned int seed, int ready)
{
	int fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	unsigned int i, good = 0;

	if (fd < 0)
		return 2;
	for (i = seed;; i++, good++) {
		off_t off = (off_t)(i % (ORIG_SIZE / CHUNK)) * CHUNK;

		if (pread(fd, buf, CHUNK, off) != CHUNK)
			break;
		if (memcmp(buf, want + off, CHUNK)) {
			close(fd);
			return 1;
		}
		/* The first good read tells the parent that reads are going. */
		if (!good && (write(ready, "r", 1) != 1 || close(ready)))
			return 2;
	}
	close(fd);
	return good ? 0 : 2;
}

/*
 * Image reads of chunks stored in a file go on to the file without the
 * copy worker waiting for them: readers that keep such reads coming while
 * the snapshot is destroyed get the data of the take or an error, the
 * kernel reports nothing, and once the readers are gone nothing keeps the
 * module.  Then a storage device that fails reads fails the image reads
 * that need it, and only while it fails.
 */
TEST_F(setstorage, image_reads_in_flight_to_the_file)
{
	char image[64], line[256], ready[3];
	pid_t readers[3];
	int kmsg, status, i, fd, pipefd[2];

	ASSERT_EQ(0, mount_ext4(self));
	kmsg = kmsg_mark();
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 5100));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	ASSERT_EQ(0, pipe(pipefd));
	for (i = 0; i < 3; i++) {
		readers[i] = fork();
		ASSERT_LE(0, readers[i]);
		if (!readers[i]) {
			unsigned char *buf = aligned_alloc(4096, CHUNK);

			close(pipefd[0]);
			_exit(buf ? read_chunks_until_error(image, self->before, buf, i * 21,
							    pipefd[1]) : 2);
		}
	}
	close(pipefd[1]);
	/* Every reader is reading (or gone: then it fails below). */
	for (i = 0; i < 3 && read(pipefd[0], ready + i, 1) == 1; i++)
		;
	close(pipefd[0]);
	EXPECT_EQ(3, i);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	for (i = 0; i < 3; i++) {
		ASSERT_EQ(readers[i], waitpid(readers[i], &status, 0));
		EXPECT_EQ(0, WEXITSTATUS(status))
			TH_LOG("reader %d: %s", i, WEXITSTATUS(status) == 1 ?
			       "read data that is not the take's" : "no read succeeded");
	}
	EXPECT_EQ(0, original_intact(self));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
	/* Nothing the readers did keeps the module. */
	close(self->ctl);
	self->ctl = -1;
	EXPECT_EQ(0, blksnap_detach(self->orig.fd));
	EXPECT_EQ(0, run("rmmod blksnap"));
	ASSERT_EQ(0, run("modprobe blksnap diff_storage_minimum=4096"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	if (kmsg >= 0) {
		EXPECT_EQ(0, kmsg_splat(kmsg, line, sizeof(line))) TH_LOG("%s", line);
		close(kmsg);
	}

	/* Reads from a storage device that fails them. */
	if (fail_requests_available())
		SKIP(return, "fail_make_request is not available");
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->id));
	ASSERT_EQ(0, mount_ext4(self));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 3 * ORIG_SIZE / 512));
	memcpy(self->before, self->now, ORIG_SIZE);
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, 4, 5200));
	/* A read of the image waits for the stores; then the journal goes out. */
	ASSERT_EQ(0, image_equals(self, self->before));
	sync();
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, fail_requests(self->store.nr, "1", "-1"));
	/* Chunk 1 is in the file, chunks 5 and 6 on the original. */
	EXPECT_EQ(-1, pread(fd, self->buf, CHUNK, CHUNK));
	EXPECT_EQ(EIO, errno);
	EXPECT_EQ(2 * CHUNK, pread(fd, self->buf, 2 * CHUNK, 5 * CHUNK));
	stop_failing_requests(self->store.nr);
	EXPECT_EQ(CHUNK, pread(fd, self->buf, CHUNK, CHUNK));
	EXPECT_EQ(0, memcmp(self->buf, self->before + CHUNK, CHUNK));
	close(fd);
	/* A failed read of the storage is the reader's, not the snapshot's. */
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/*
 * Storage in a file system on a device that completes bios inside
 * submit_bio (brd): an image read of a stored chunk may complete while the
 * file system is still in its read_iter (ext4 reads of one block take a
 * path whose bio ends in submit_bio), which must not find the request
 * freed (KASAN would report it).  The image holds the data of the take.
 */
TEST_F(setstorage, storage_file_on_a_device_that_completes_at_once)
{
	const char *ram = "/dev/ram7";
	char cmd[160], image[64], line[256];
	int kmsg, fd, round, i, j;

	fd = open(ram, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		SKIP(return, "%s is not available", ram);
	close(fd);
	/* Blocks of 4 KiB, as on a larger file system, not 1 KiB. */
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F -b 4096 %s && mkdir -p %s && mount %s %s",
		 ram, MNT_EXT4, ram, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	kmsg = kmsg_mark();
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 2 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 5700));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	/* Blocks and whole chunks, each read served from the file alone. */
	for (round = 0; round < 2; round++) {
		for (i = 0; i < ORIG_SIZE / CHUNK; i++) {
			off_t at = (off_t)i * CHUNK;

			for (j = 0; j < CHUNK / 4096; j += 21) {
				ASSERT_EQ(4096, pread(fd, self->buf, 4096, at + j * 4096));
				ASSERT_EQ(0, memcmp(self->buf, self->before + at + j * 4096, 4096));
			}
			ASSERT_EQ(CHUNK, pread(fd, self->buf, CHUNK, at));
			ASSERT_EQ(0, memcmp(self->buf, self->before + at, CHUNK));
		}
	}
	close(fd);
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
	if (kmsg >= 0) {
		EXPECT_EQ(0, kmsg_splat(kmsg, line, sizeof(line))) TH_LOG("%s", line);
		close(kmsg);
	}
}

/* Reads that dm-delay device DM_STACK holds now, from its status; -1 if unknown. */
static int delayed_reads(void)
{
	unsigned long long start, len;
	int reads = -1;
	FILE *f;

	f = popen("dmsetup status " DM_STACK, "r");
	if (!f)
		return -1;
	if (fscanf(f, "%llu %llu delay %d", &start, &len, &reads) != 3)
		reads = -1;
	pclose(f);
	return reads;
}

/*
 * An image read of a chunk stored in a file is slow: the storage file
 * system sits on a dm-delay device that holds reads 3 s.  Chunks 0 to
 * `copied` - 1 are copied before it, to a named file of 8 MiB written
 * beforehand; then writes to the three chunks from `copied` on, which need
 * copies, must not wait for the read.  The image read is right, and so is
 * the image after.
 */
static void slow_image_read_then_a_copy(struct __test_metadata *_metadata,
					struct _test_data_setstorage *self, int copied)
{
	unsigned long long sectors = 3 * ORIG_SIZE / 2 / 512ULL;
	char cmd[240], dm[32], image[64];
	struct timespec t0, t1;
	int status, fd, i;
	pid_t reader, done;
	long ms;

	snprintf(cmd, sizeof(cmd), "dmsetup create " DM_STACK " --table '0 %llu delay %s 0 0'",
		 sectors, self->store.path);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, dm_path(DM_STACK, dm, sizeof(dm)));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s", dm,
		 MNT_EXT4, dm, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, run("dd if=/dev/zero of=" MNT_EXT4 "/storage bs=1M count=8 2>/dev/null"));
	sync();
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4 "/storage", 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, copied, 5500));
	/* A read of the image waits for the stores. */
	ASSERT_EQ(0, image_equals(self, self->before));
	sync();
	snprintf(cmd, sizeof(cmd), "0 %llu delay %s 0 3000 %s 0 0", sectors, self->store.path,
		 self->store.path);
	ASSERT_EQ(0, dm_reload(DM_STACK, cmd));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	reader = fork();
	ASSERT_LE(0, reader);
	if (!reader) {
		unsigned char *buf = aligned_alloc(4096, CHUNK);

		fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		if (!buf || fd < 0 || pread(fd, buf, CHUNK, CHUNK) != CHUNK)
			_exit(2);
		_exit(memcmp(buf, self->before + CHUNK, CHUNK) ? 1 : 0);
	}
	/* Until the read is held in dm-delay. */
	for (i = 0; i < 100 && delayed_reads() < 1; i++)
		usleep(20000);
	ASSERT_LT(0, delayed_reads()) TH_LOG("the image read never reached the storage");
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ASSERT_EQ(0, overwrite_chunks(self, copied, 3, 5600));
	clock_gettime(CLOCK_MONOTONIC, &t1);
	ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
	EXPECT_GT(1500, ms) TH_LOG("the write to the original waited %ld ms for the image read",
				   ms);
	done = waitpid(reader, &status, WNOHANG);
	EXPECT_EQ(0, done) TH_LOG("the image read ended before the write");
	if (!done)
		ASSERT_EQ(reader, waitpid(reader, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("the image read failed or was wrong");
	snprintf(cmd, sizeof(cmd), "0 %llu delay %s 0 0", sectors, self->store.path);
	ASSERT_EQ(0, dm_reload(DM_STACK, cmd));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
}

/*
 * The slow image read comes with 4 chunks copied: the copy worker sends
 * it to the file and goes on, so the write queued after it is not held up.
 * The file has room to spare, so no growth comes in between.
 */
TEST_F(setstorage, a_slow_image_read_from_the_file_holds_up_no_copy)
{
	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	slow_image_read_then_a_copy(_metadata, self, 4);
}

/*
 * The slow image read comes with 27 of the file's 32 chunks copied: the
 * next copy leaves 4 free, at most half of diff_storage_minimum, and the
 * file grows.  The file system waits for the image read before it grows
 * the file, and the copy still has room: the growth runs ahead, not in
 * its way.
 */
TEST_F(setstorage, a_growth_behind_a_slow_image_read_holds_up_no_copy)
{
	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	slow_image_read_then_a_copy(_metadata, self, 27);
}

/*
 * The device under the storage file system fails: the store of the next
 * chunk ends in error, so the snapshot breaks with -EIO and its image
 * fails reads; the original has every write.
 */
TEST_F(setstorage, storage_file_device_fails)
{
	unsigned char *data = self->buf;
	char image[64];
	int fd;

	if (fail_requests_available())
		SKIP(return, "fail_make_request is not available");
	ASSERT_EQ(0, mount_ext4(self));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 3 * ORIG_SIZE / 512));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	/* Two chunks stored, in a file grown to hold eight: no growth below. */
	ASSERT_EQ(0, overwrite_chunks(self, 0, 2, 4900));
	ASSERT_EQ(0, fail_requests(self->store.nr, "1", "-1"));
	ASSERT_EQ(0, overwrite_chunks(self, 2, 1, 5000));
	/* The store follows the write: fail until the snapshot says it broke. */
	ASSERT_EQ(0, next_event(self, blksnap_event_code_corrupted, 5000));
	stop_failing_requests(self->store.nr);
	EXPECT_EQ(EIO, ((struct blksnap_event_corrupted *)self->ev->data)->err_code);
	EXPECT_EQ(-EIO, info_error(self));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, pread(fd, data, CHUNK, 0));
	EXPECT_EQ(EIO, errno);
	close(fd);
	EXPECT_EQ(0, original_intact(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
}

/*
 * Device mapper between a filtered device and the storage: a file system
 * on a linear target over a filtered device, and the target given whole,
 * are refused with ELOOP (every store would come back to the filter); and
 * the filter is not attached below a file system that holds a storage
 * file (EBUSY).
 */
TEST_F(setstorage, storage_stacked_on_a_filtered_device_is_refused)
{
	char cmd[160], dm[32];
	struct blksnap_uuid id2;

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, dm_linear(DM_STACK, 3 * ORIG_SIZE / 2 / 512ULL, self->store.path, dm,
			       sizeof(dm)));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s", dm,
		 MNT_EXT4, dm, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	/* The filter below first. */
	ASSERT_EQ(0, blksnap_attach(self->store.fd));
	EXPECT_EQ(ELOOP, set_storage(self->ctl, &self->id, MNT_EXT4, 8192));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));
	/* The storage file first. */
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 8192));
	EXPECT_EQ(EBUSY, blksnap_attach(self->store.fd));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	/* With the file gone, attaching works again. */
	ASSERT_EQ(0, umount_soon(MNT_EXT4));
	ASSERT_EQ(0, blksnap_attach(self->store.fd));
	/* The target given whole, over the filtered device. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(ELOOP, set_storage(self->ctl, &id2, dm, 0));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
}

/*
 * A whole device given as storage, built on another: the filter is not
 * attached to the device below while the storage is held (stores would go
 * through it unseen, or come back to it), nor is it given as another
 * snapshot's ranges; both work again once the storage is gone.
 */
TEST_F(setstorage, storage_device_keeps_the_devices_below_it)
{
	struct blksnap_sectors range = { .offset = 0, .count = 2048 };
	char dm[32];
	struct blksnap_uuid id2;

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, dm_linear(DM_STACK, 3 * ORIG_SIZE / 2 / 512ULL, self->store.path, dm,
			       sizeof(dm)));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, dm, 0));
	EXPECT_EQ(EBUSY, blksnap_attach(self->store.fd));
	/* Nor are another snapshot's v3 ranges given there. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(EBUSY, storage_append(self->ctl, &id2, self->store.path, &range, 1));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, blksnap_attach(self->store.fd));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
}

/*
 * Storage on device mapper over a snapshot image, given whole or as a
 * file system on it: EINVAL, as storage on the image itself (storing a
 * chunk would write to an image, which stores chunks).
 */
TEST_F(setstorage, storage_stacked_on_an_image_is_refused)
{
	char cmd[200], dm[32], image[64];
	struct blksnap_uuid id2, id3;

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, self->store.path, 0));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, image_path(self, image, sizeof(image)));
	ASSERT_EQ(0, dm_linear(DM_STACK, ORIG_SIZE / 512ULL, image, dm, sizeof(dm)));
	ASSERT_EQ(0, snapshot_create(self->ctl, &id2));
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &id2, dm, 0));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s", dm,
		 MNT_EXT4, dm, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &id3));
	EXPECT_EQ(EINVAL, set_storage(self->ctl, &id3, MNT_EXT4, 8192));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id3));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &id2));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
	EXPECT_EQ(0, original_intact(self));
}

/*
 * The stack under a storage file changes after SET_STORAGE: the volume
 * holding its file system grows onto a device the filter is attached to
 * (lvextend does that with a table reload).  The take walks the stack
 * again and fails with ELOOP, before anything is frozen; the snapshot can
 * be destroyed as usual.
 */
TEST_F(setstorage, storage_stack_grown_onto_a_filtered_device_fails_the_take)
{
	unsigned long long half = 3 * ORIG_SIZE / 2 / 512ULL;
	char cmd[240], dm[32];

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, loop_create(&self->extra, 3 * ORIG_SIZE / 2));
	ASSERT_EQ(0, dm_linear(DM_STACK, half, self->extra.path, dm, sizeof(dm)));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s && mkdir -p %s && mount %s %s", dm,
		 MNT_EXT4, dm, MNT_EXT4);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, MNT_EXT4, 8192));
	/* Not below the storage yet: the filter attaches. */
	ASSERT_EQ(0, blksnap_attach(self->store.fd));
	snprintf(cmd, sizeof(cmd),
		 "printf '0 %llu linear %s 0\\n%llu %llu linear %s 0\\n' | dmsetup reload "
		 DM_STACK " && dmsetup resume " DM_STACK,
		 half, self->extra.path, half, half, self->store.path);
	ASSERT_EQ(0, run(cmd));
	EXPECT_EQ(ELOOP, snapshot_take(self->ctl, &self->id));
	/* What was recorded before still holds: the filter stays off it. */
	EXPECT_EQ(EBUSY, blksnap_attach(self->extra.fd));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, umount_soon(MNT_EXT4));
	/* And goes with the storage. */
	EXPECT_EQ(0, blksnap_attach(self->extra.fd));
	EXPECT_EQ(0, blksnap_detach(self->extra.fd));
	EXPECT_EQ(0, blksnap_detach(self->store.fd));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
	EXPECT_EQ(0, original_intact(self));
}

/* Points device-mapper device DM_STACK, `sectors` long, at `below`. */
static int dm_stack_reload(unsigned long long sectors, const char *below)
{
	char table[120];

	snprintf(table, sizeof(table), "0 %llu linear %s 0", sectors, below);
	return dm_reload(DM_STACK, table);
}

/*
 * A whole storage device whose table is reloaded after SET_STORAGE onto a
 * device that another snapshot keeps v3 ranges on, then onto another
 * snapshot's image: the take fails with the errno SET_STORAGE would have
 * given (EBUSY, then EINVAL), freezes nothing, and leaves the snapshot as
 * it was; pointed back at its own device, the storage takes.
 */
TEST_F(setstorage, storage_stack_changed_fails_the_take_with_its_errno)
{
	unsigned long long sectors = ORIG_SIZE / 512;
	struct blksnap_sectors range = { .offset = 0, .count = 2048 };
	char dm[32], image[64];
	struct blksnap_uuid ranges_id, image_id;

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	ASSERT_EQ(0, loop_create(&self->extra, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&self->more[0], ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&self->more[1], ORIG_SIZE));
	ASSERT_EQ(0, dm_linear(DM_STACK, sectors, self->store.path, dm, sizeof(dm)));
	ASSERT_EQ(0, set_storage(self->ctl, &self->id, dm, 0));

	/* Onto a device with another snapshot's ranges. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &ranges_id));
	ASSERT_EQ(0, storage_append(self->ctl, &ranges_id, self->extra.path, &range, 1));
	ASSERT_EQ(0, dm_stack_reload(sectors, self->extra.path));
	EXPECT_EQ(EBUSY, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &ranges_id));

	/* Onto another snapshot's image. */
	ASSERT_EQ(0, blksnap_attach(self->more[0].fd));
	ASSERT_EQ(0, snapshot_create(self->ctl, &image_id));
	ASSERT_EQ(0, snapshot_add(self->more[0].fd, &image_id));
	ASSERT_EQ(0, set_storage(self->ctl, &image_id, self->more[1].path, 0));
	ASSERT_EQ(0, snapshot_take(self->ctl, &image_id));
	ASSERT_EQ(0, image_path_of(self->more[0].fd, image, sizeof(image)));
	ASSERT_EQ(0, dm_stack_reload(sectors, image));
	EXPECT_EQ(EINVAL, snapshot_take(self->ctl, &self->id));
	/* Nothing of it was frozen: the original takes writes. */
	ASSERT_EQ(0, overwrite_chunks(self, 0, 1, 5300));
	memcpy(self->before, self->now, ORIG_SIZE);
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &image_id));
	EXPECT_EQ(0, blksnap_detach(self->more[0].fd));

	/* Back on its own device: the same snapshot takes and holds. */
	ASSERT_EQ(0, dm_stack_reload(sectors, self->store.path));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, overwrite_chunks(self, 0, ORIG_SIZE / CHUNK, 5400));
	EXPECT_EQ(0, image_equals(self, self->before));
	EXPECT_EQ(0, info_error(self));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_EQ(0, original_intact(self));
	EXPECT_EQ(0, run("dmsetup remove " DM_STACK));
}

/*
 * A stack deeper than the block layer follows cannot be checked: EMLINK,
 * told apart from ELOOP (a filtered device found in it).  The 17 devices
 * are made one by one: about 30 s in the test guest.
 */
TEST_F_TIMEOUT(setstorage, storage_stacked_too_deep_is_refused, 120)
{
	char cmd[200], below[32], top[32];
	int i;

	if (!have_dmsetup())
		SKIP(return, "dmsetup is not available");
	strcpy(below, self->store.path);
	self->chain = 1;
	for (i = 0; i < DM_CHAIN; i++) {
		snprintf(top, sizeof(top), DM_CHAIN_NAME, i);
		ASSERT_EQ(0, dm_linear(top, 3 * ORIG_SIZE / 2 / 512ULL, below, below,
				       sizeof(below)));
	}
	EXPECT_EQ(EMLINK, set_storage(self->ctl, &self->id, below, 0));
	/* One device less is within reach, and accepted. */
	snprintf(cmd, sizeof(cmd), "dmsetup remove " DM_CHAIN_NAME, DM_CHAIN - 1);
	ASSERT_EQ(0, run(cmd));
	snprintf(top, sizeof(top), DM_CHAIN_NAME, DM_CHAIN - 2);
	ASSERT_EQ(0, dm_path(top, below, sizeof(below)));
	EXPECT_EQ(0, set_storage(self->ctl, &self->id, below, 0));
	/*
	 * The bottom device reloaded onto one more: 17 again, which the take
	 * finds (EMLINK); the snapshot is destroyed as usual.
	 */
	snprintf(top, sizeof(top), DM_CHAIN_NAME, DM_CHAIN - 1);
	ASSERT_EQ(0, dm_linear(top, 3 * ORIG_SIZE / 2 / 512ULL, self->store.path, below,
			       sizeof(below)));
	snprintf(cmd, sizeof(cmd), "0 %llu linear %s 0", 3 * ORIG_SIZE / 2 / 512ULL, below);
	snprintf(top, sizeof(top), DM_CHAIN_NAME, 0);
	ASSERT_EQ(0, dm_reload(top, cmd));
	EXPECT_EQ(EMLINK, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	dm_chain_remove();
}

TEST_HARNESS_MAIN
