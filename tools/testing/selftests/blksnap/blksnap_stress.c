// SPDX-License-Identifier: GPL-2.0
/*
 * Stress: two devices in one snapshot, each with a random O_DIRECT writer
 * that also discards, and a sequential buffered writer that fsyncs, while
 * readers read both images over and over.  Every image read must show the
 * devices exactly as they were at the take; when the writers are done, each
 * original must hold exactly what its writers logged.
 *
 * The second variant gives the snapshot too little storage, so that it
 * overflows in the middle of the writes: image reads then fail with EIO
 * (the ones that succeed must still be right), the snapshot reports
 * -ENOSPC, and the originals still hold exactly what was written.
 *
 * The number of writes per writer is fixed (WRITES) and printed.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 300

#define MIB (1ULL << 20)
#define NR_BLOCKS 2048		/* 8 MiB per device */
#define HALF (NR_BLOCKS / 2)
#define WRITES 1500
#define DISCARDED 0xffffffffU	/* generation of a block discarded last */

/* What each original must hold; written by the writers, read at the end. */
struct expect {
	uint32_t gen[2][NR_BLOCKS];
	int readers_stop;
	int image_errors;	/* wrong data read from an image */
	int image_eio;		/* reads failed with EIO */
	unsigned long image_reads;
};

/* Random 4 KiB O_DIRECT writes and some discards on the first half. */
static int direct_writer(const char *path, uint32_t *gen, unsigned int seed)
{
	unsigned char *b = aligned_alloc(BLK, BLK);
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	int i;

	if (fd < 0 || !b)
		return 2;
	for (i = 0; i < WRITES; i++) {
		uint32_t blk = rand_r(&seed) % HALF;

		if (i % 50 == 49) {
			uint64_t range[2] = { (uint64_t)blk * BLK, BLK };

			if (ioctl(fd, BLKDISCARD, range))
				return 3;
			gen[blk] = DISCARDED;
			continue;
		}
		gen[blk] = gen[blk] == DISCARDED ? 1 : gen[blk] + 1;
		stamp(b, blk, gen[blk]);
		if (pwrite(fd, b, BLK, (off_t)blk * BLK) != BLK)
			return 4;
	}
	close(fd);
	return 0;
}

/* Sequential buffered writes with an fsync every 16, on the second half. */
static int buffered_writer(const char *path, uint32_t *gen)
{
	unsigned char b[BLK];
	int fd = open(path, O_RDWR | O_CLOEXEC);
	int i;

	if (fd < 0)
		return 2;
	for (i = 0; i < WRITES; i++) {
		uint32_t blk = HALF + i % HALF;

		gen[blk]++;
		stamp(b, blk, gen[blk]);
		if (pwrite(fd, b, BLK, (off_t)blk * BLK) != BLK)
			return 4;
		if (i % 16 == 15 && fsync(fd))
			return 5;
	}
	if (fsync(fd))
		return 5;
	close(fd);
	return 0;
}

/* Reads the image until told to stop; every block must be generation 0. */
static void reader(const char *image, struct expect *e)
{
	unsigned char *buf = aligned_alloc(BLK, NR_BLOCKS * BLK);
	uint32_t i;

	if (!buf)
		_exit(2);
	while (!__atomic_load_n(&e->readers_stop, __ATOMIC_ACQUIRE)) {
		int fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		ssize_t n;

		if (fd < 0)
			_exit(3);
		n = pread(fd, buf, NR_BLOCKS * BLK, 0);
		close(fd);
		if (n < 0 && errno == EIO) {
			__atomic_add_fetch(&e->image_eio, 1, __ATOMIC_RELAXED);
			usleep(10000);
			continue;
		}
		if (n != NR_BLOCKS * BLK)
			_exit(4);
		for (i = 0; i < NR_BLOCKS; i++)
			if (read_stamp(buf + (size_t)i * BLK, i) != 0)
				__atomic_add_fetch(&e->image_errors, 1, __ATOMIC_RELAXED);
		__atomic_add_fetch(&e->image_reads, 1, __ATOMIC_RELAXED);
	}
	_exit(0);
}

static pid_t spawn_writer(struct loopdev *l, uint32_t *gen, int kind, unsigned int seed)
{
	pid_t pid = fork();

	if (pid == 0)
		_exit(kind ? buffered_writer(l->path, gen) : direct_writer(l->path, gen, seed));
	return pid;
}

FIXTURE(stress) {
};

FIXTURE_VARIANT(stress) {
	unsigned long long storage;	/* bytes */
	bool overflows;
};

/* Room for every chunk the writers can touch. */
FIXTURE_VARIANT_ADD(stress, enough_storage) { .storage = 48 * MIB, .overflows = false };
/* Room for 4 chunks of 256 KiB: gone early in the writes. */
FIXTURE_VARIANT_ADD(stress, overflow_under_load) { .storage = MIB, .overflows = true };

FIXTURE_SETUP(stress)
{
}

FIXTURE_TEARDOWN(stress)
{
}

TEST_F(stress, two_devices_writers_and_image_readers)
{
	static const unsigned char zero[BLK];
	struct blksnap_sectors all = { .offset = 0, .count = variant->storage >> 9 };
	struct blksnap_snapshotinfo info;
	unsigned int len;
	struct loopdev orig[2] = { { .fd = -1 }, { .fd = -1 } }, store = { .fd = -1 };
	unsigned char *buf = aligned_alloc(BLK, NR_BLOCKS * BLK);
	pid_t writers[4], readers[2];
	struct blksnap_uuid id;
	struct expect *e;
	char image[2][64];
	int ctl, d, i, status, bad;
	struct stat st;

	ASSERT_NE(NULL, buf);
	e = mmap(NULL, sizeof(*e), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, e);
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	ASSERT_EQ(0, loop_create(&store, variant->storage));
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	for (d = 0; d < 2; d++) {
		ASSERT_EQ(0, loop_create(&orig[d], NR_BLOCKS * BLK));
		for (i = 0; i < NR_BLOCKS; i++)
			stamp(buf + (size_t)i * BLK, i, 0);
		ASSERT_EQ(0, pwrite_all(orig[d].fd, buf, NR_BLOCKS * BLK, 0));
		ASSERT_EQ(0, blksnap_attach(orig[d].fd));
		ASSERT_EQ(0, snapshot_add(orig[d].fd, &id));
		ASSERT_EQ(0, fstat(orig[d].fd, &st));
		snprintf(image[d], sizeof(image[d]), "/dev/blksnap-image_%u:%u",
			 major(st.st_rdev), minor(st.st_rdev));
	}
	ASSERT_EQ(0, storage_append(ctl, &id, store.path, &all, 1));
	ASSERT_EQ(0, snapshot_take(ctl, &id));
	TH_LOG("%d writers x %d writes, 2 image readers", 4, WRITES);

	for (d = 0; d < 2; d++) {
		readers[d] = fork();
		ASSERT_LE(0, readers[d]);
		if (readers[d] == 0)
			reader(image[d], e);
	}
	for (d = 0; d < 2; d++) {
		writers[2 * d] = spawn_writer(&orig[d], e->gen[d], 0, 100 + d);
		writers[2 * d + 1] = spawn_writer(&orig[d], e->gen[d], 1, 0);
	}
	for (i = 0; i < 4; i++) {
		ASSERT_EQ(writers[i], waitpid(writers[i], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) TH_LOG("writer %d", i);
	}
	__atomic_store_n(&e->readers_stop, 1, __ATOMIC_RELEASE);
	for (d = 0; d < 2; d++) {
		ASSERT_EQ(readers[d], waitpid(readers[d], &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) TH_LOG("reader %d", d);
	}
	TH_LOG("%lu whole-image reads, %d failed with EIO", e->image_reads, e->image_eio);
	EXPECT_EQ(0, e->image_errors);
	if (!variant->overflows) {
		EXPECT_LT(0, e->image_reads);
		EXPECT_EQ(0, e->image_eio);
	}

	for (d = 0, bad = 0; d < 2; d++) {
		len = sizeof(info);
		ASSERT_EQ(0, blksnap_ctl(orig[d].fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
					 &len, NULL));
		if (variant->overflows)
			bad += info.error_code == -ENOSPC;
		else
			EXPECT_EQ(0, info.error_code);
	}
	if (variant->overflows)
		EXPECT_LT(0, bad) TH_LOG("no device overflowed");

	for (d = 0; d < 2 && !variant->overflows; d++) {
		/* One last read of each image after the writers are done. */
		int fd = open(image[d], O_RDONLY | O_DIRECT | O_CLOEXEC);

		ASSERT_LE(0, fd);
		ASSERT_EQ(NR_BLOCKS * BLK, pread(fd, buf, NR_BLOCKS * BLK, 0));
		close(fd);
		for (i = 0, bad = 0; i < NR_BLOCKS; i++)
			bad += read_stamp(buf + (size_t)i * BLK, i) != 0;
		EXPECT_EQ(0, bad) TH_LOG("image %d", d);
	}

	for (d = 0; d < 2; d++) {
		ASSERT_EQ(NR_BLOCKS * BLK, pread(orig[d].fd, buf, NR_BLOCKS * BLK, 0));
		for (i = 0, bad = 0; i < NR_BLOCKS; i++) {
			const unsigned char *b = buf + (size_t)i * BLK;
			uint32_t want = e->gen[d][i];

			if (want == DISCARDED)
				bad += memcmp(b, zero, BLK) != 0;
			else
				bad += read_stamp(b, i) != want;
		}
		EXPECT_EQ(0, bad) TH_LOG("original %d", d);
	}

	EXPECT_EQ(0, snapshot_destroy(ctl, &id));
	for (d = 0; d < 2; d++) {
		blksnap_detach(orig[d].fd);
		loop_destroy(&orig[d]);
	}
	loop_destroy(&store);
	close(ctl);
	free(buf);
}

/*
 * Image reads of chunks not copied yet go straight to the original; a
 * first write to such a chunk must wait for them.  A reader follows a
 * sequential writer closely, reading the image just ahead of it, so that
 * its reads race the first write of each chunk: all must show the take.
 */
struct chase {
	uint32_t pos;		/* next block the writer writes */
};

#define CHASE_ROUNDS 4

TEST(image_reads_race_first_writes)
{
	struct blksnap_sectors all = { .offset = 0, .count = (16 * MIB) >> 9 };
	struct loopdev orig = { .fd = -1 }, store = { .fd = -1 };
	unsigned char *buf = aligned_alloc(BLK, NR_BLOCKS * BLK);
	unsigned long reads = 0, wrong = 0;
	struct blksnap_snapshotinfo info;
	struct blksnap_uuid id;
	unsigned int len;
	struct chase *c;
	int ctl, img, i, round, status, reaped;
	char image[64];
	struct stat st;
	pid_t writer;

	ASSERT_NE(NULL, buf);
	c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, c);
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	ASSERT_EQ(0, loop_create(&store, 16 * MIB));
	ASSERT_EQ(0, loop_create(&orig, NR_BLOCKS * BLK));
	for (i = 0; i < NR_BLOCKS; i++)
		stamp(buf + (size_t)i * BLK, i, 0);
	ASSERT_EQ(0, pwrite_all(orig.fd, buf, NR_BLOCKS * BLK, 0));
	ASSERT_EQ(0, blksnap_attach(orig.fd));
	ASSERT_EQ(0, fstat(orig.fd, &st));
	snprintf(image, sizeof(image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));

	/* Round r: the image shows generation r, the writer writes r + 1. */
	for (round = 0; round < CHASE_ROUNDS; round++) {
		ASSERT_EQ(0, snapshot_create(ctl, &id));
		ASSERT_EQ(0, snapshot_add(orig.fd, &id));
		ASSERT_EQ(0, storage_append(ctl, &id, store.path, &all, 1));
		ASSERT_EQ(0, snapshot_take(ctl, &id));
		img = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		ASSERT_LE(0, img);
		c->pos = 0;
		writer = fork();
		ASSERT_LE(0, writer);
		if (writer == 0) {
			int fd = open(orig.path, O_RDWR | O_DIRECT | O_CLOEXEC);

			if (fd < 0)
				_exit(2);
			for (i = 0; i < NR_BLOCKS; i++) {
				stamp(buf, i, round + 1);
				if (pwrite(fd, buf, BLK, (off_t)i * BLK) != BLK)
					_exit(3);
				__atomic_store_n(&c->pos, i + 1, __ATOMIC_RELEASE);
			}
			_exit(0);
		}
		for (reaped = 0; !reaped;) {
			uint32_t pos = __atomic_load_n(&c->pos, __ATOMIC_ACQUIRE);
			uint32_t blk = pos + reads % 4;

			if (pos >= NR_BLOCKS)
				break;
			if (blk < NR_BLOCKS) {
				ASSERT_EQ(BLK, pread(img, buf, BLK, (off_t)blk * BLK));
				wrong += read_stamp(buf, blk) != round;
				reads++;
			}
			reaped = waitpid(writer, &status, WNOHANG) == writer;
		}
		if (!reaped)
			ASSERT_EQ(writer, waitpid(writer, &status, 0));
		EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);

		/* Afterwards the whole image still shows the take. */
		ASSERT_EQ(NR_BLOCKS * BLK, pread(img, buf, NR_BLOCKS * BLK, 0));
		for (i = 0; i < NR_BLOCKS; i++)
			wrong += read_stamp(buf + (size_t)i * BLK, i) != round;
		len = sizeof(info);
		ASSERT_EQ(0, blksnap_ctl(orig.fd, blkfilter_ctl_blksnap_snapshotinfo, &info,
					 &len, NULL));
		EXPECT_EQ(0, info.error_code);
		close(img);
		EXPECT_EQ(0, snapshot_destroy(ctl, &id));
	}
	TH_LOG("%lu image reads just ahead of %d x %d first writes", reads, CHASE_ROUNDS,
	       NR_BLOCKS);
	EXPECT_LT(0, reads);
	EXPECT_EQ(0, wrong);

	blksnap_detach(orig.fd);
	loop_destroy(&orig);
	loop_destroy(&store);
	close(ctl);
	free(buf);
}

TEST_HARNESS_MAIN
