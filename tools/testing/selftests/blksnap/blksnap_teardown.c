// SPDX-License-Identifier: GPL-2.0
/*
 * Teardown races: disks deleted under a taken snapshot while I/O runs, and
 * an image unmounted while its snapshot is destroyed.
 *
 * The disks are null_blk devices made through configfs (memory backed, so
 * their data can be checked); powering one off deletes its gendisk at once,
 * whoever has it open.  When the original goes, its writer and the image
 * readers get errors, never wrong data, and the snapshot can still be
 * destroyed.  When the difference storage goes, the writer on the original
 * never notices: every write lands, the snapshot is corrupted, and its image
 * fails with EIO.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
#define DEV_MB 16
#define DEV_SIZE (DEV_MB * MIB)
#define NR_BLOCKS (DEV_SIZE / BLK)
#define CHUNK (256 * 1024)	/* blksnap's chunk for a 16 MiB device */
#define RACES 8

FIXTURE(gone) {
	int ctl, orig;
	struct blksnap_uuid id;
	unsigned char *before;	/* the original at the take */
	unsigned char *mirror;	/* shared: what the writer wrote */
	char image[64];
};

FIXTURE_SETUP(gone)
{
	struct blksnap_sectors all = { .offset = 0, .count = DEV_SIZE >> 9 };
	struct stat st;

	self->ctl = -1;
	self->orig = -1;
	if (access(NULLB_DIR, F_OK))
		run("mount -t configfs none /sys/kernel/config");
	if (access(NULLB_DIR, W_OK))
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create("bsnap_orig", DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create("bsnap_store", DEV_MB, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open("/dev/bsnap_orig", O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	self->before = aligned_alloc(4096, DEV_SIZE);
	self->mirror = mmap(NULL, DEV_SIZE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS,
			    -1, 0);
	ASSERT_NE(NULL, self->before);
	ASSERT_NE(MAP_FAILED, self->mirror);
	fill_random(self->before, DEV_SIZE, 81);
	ASSERT_EQ(0, pwrite_all(self->orig, self->before, DEV_SIZE, 0));
	memcpy(self->mirror, self->before, DEV_SIZE);
	ASSERT_EQ(0, blksnap_attach(self->orig));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->id));
	ASSERT_EQ(0, snapshot_add(self->orig, &self->id));
	ASSERT_EQ(0, storage_append(self->ctl, &self->id, "/dev/bsnap_store", &all, 1));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->id));
	ASSERT_EQ(0, fstat(self->orig, &st));
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
}

FIXTURE_TEARDOWN(gone)
{
	snapshot_destroy(self->ctl, &self->id);
	if (self->orig >= 0) {
		blksnap_detach(self->orig);
		close(self->orig);
	}
	nullb_delete("bsnap_orig");
	nullb_delete("bsnap_store");
	if (self->ctl >= 0)
		close(self->ctl);
	free(self->before);
	if (self->mirror && self->mirror != MAP_FAILED)
		munmap(self->mirror, DEV_SIZE);
}

/*
 * Writes 4 KiB into every chunk in turn, over and over, mirroring each
 * write that succeeded.  Halfway through the first pass it tells the parent
 * through `ready`; if `go` is open, it then rewrites the chunks already
 * copied until the parent writes to `go`, so that the second half is copied
 * only after whatever the parent did.  Exits 0 after `passes` passes, 1 on
 * a write error.
 */
static int writer(struct _test_data_gone *self, int ready, int go, int passes)
{
	unsigned char *b = aligned_alloc(4096, BLK);
	int fd = open("/dev/bsnap_orig", O_RDWR | O_DIRECT | O_CLOEXEC);
	int pass, c, k;
	char x;

	if (fd < 0 || !b)
		return 3;
	alarm(120);
	for (pass = 0; pass < passes; pass++) {
		for (c = 0; c < DEV_SIZE / CHUNK; c++) {
			off_t off = (off_t)c * CHUNK + (pass % 64) * BLK;

			if (pass == 0 && c == DEV_SIZE / CHUNK / 2) {
				if (write(ready, "x", 1) != 1)
					return 4;
				for (k = 0; go >= 0 && read(go, &x, 1) != 1; k++) {
					off_t again = (off_t)(k % c) * CHUNK + BLK;

					fill_random(b, BLK, 500000 + k);
					if (pwrite(fd, b, BLK, again) != BLK)
						return 1;
					memcpy(self->mirror + again, b, BLK);
					usleep(1000);
				}
			}
			fill_random(b, BLK, pass * 1000 + c);
			if (pwrite(fd, b, BLK, off) != BLK)
				return 1;
			memcpy(self->mirror + off, b, BLK);
			usleep(2000);
		}
	}
	return 0;
}

/*
 * Reads the whole image over and over until a read fails; every read that
 * succeeds must show the original at the take.  Exits 0 once reads fail
 * with EIO or ENXIO, 1 on wrong data, 2 if reads never fail.
 */
static int image_reader(struct _test_data_gone *self)
{
	unsigned char *b = aligned_alloc(4096, MIB);
	int fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	int i;
	off_t off;

	if (fd < 0 || !b)
		return 3;
	alarm(120);
	for (i = 0; i < 10000; i++) {
		for (off = 0; off < (off_t)DEV_SIZE; off += MIB) {
			ssize_t n = pread(fd, b, MIB, off);

			if (n < 0)
				return errno == EIO || errno == ENXIO ? 0 : 4;
			if (n != MIB || memcmp(b, self->before + off, MIB))
				return 1;
		}
	}
	return 2;
}

static pid_t start_writer(struct _test_data_gone *self, int ready, int go, int passes)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(writer(self, ready, go, passes));
	return pid;
}

static pid_t start_reader(struct _test_data_gone *self)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(image_reader(self));
	return pid;
}

static int exit_code(pid_t pid)
{
	int status;

	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/*
 * The original disk is deleted while it is written and its image read:
 * both get errors, the image goes with the snapshot, nothing hangs.
 */
TEST_F(gone, original_deleted_under_io)
{
	int pipefd[2];
	pid_t w, r;
	char x;

	ASSERT_EQ(0, pipe(pipefd));
	w = start_writer(self, pipefd[1], -1, 1000);
	r = start_reader(self);
	ASSERT_LT(0, w);
	ASSERT_LT(0, r);
	ASSERT_EQ(1, read(pipefd[0], &x, 1));
	nullb_delete("bsnap_orig");
	/* The writer sees the disk go; the reader sees its image fail. */
	EXPECT_EQ(1, exit_code(w));
	EXPECT_EQ(0, exit_code(r));
	/* The filter left with the disk: the snapshot still goes away cleanly. */
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	EXPECT_NE(0, access(self->image, F_OK));
	EXPECT_EQ(0, snapshot_count(self->ctl));
	close(pipefd[0]);
	close(pipefd[1]);
}

/*
 * The difference storage is deleted while the original is written: every
 * write to the original lands, and the snapshot is corrupted.
 */
TEST_F(gone, storage_deleted_under_io)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	unsigned char *now = aligned_alloc(4096, DEV_SIZE);
	int pipefd[2], gofd[2];
	pid_t w, r;
	char x;
	int fd;

	ASSERT_NE(NULL, now);
	ASSERT_EQ(0, pipe(pipefd));
	ASSERT_EQ(0, pipe2(gofd, O_NONBLOCK));
	w = start_writer(self, pipefd[1], gofd[0], 2);
	r = start_reader(self);
	ASSERT_LT(0, w);
	ASSERT_LT(0, r);
	ASSERT_EQ(1, read(pipefd[0], &x, 1));
	nullb_delete("bsnap_store");
	/* The chunks the writer touches from now on cannot be stored. */
	ASSERT_EQ(1, write(gofd[1], "x", 1));
	EXPECT_EQ(0, exit_code(w));
	EXPECT_EQ(0, exit_code(r));

	ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	TH_LOG("snapshot error %d", info.error_code);
	EXPECT_GT(0, info.error_code);
	fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	EXPECT_EQ(-1, pread(fd, now, MIB, 0));
	close(fd);
	/* Not one write to the original was lost. */
	ASSERT_EQ(DEV_SIZE, pread(self->orig, now, DEV_SIZE, 0));
	EXPECT_EQ(0, memcmp(now, self->mirror, DEV_SIZE));
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &self->id));
	free(now);
	close(pipefd[0]);
	close(pipefd[1]);
	close(gofd[0]);
	close(gofd[1]);
}

/* An ext4 image unmounted while its snapshot is destroyed, several times. */
TEST(unmount_races_destroy)
{
	struct blksnap_sectors all = { .offset = 0, .count = (32 * MIB) >> 9 };
	struct loopdev orig = { .fd = -1 }, store = { .fd = -1 };
	unsigned char *before = aligned_alloc(4096, DEV_SIZE);
	unsigned char *now = aligned_alloc(4096, DEV_SIZE);
	char cmd[256], image[64];
	struct blksnap_uuid id;
	struct stat st;
	int i, ctl;
	pid_t pid;

	if (run("command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null"))
		SKIP(return, "mkfs.ext4 or e2fsck missing");
	ASSERT_NE(NULL, before);
	ASSERT_NE(NULL, now);
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	ASSERT_EQ(0, loop_create(&orig, DEV_SIZE));
	ASSERT_EQ(0, loop_create(&store, 32 * MIB));
	snprintf(cmd, sizeof(cmd), "mkfs.ext4 -q -F %s", orig.path);
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(DEV_SIZE, pread(orig.fd, before, DEV_SIZE, 0));
	ASSERT_EQ(0, fstat(orig.fd, &st));
	snprintf(image, sizeof(image), "/dev/blksnap-image_%u:%u", major(st.st_rdev),
		 minor(st.st_rdev));
	ASSERT_EQ(0, blksnap_attach(orig.fd));
	ASSERT_EQ(0, run("mkdir -p /tmp/race"));
	for (i = 0; i < RACES; i++) {
		ASSERT_EQ(0, snapshot_create(ctl, &id));
		ASSERT_EQ(0, snapshot_add(orig.fd, &id));
		ASSERT_EQ(0, storage_append(ctl, &id, store.path, &all, 1));
		ASSERT_EQ(0, snapshot_take(ctl, &id));
		snprintf(cmd, sizeof(cmd), "mount -t ext4 %s /tmp/race", image);
		ASSERT_EQ(0, run(cmd));
		ASSERT_EQ(0, run("echo data >/tmp/race/file"));
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0)
			_exit(run("umount /tmp/race"));
		/* Stagger the two a little differently each time. */
		usleep(i * 3000);
		EXPECT_EQ(0, snapshot_destroy(ctl, &id));
		EXPECT_EQ(0, exit_code(pid));
		EXPECT_NE(0, run("grep -q ' /tmp/race ' /proc/mounts"));
		EXPECT_NE(0, access(image, F_OK));
	}
	TH_LOG("%d unmount/destroy races", RACES);
	/* The original never saw the image's writes. */
	ASSERT_EQ(DEV_SIZE, pread(orig.fd, now, DEV_SIZE, 0));
	EXPECT_EQ(0, memcmp(now, before, DEV_SIZE));
	EXPECT_EQ(0, blksnap_detach(orig.fd));
	loop_destroy(&orig);
	loop_destroy(&store);
	close(ctl);
	free(before);
	free(now);
}

TEST_HARNESS_MAIN
