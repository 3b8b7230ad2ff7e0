/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the blksnap selftests: filter ioctls, the control
 * device and module handling, each returning 0 or the errno.
 */
#ifndef BLKSNAP_LIB_H
#define BLKSNAP_LIB_H

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>
#include <linux/loop.h>

#define BLKSNAP_CONTROL "/dev/" BLKSNAP_CTL

#ifndef ARRAY_SIZE
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#endif

static inline int sys_errno(int ret)
{
	return ret < 0 ? errno : 0;
}

static inline int filter_ioctl(int fd, unsigned long req, const char *name)
{
	struct blkfilter_name n = { 0 };

	strncpy((char *)n.name, name, sizeof(n.name) - 1);
	return sys_errno(ioctl(fd, req, &n));
}

static inline int blksnap_attach(int fd)
{
	return filter_ioctl(fd, BLKFILTER_ATTACH, "blksnap");
}

static inline int blksnap_detach(int fd)
{
	return filter_ioctl(fd, BLKFILTER_DETACH, "blksnap");
}

/* A BLKFILTER_CTL command; *ret gets the ioctl's value on success. */
static inline int blksnap_ctl(int fd, unsigned int cmd, void *opt,
			      unsigned int *optlen, int *ret)
{
	struct blkfilter_ctl ctl = {
		.cmd = cmd,
		.optlen = *optlen,
		.opt = (unsigned long)opt,
	};
	int r;

	strcpy((char *)ctl.name, "blksnap");
	r = ioctl(fd, BLKFILTER_CTL, &ctl);
	if (r < 0)
		return errno;
	*optlen = ctl.optlen;
	if (ret)
		*ret = r;
	return 0;
}

static inline int snapshot_create(int ctl_fd, struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_CREATE, id));
}

static inline int snapshot_destroy(int ctl_fd, const struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, id));
}

static inline int snapshot_add(int dev_fd, const struct blksnap_uuid *id)
{
	struct blksnap_snapshotadd arg = { .id = *id };
	unsigned int len = sizeof(arg);

	return blksnap_ctl(dev_fd, blkfilter_ctl_blksnap_snapshotadd, &arg,
			   &len, NULL);
}

/* Number of snapshots, or -errno: the size query of COLLECT (no array). */
static inline int snapshot_count(int ctl_fd)
{
	struct blksnap_snapshot_collect c = { .count = 0, .ids = 0 };

	if (ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c))
		return -errno;
	return (int)c.count;
}

/*
 * The /dev path of the device-mapper device `name`, found through sysfs:
 * without udev, /dev/mapper may not get its nodes.  0 if found.
 */
static inline int dm_path(const char *name, char *path, size_t len)
{
	char attr[64], buf[128];
	int i, fd, n;

	for (i = 0; i < 64; i++) {
		snprintf(attr, sizeof(attr), "/sys/block/dm-%d/dm/name", i);
		fd = open(attr, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		n = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (n <= 0)
			continue;
		buf[n] = '\0';
		buf[strcspn(buf, "\n")] = '\0';
		if (!strcmp(buf, name)) {
			snprintf(path, len, "/dev/dm-%d", i);
			return 0;
		}
	}
	return -1;
}

/*
 * Destroys every snapshot there is: for teardowns, so that a case that
 * stopped half-way leaves no snapshot holding devices for the next one.
 */
static inline void snapshot_destroy_all(int ctl_fd)
{
	struct blksnap_uuid ids[64];
	struct blksnap_snapshot_collect c = { .count = 64, .ids = (uintptr_t)ids };
	unsigned int i;

	if (ctl_fd < 0 || ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c))
		return;
	for (i = 0; i < c.count && i < 64; i++)
		snapshot_destroy(ctl_fd, &ids[i]);
}

/* Gives snapshot `id` `count` ranges of the block device at `path`. */
static inline int storage_append(int ctl_fd, const struct blksnap_uuid *id, const char *path,
				 const struct blksnap_sectors *ranges, unsigned int count)
{
	struct blksnap_snapshot_append_storage a = {
		.id = *id,
		.bdev_path = (uintptr_t)path,
		.bdev_path_size = strlen(path) + 1,
		.count = count,
		.ranges = (uintptr_t)ranges,
	};

	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a));
}

static inline int snapshot_take(int ctl_fd, const struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_TAKE, id));
}

/*
 * Waits up to `timeout_ms` for the next event of snapshot `id`, into `ev`;
 * 0 or the errno.  Only the input fields are set: the rest of `ev` is left
 * as the caller filled it.
 */
static inline int snapshot_wait_event(int ctl_fd, const struct blksnap_uuid *id,
				      unsigned int timeout_ms, struct blksnap_snapshot_event *ev)
{
	ev->id = *id;
	ev->timeout_ms = timeout_ms;
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, ev));
}

/* Reads the first `len` bytes of block device `path`, with O_DIRECT. */
static inline int read_whole(const char *path, unsigned char *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	int ok;

	if (fd < 0)
		return -1;
	ok = pread(fd, buf, len, 0) == (ssize_t)len;
	close(fd);
	return ok ? 0 : -1;
}

/*
 * Creates snapshot `id` of the device open as `fd`, gives it the first
 * `sectors` sectors of block device `store`, and takes it.
 */
static inline int snapshot_simple(int ctl_fd, int fd, struct blksnap_uuid *id,
				  const char *store, unsigned long long sectors)
{
	struct blksnap_sectors all = { .offset = 0, .count = sectors };

	if (snapshot_create(ctl_fd, id) || snapshot_add(fd, id) ||
	    storage_append(ctl_fd, id, store, &all, 1))
		return -1;
	return snapshot_take(ctl_fd, id);
}

/* Reproducible data: the same seed gives the same bytes. */
static inline void fill_random(unsigned char *buf, size_t len, unsigned int seed)
{
	size_t i;

	srandom(seed);
	for (i = 0; i < len; i += 4) {
		uint32_t r = random();

		memcpy(buf + i, &r, len - i < 4 ? len - i : 4);
	}
}

/* Writes all of buf at off and makes it stable; 0 or -1. */
static inline int pwrite_all(int fd, const void *buf, size_t len, off_t off)
{
	return pwrite(fd, buf, len, off) == (ssize_t)len && fsync(fd) == 0 ? 0 : -1;
}

/* Writes a string to a sysfs, debugfs or configfs file; 0 or -1. */
static inline int write_str(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);
	int ok;

	if (fd < 0)
		return -1;
	ok = write(fd, val, strlen(val)) == (ssize_t)strlen(val);
	close(fd);
	return ok ? 0 : -1;
}

static inline int run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The module's reference count, or -1 if it is not loaded. */
static inline int module_refcnt(void)
{
	FILE *f = fopen("/sys/module/blksnap/refcnt", "r");
	int n = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

/*
 * The kernel log from now on: a descriptor of /dev/kmsg at its end, or -1.
 * kmsg_splat() then finds what a test made the kernel report.
 */
static inline int kmsg_mark(void)
{
	int fd = open("/dev/kmsg", O_RDONLY | O_NONBLOCK | O_CLOEXEC);

	if (fd >= 0 && lseek(fd, 0, SEEK_END) < 0) {
		close(fd);
		fd = -1;
	}
	return fd;
}

/*
 * 1 if the kernel logged a splat (BUG, WARNING, a lockdep report, an oops)
 * since kmsg_mark(); its line goes to `line`.  0 if not.
 */
static inline int kmsg_splat(int fd, char *line, size_t len)
{
	static const char *const splats[] = {
		"BUG:", "WARNING:", "Call Trace", "Oops", "Kernel panic",
		"possible circular locking", "rust_panic",
	};
	char rec[2048];
	ssize_t n;
	size_t i;

	for (;;) {
		n = read(fd, rec, sizeof(rec) - 1);
		if (n < 0 && errno == EPIPE)
			continue;	/* records overwritten: go on */
		if (n <= 0)
			return 0;
		rec[n] = 0;
		for (i = 0; i < ARRAY_SIZE(splats); i++) {
			if (strstr(rec, splats[i])) {
				n = strnlen(rec, len - 1);
				memcpy(line, rec, n);
				line[n] = 0;
				return 1;
			}
		}
	}
}

/*
 * Self-describing 4 KiB blocks for tests with concurrent writers: each holds
 * its block number, a generation and bytes derived from both, so a block
 * read back tells which write it came from, or that it is torn.
 */
#define BLK 4096

static inline void stamp(unsigned char *b, uint32_t block, uint32_t gen)
{
	unsigned int i;

	memcpy(b, &block, 4);
	memcpy(b + 4, &gen, 4);
	for (i = 8; i < BLK; i++)
		b[i] = (unsigned char)(block * 31 + gen * 7 + i);
}

/* The generation of a stamped block, or -1 if it is not a whole stamp. */
static inline int64_t read_stamp(const unsigned char *b, uint32_t block)
{
	unsigned char want[BLK];
	uint32_t blk, gen;

	memcpy(&blk, b, 4);
	memcpy(&gen, b + 4, 4);
	if (blk != block)
		return -1;
	stamp(want, block, gen);
	return memcmp(want, b, BLK) ? -1 : gen;
}

/* A loop device over a sparse file in /tmp, with direct I/O. */
struct loopdev {
	int nr;
	int fd;		/* O_DIRECT */
	char path[32];
	char img[40];
	unsigned long long size;
};

static inline int loop_create(struct loopdev *l, unsigned long long size)
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
	fd = open(l->path, O_RDWR | O_DIRECT | O_CLOEXEC);
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

static inline void loop_destroy(struct loopdev *l)
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

/*
 * Writes an MBR with two 8 MiB partitions (from sector 2048 and 18432) to
 * loop device `l` and lets the kernel scan it: /dev/loopNp1 and p2.
 */
static inline int loop_partition(struct loopdev *l)
{
	struct loop_info64 info;
	unsigned char *mbr = aligned_alloc(4096, 4096);
	uint32_t start[2] = { 2048, 2048 + 16384 }, count = 16384;
	char path[48];
	int i, err = -1;

	if (!mbr)
		return -1;
	memset(mbr, 0, 4096);
	for (i = 0; i < 2; i++) {
		unsigned char *e = mbr + 446 + 16 * i;

		e[4] = 0x83;
		memcpy(e + 8, &start[i], 4);
		memcpy(e + 12, &count, 4);
	}
	mbr[510] = 0x55;
	mbr[511] = 0xaa;
	if (pwrite_all(l->fd, mbr, 4096, 0) || ioctl(l->fd, LOOP_GET_STATUS64, &info))
		goto out;
	info.lo_flags |= LO_FLAGS_PARTSCAN;
	if (ioctl(l->fd, LOOP_SET_STATUS64, &info))
		goto out;
	snprintf(path, sizeof(path), "%sp2", l->path);
	for (i = 0; i < 200 && access(path, F_OK); i++)
		usleep(10000);
	err = access(path, F_OK);
out:
	free(mbr);
	return err;
}

/* null_blk devices made through configfs. */
#define NULLB_DIR "/sys/kernel/config/nullb/"

static inline int nullb_set(const char *name, const char *attr, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), NULLB_DIR "%s/%s", name, attr);
	return write_str(path, val);
}

/* Mounts configfs if need be; 0 if null_blk disks can be made there. */
static inline int nullb_available(void)
{
	if (access(NULLB_DIR, F_OK))
		run("mount -t configfs none /sys/kernel/config");
	return access(NULLB_DIR, W_OK);
}

/* The path of the snapshot image of the device open as `fd`. */
static inline int image_path_of(int fd, char *buf, size_t len)
{
	struct stat st;

	if (fstat(fd, &st))
		return -1;
	snprintf(buf, len, "/dev/blksnap-image_%u:%u", major(st.st_rdev), minor(st.st_rdev));
	return 0;
}

/*
 * A memory-backed null_blk disk /dev/NAME of `mb` MiB; with `nsec`, every
 * bio completes that many nanoseconds late.
 */
static inline int nullb_create(const char *name, int mb, const char *nsec)
{
	char path[128], size[16];

	snprintf(path, sizeof(path), NULLB_DIR "%s", name);
	snprintf(size, sizeof(size), "%d", mb);
	if (mkdir(path, 0755) && errno != EEXIST)
		return -1;
	if (nullb_set(name, "size", size) || nullb_set(name, "memory_backed", "1"))
		return -1;
	if (nsec && (nullb_set(name, "irqmode", "2") ||
		     nullb_set(name, "completion_nsec", nsec)))
		return -1;
	return nullb_set(name, "power", "1");
}

/* Deletes the disk (power off), then its configfs entry. */
static inline void nullb_delete(const char *name)
{
	char path[128];

	snprintf(path, sizeof(path), NULLB_DIR "%s", name);
	if (access(path, F_OK))
		return;
	nullb_set(name, "power", "0");
	rmdir(path);
}

/*
 * The end of a fixture with an original and a storage null_blk: the
 * original detached and closed, every snapshot destroyed, the control
 * device closed, both disks deleted.  Descriptors below 0 are skipped.
 */
static inline void nullb_pair_teardown(int ctl_fd, int orig_fd, const char *orig,
				       const char *store)
{
	if (orig_fd >= 0) {
		blksnap_detach(orig_fd);
		close(orig_fd);
	}
	snapshot_destroy_all(ctl_fd);
	if (ctl_fd >= 0)
		close(ctl_fd);
	nullb_delete(orig);
	nullb_delete(store);
}

#define FAIL_DIR "/sys/kernel/debug/fail_make_request/"

/* 0 if fail_make_request can be used (CONFIG_FAIL_MAKE_REQUEST, debugfs). */
static inline int fail_requests_available(void)
{
	return access(FAIL_DIR "probability", W_OK);
}

/* Fails bios to loop device nr: every `interval`th one, `times` times. */
static inline int fail_requests(int nr, const char *interval, const char *times)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/block/loop%d/make-it-fail", nr);
	return write_str(FAIL_DIR "verbose", "0") || write_str(FAIL_DIR "probability", "100") ||
	       write_str(FAIL_DIR "interval", interval) || write_str(FAIL_DIR "times", times) ||
	       write_str(path, "1");
}

static inline void stop_failing_requests(int nr)
{
	char path[64];

	snprintf(path, sizeof(path), "/sys/block/loop%d/make-it-fail", nr);
	write_str(path, "0");
	write_str(FAIL_DIR "times", "1");
	write_str(FAIL_DIR "interval", "1");
	write_str(FAIL_DIR "probability", "0");
}

/*
 * Fails the running case if the kernel logged a splat since kmsg_mark()
 * gave `kmsg`, and closes it; for fixture teardowns.
 */
#define EXPECT_NO_SPLAT(kmsg) do {						\
	char __line[256];							\
										\
	if ((kmsg) >= 0 && kmsg_splat((kmsg), __line, sizeof(__line))) {	\
		TH_LOG("kernel log: %s", __line);				\
		_metadata->exit_code = KSFT_FAIL;				\
	}									\
	if ((kmsg) >= 0)							\
		close(kmsg);							\
} while (0)

#endif /* BLKSNAP_LIB_H */
