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
#include <signal.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

/* Under emulation with a debug kernel, data checks take their time. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)

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

	return storage_append(ctl, id, s->path, &r, 1);
}

static int take(int ctl, const struct blksnap_uuid *id)
{
	return snapshot_take(ctl, id);
}

/*
 * The i386 build (blksnap_snapshot_32) runs the cases that pass each
 * structure of the interface through the compat path; the cases left out
 * of it (#ifndef __i386__) test the module, not the ABI, and would only run
 * the same code again, for minutes under emulation.
 */
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

/*
 * Creates originals 0 to n - 1 that do not exist yet: attached, filled with
 * their own pseudo-random content.  The fixture makes only the first; about
 * four seconds each under emulation (page faults and the write), so the
 * cases that need more ask for them.
 */
static void use_originals(struct __test_metadata *_metadata, struct loopdev *orig,
			  unsigned char **before, int n)
{
	int i;

	for (i = 0; i < n; i++) {
		if (orig[i].fd >= 0)
			continue;
		ASSERT_EQ(0, loop_create(&orig[i], ORIG_SIZE));
		before[i] = aligned_alloc(4096, ORIG_SIZE);
		ASSERT_NE(NULL, before[i]);
		fill_random(before[i], ORIG_SIZE, 1000 + i);
		ASSERT_EQ(0, blksnap_attach(orig[i].fd));
		ASSERT_EQ(0, pwrite_all(orig[i].fd, before[i], ORIG_SIZE, 0));
	}
}

FIXTURE_SETUP(snap)
{
	int i;

	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	for (i = 0; i < 3; i++) {
		self->orig[i].fd = -1;
		self->before[i] = NULL;
	}
	use_originals(_metadata, self->orig, self->before, 1);
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

#ifndef __i386__
TEST_F(snap, three_devices_coherent)
{
	char image[64];
	int i;

	use_originals(_metadata, self->orig, self->before, 3);
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
#endif

TEST_F(snap, take_errors)
{
	struct blksnap_uuid unknown = { .b = { 0x77 } };

	use_originals(_metadata, self->orig, self->before, 2);
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

#ifndef __i386__
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
#endif

#ifndef __i386__
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
#endif

#ifndef __i386__
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
#endif

#ifndef __i386__
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
#endif

/* Next event within timeout_ms: 0 or the errno; fills *ev. */
static unsigned long long requested(const struct blksnap_snapshot_event *ev)
{
	struct blksnap_event_low_free_space d;

	memcpy(&d, ev->data, sizeof(d));
	return d.requested_nr_sect;
}

TEST_F(snap, events_initial_request_and_timeout)
{
	struct blksnap_snapshot_event *ev = malloc(sizeof(*ev));
	struct blksnap_uuid unknown = { .b = { 0x33 } };

	ASSERT_NE(NULL, ev);
	ASSERT_EQ(0, snapshot_wait_event(self->ctl, &self->id, 100, ev));
	EXPECT_EQ(blksnap_event_code_low_free_space, ev->code);
	EXPECT_EQ(2097152, requested(ev));
	EXPECT_LE(0, ev->time_label);
	EXPECT_EQ(ENOENT, snapshot_wait_event(self->ctl, &self->id, 50, ev));
	EXPECT_EQ(ESRCH, snapshot_wait_event(self->ctl, &unknown, 0, ev));
	EXPECT_EQ(EFAULT, sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, NULL)));
	free(ev);
}

#ifndef __i386__
static void on_signal(int sig)
{
}

TEST_F(snap, events_wait_interrupted)
{
	struct blksnap_snapshot_event *ev = malloc(sizeof(*ev));
	struct sigaction sa = { .sa_handler = on_signal };
	int status;
	pid_t pid;

	ASSERT_NE(NULL, ev);
	ASSERT_EQ(0, snapshot_wait_event(self->ctl, &self->id, 100, ev));
	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		sigaction(SIGUSR1, &sa, NULL);
		_exit(snapshot_wait_event(self->ctl, &self->id, 20000, ev) == EINTR ? 0 : 1);
	}
	usleep(300000);
	kill(pid, SIGUSR1);
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	free(ev);
}
#endif

/*
 * A snapshot whose storage grows on request outlives its first storage.
 * The module is reloaded to ask for 4096 sectors at a time, so that the
 * "less than half of that left" rule is what triggers the requests.
 */
TEST(storage_grows_on_request)
{
	struct blksnap_snapshot_event *ev = malloc(sizeof(*ev));
	unsigned char *before = aligned_alloc(4096, ORIG_SIZE);
	unsigned char *img = aligned_alloc(4096, ORIG_SIZE);
	unsigned char *page = aligned_alloc(4096, 4096);
	struct loopdev orig = { .fd = -1 }, store = { .fd = -1 };
	unsigned long long given;
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	struct blksnap_uuid id;
	char image[64];
	int ctl, i, events = 0;

	ASSERT_NE(NULL, ev);
	ASSERT_NE(NULL, before);
	ASSERT_NE(NULL, img);
	ASSERT_NE(NULL, page);
	run("rmmod blksnap 2>/dev/null");
	ASSERT_EQ(0, run("modprobe blksnap diff_storage_minimum=4096"));
	ASSERT_EQ(0, loop_create(&orig, ORIG_SIZE));
	ASSERT_EQ(0, loop_create(&store, 32 * MIB));
	fill_random(before, ORIG_SIZE, 4242);
	ASSERT_EQ(0, pwrite_all(orig.fd, before, ORIG_SIZE, 0));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	ASSERT_EQ(0, blksnap_attach(orig.fd));
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	ASSERT_EQ(0, snapshot_add(orig.fd, &id));
	ASSERT_EQ(0, snapshot_wait_event(ctl, &id, 100, ev));
	ASSERT_EQ(blksnap_event_code_low_free_space, ev->code);
	EXPECT_EQ(4096, requested(ev));
	/* What was asked, as a v3 agent answers: no new request at once. */
	given = 4096;
	ASSERT_EQ(0, append_all(ctl, &id, &store, 0, given));
	EXPECT_EQ(ENOENT, snapshot_wait_event(ctl, &id, 0, ev));
	ASSERT_EQ(0, take(ctl, &id));

	/* One 4 KiB write into each of 40 chunks: 40 chunks of storage. */
	for (i = 0; i < 40; i++) {
		off_t off = (off_t)i * 512 * 1024;

		memset(page, i + 1, 4096);
		ASSERT_EQ(0, pwrite_all(orig.fd, page, 4096, off));
		if (snapshot_wait_event(ctl, &id, 0, ev) == 0) {
			ASSERT_EQ(blksnap_event_code_low_free_space, ev->code);
			EXPECT_EQ(4096, requested(ev));
			ASSERT_EQ(0, append_all(ctl, &id, &store, given, 4096));
			given += 4096;
			events++;
		}
	}
	/*
	 * Half of 4096 left of what was asked, each answered in full: after
	 * the 4th, 12th, 20th, 28th and 36th chunk of 512 sectors.
	 */
	EXPECT_EQ(5, events);
	ASSERT_EQ(0, blksnap_ctl(orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	EXPECT_EQ(0, info.error_code);
	image_path(&orig, image, sizeof(image));
	ASSERT_EQ(0, read_device(image, img, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(img, before, ORIG_SIZE));

	EXPECT_EQ(0, snapshot_destroy(ctl, &id));
	EXPECT_EQ(0, blksnap_detach(orig.fd));
	close(ctl);
	loop_destroy(&orig);
	loop_destroy(&store);
	EXPECT_EQ(0, run("rmmod blksnap && modprobe blksnap"));
	free(page);
	free(img);
	free(before);
	free(ev);
}

#ifndef __i386__
/* Overflow sends the corrupted event naming the device and ENOSPC. */
TEST_F(snap, overflow_event)
{
	struct blksnap_snapshot_event *ev = malloc(sizeof(*ev));
	struct blksnap_event_corrupted c;
	struct stat st;
	int found = 0;

	ASSERT_NE(NULL, ev);
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 1024));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	scribble(_metadata, self->orig[0].fd, self->now, 17, 30);
	while (!found && snapshot_wait_event(self->ctl, &self->id, 100, ev) == 0) {
		if (ev->code != blksnap_event_code_corrupted)
			continue;
		found = 1;
		memcpy(&c, ev->data, sizeof(c));
		ASSERT_EQ(0, fstat(self->orig[0].fd, &st));
		EXPECT_EQ(major(st.st_rdev), c.dev_id_mj);
		EXPECT_EQ(minor(st.st_rdev), c.dev_id_mn);
		EXPECT_EQ(ENOSPC, c.err_code);
	}
	EXPECT_TRUE(found);
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
	free(ev);
}
#endif

/* The change map the last take of orig[0] saw; returns its block count. */
static int read_map(struct __test_metadata *_metadata, int fd, unsigned char *map,
		    unsigned int size, int number)
{
	struct blksnap_cbtinfo info;
	struct blksnap_cbtmap m = { .offset = 0, .length = size, .buffer = (uintptr_t)map };
	unsigned int len = sizeof(info);
	int ret = -1;

	if (blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtinfo, &info, &len, NULL) ||
	    info.changes_number != number || info.block_count > size)
		return -1;
	len = sizeof(m);
	if (blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtmap, &m, &len, &ret))
		return -1;
	return ret;
}

/* Restarts self->id as a new snapshot of orig[0] and takes it. */
static int retake(struct __test_metadata *_metadata, struct _test_data_snap *self)
{
	snapshot_destroy(self->ctl, &self->id);
	if (snapshot_create(self->ctl, &self->id) || snapshot_add(self->orig[0].fd, &self->id) ||
	    append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9))
		return -1;
	return take(self->ctl, &self->id);
}

#define TRACK_BLOCK 65536

/*
 * Writes to the image land in the image only, read back after reopening,
 * leave the original alone and mark both change maps.
 */
TEST_F(snap, writable_image)
{
	static const struct { off_t off; size_t len; } w[] = {
		{ 5 * TRACK_BLOCK + 4096, 4096 },	/* inside one chunk */
		{ 200 * TRACK_BLOCK - 8192, 16384 },	/* across two chunks */
		{ 64 * TRACK_BLOCK, 4 * TRACK_BLOCK },	/* a whole chunk */
	};
	unsigned char written[ORIG_SIZE / TRACK_BLOCK] = { 0 };
	unsigned char *img = aligned_alloc(4096, ORIG_SIZE);
	unsigned char map[ORIG_SIZE / TRACK_BLOCK];
	char image[64];
	unsigned int i, b;
	int fd, n;

	ASSERT_NE(NULL, img);
	/* Two takes, so that the map of the second shows changes as 2. */
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	ASSERT_EQ(0, retake(_metadata, self));

	image_path(&self->orig[0], image, sizeof(image));
	memcpy(img, self->before[0], ORIG_SIZE);
	fd = open(image, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	for (i = 0; i < ARRAY_SIZE(w); i++) {
		fill_random(self->scratch, w[i].len, 300 + i);
		ASSERT_EQ(0, pwrite_all(fd, self->scratch, w[i].len, w[i].off));
		memcpy(img + w[i].off, self->scratch, w[i].len);
		for (b = w[i].off / TRACK_BLOCK; b <= (w[i].off + w[i].len - 1) / TRACK_BLOCK; b++)
			written[b] = 1;
	}
	close(fd);
	/* The original changes too, over and next to what the image got. */
	scribble(_metadata, self->orig[0].fd, self->now, 23, 20);

	for (i = 0; i < 2; i++) {
		ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
		EXPECT_EQ(0, memcmp(self->scratch, img, ORIG_SIZE));
	}
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));

	/* The map of this snapshot: what the image got carries its number. */
	n = read_map(_metadata, self->orig[0].fd, map, sizeof(map), 2);
	ASSERT_EQ(ORIG_SIZE / TRACK_BLOCK, n);
	for (b = 0; b < (unsigned int)n; b++) {
		EXPECT_EQ(written[b] ? 2 : 1, map[b])
			TH_LOG("block %u", b);
	}

	/* The next snapshot's map: image writes and original writes alike. */
	ASSERT_EQ(0, retake(_metadata, self));
	n = read_map(_metadata, self->orig[0].fd, map, sizeof(map), 3);
	ASSERT_EQ(ORIG_SIZE / TRACK_BLOCK, n);
	for (b = 0; b < (unsigned int)n; b++) {
		int changed = memcmp(self->now + (size_t)b * TRACK_BLOCK,
				     self->before[0] + (size_t)b * TRACK_BLOCK, TRACK_BLOCK);

		EXPECT_EQ(written[b] || changed ? 3 : 1, map[b]) TH_LOG("block %u", b);
	}
	free(img);
}

#ifndef __i386__
/*
 * The reviewers' use-after-free: the snapshot is destroyed while its image
 * is mounted and being written.  The writer gets errors, the file system
 * unmounts, and the original never sees any of it.
 */
TEST_F(snap, destroy_while_image_mounted_and_written)
{
	char cmd[256], image[64], started;
	int status, ready[2];
	pid_t pid;

	if (run("command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null"))
		SKIP(return, "mkfs.ext4 or e2fsck missing");
	ASSERT_EQ(0, pipe(ready));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s", self->orig[0].path);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->now, ORIG_SIZE));
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, self->store.size >> 9));
	ASSERT_EQ(0, take(self->ctl, &self->id));

	image_path(&self->orig[0], image, sizeof(image));
	ASSERT_EQ(0, run("mkdir -p /tmp/snapw"));
	snprintf(cmd, sizeof(cmd), "mount -t ext4 %s /tmp/snapw", image);
	ASSERT_EQ(0, run(cmd));

	pid = fork();
	ASSERT_LE(0, pid);
	if (pid == 0) {
		unsigned char *b = aligned_alloc(4096, 65536);
		int fd = open("/tmp/snapw/data", O_CREAT | O_RDWR | O_CLOEXEC, 0644);
		unsigned int k;

		close(ready[0]);
		if (fd < 0 || !b)
			_exit(2);
		alarm(120);
		memset(b, 0xc3, 65536);
		/* Rewrite 4 MiB over and over until the image goes away. */
		for (k = 0;; k++) {
			if (pwrite(fd, b, 65536, (k % 64) * 65536) != 65536 || fsync(fd))
				_exit(k ? 0 : 3);
			/* Destroy only once the image is being written. */
			if (k == 16 && write(ready[1], "w", 1) != 1)
				_exit(4);
		}
	}
	close(ready[1]);
	ASSERT_EQ(1, read(ready[0], &started, 1));
	close(ready[0]);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	EXPECT_EQ(0, run("umount /tmp/snapw"));
	EXPECT_NE(0, access(image, F_OK));

	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", self->orig[0].path);
	EXPECT_EQ(0, run(cmd));
}
#endif

#ifndef __i386__
/*
 * The reviewers' double add: a second snapshot cannot take a device that
 * is in a taken one, and creating and destroying it leaves the first whole.
 */
TEST_F(snap, second_snapshot_of_same_device)
{
	struct blksnap_uuid other;
	char image[64];

	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 32768));
	ASSERT_EQ(0, take(self->ctl, &self->id));

	ASSERT_EQ(0, snapshot_create(self->ctl, &other));
	EXPECT_EQ(EBUSY, snapshot_add(self->orig[0].fd, &other));
	ASSERT_EQ(0, append_all(self->ctl, &other, &self->store, 32768, 16384));
	EXPECT_EQ(ENODEV, take(self->ctl, &other));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &other));

	scribble(_metadata, self->orig[0].fd, self->now, 29, 20);
	image_path(&self->orig[0], image, sizeof(image));
	ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->before[0], ORIG_SIZE));
	ASSERT_EQ(0, read_device(self->orig[0].path, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->now, ORIG_SIZE));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
}
#endif

#ifndef __i386__
/* Two snapshots of disjoint devices live side by side, each coherent. */
TEST_F(snap, two_snapshots_on_disjoint_devices)
{
	struct blksnap_uuid other;
	char image[64];
	int i;

	use_originals(_metadata, self->orig, self->before, 2);
	ASSERT_EQ(0, snapshot_create(self->ctl, &other));
	ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig[1].fd, &other));
	ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 32768));
	ASSERT_EQ(0, append_all(self->ctl, &other, &self->store, 32768, 32768));
	ASSERT_EQ(0, take(self->ctl, &self->id));
	ASSERT_EQ(0, take(self->ctl, &other));
	for (i = 0; i < 2; i++) {
		fill_random(self->scratch, 4 * MIB, 70 + i);
		ASSERT_EQ(0, pwrite_all(self->orig[i].fd, self->scratch, 4 * MIB, 8 * MIB));
	}
	for (i = 0; i < 2; i++) {
		image_path(&self->orig[i], image, sizeof(image));
		ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
		EXPECT_EQ(0, memcmp(self->scratch, self->before[i], ORIG_SIZE))
			TH_LOG("image %d", i);
	}
	/* Destroying one leaves the other whole. */
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &other));
	image_path(&self->orig[0], image, sizeof(image));
	ASSERT_EQ(0, read_device(image, self->scratch, ORIG_SIZE));
	EXPECT_EQ(0, memcmp(self->scratch, self->before[0], ORIG_SIZE));
}
#endif

#ifndef __i386__
/*
 * Change numbers are bytes: after the snapshot numbered 255 the map starts
 * over in a new generation, so that old and new numbers never mix.
 */
TEST_F(snap, generation_restarts_after_255_takes)
{
	struct blksnap_cbtinfo first, info;
	unsigned int len;
	int n;

	for (n = 1; n <= 256; n++) {
		if (n > 1)
			ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
		ASSERT_EQ(0, snapshot_add(self->orig[0].fd, &self->id));
		ASSERT_EQ(0, append_all(self->ctl, &self->id, &self->store, 0, 2048));
		ASSERT_EQ(0, take(self->ctl, &self->id));
		len = sizeof(info);
		ASSERT_EQ(0, blksnap_ctl(self->orig[0].fd, blkfilter_ctl_blksnap_cbtinfo, &info,
					 &len, NULL));
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->id));
		if (n == 1)
			first = info;
		if (n <= 255) {
			ASSERT_EQ(n, info.changes_number);
			ASSERT_EQ(0, memcmp(&first.generation_id, &info.generation_id, 16));
		}
	}
	/* The 256th snapshot is the first of a new generation. */
	EXPECT_EQ(1, info.changes_number);
	EXPECT_NE(0, memcmp(&first.generation_id, &info.generation_id, 16));
	/* The teardown destroys self->id once more: give it one. */
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
}
#endif

TEST_HARNESS_MAIN
