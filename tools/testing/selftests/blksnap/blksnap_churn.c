// SPDX-License-Identifier: GPL-2.0
/*
 * Churn: snapshots created, taken and destroyed, and the filter attached and
 * detached, over and over while a writer keeps changing the device; module
 * unload and reload cycles; teardown of devices in use.
 *
 * The writer stamps every 4 KiB block with its number and a generation and
 * logs, per block, the generation it started writing and the one known on
 * disk.  An image taken while it runs must hold, for every block, a whole
 * stamp (no torn block) with a generation between what was on disk before
 * the take and what had been started once the take returned.  When the
 * writer stops, the original must hold exactly its log.
 */
#define _GNU_SOURCE
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <linux/blkpg.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

/* Under emulation with a debug kernel, data checks take their time. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
#define NR_BLOCKS 2048		/* 8 MiB */
#define CYCLES 20

/* Shared between the writer and the test: accessed with atomics only. */
struct log {
	uint32_t started[NR_BLOCKS];
	uint32_t done[NR_BLOCKS];
	int stop;
	unsigned long writes;
};

#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

static void copy_log(uint32_t *to, const uint32_t *from)
{
	int i;

	for (i = 0; i < NR_BLOCKS; i++)
		to[i] = LOAD(from[i]);
}

/* Stamps blocks at random, or in runs, until told to stop. */
static void writer(const char *path, struct log *log, unsigned int seed)
{
	unsigned char *b = aligned_alloc(BLK, BLK);
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	uint32_t blk = 0;

	if (fd < 0 || !b)
		_exit(2);
	while (!LOAD(log->stop)) {
		uint32_t gen;

		blk = rand_r(&seed) % 4 ? (uint32_t)rand_r(&seed) % NR_BLOCKS
					: (blk + 1) % NR_BLOCKS;
		gen = LOAD(log->started[blk]) + 1;
		STORE(log->started[blk], gen);
		stamp(b, blk, gen);
		if (pwrite(fd, b, BLK, (off_t)blk * BLK) != BLK)
			_exit(3);
		STORE(log->done[blk], gen);
		STORE(log->writes, LOAD(log->writes) + 1);
	}
	_exit(0);
}

FIXTURE(churn) {
	int ctl;
	struct loopdev orig, store;
	struct log *log;
	unsigned char *buf;
	pid_t pid;
};

FIXTURE_SETUP(churn)
{
	unsigned char *b;
	uint32_t i;

	self->orig.fd = -1;
	self->store.fd = -1;
	self->pid = -1;
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	ASSERT_EQ(0, loop_create(&self->orig, NR_BLOCKS * BLK));
	ASSERT_EQ(0, loop_create(&self->store, 32 * MIB));
	self->log = mmap(NULL, sizeof(struct log), PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ASSERT_NE(MAP_FAILED, self->log);
	self->buf = aligned_alloc(BLK, NR_BLOCKS * BLK);
	ASSERT_NE(NULL, self->buf);
	for (i = 0, b = self->buf; i < NR_BLOCKS; i++, b += BLK)
		stamp(b, i, 0);
	ASSERT_EQ(0, pwrite_all(self->orig.fd, self->buf, NR_BLOCKS * BLK, 0));
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
}

static void start_writer(struct __test_metadata *_metadata, struct _test_data_churn *self)
{
	self->pid = fork();
	ASSERT_LE(0, self->pid);
	if (self->pid == 0)
		writer(self->orig.path, self->log, 7);
	while (LOAD(self->log->writes) < 16)
		usleep(1000);
}

/* Stops the writer and checks the original against its log. */
static void stop_writer(struct __test_metadata *_metadata, struct _test_data_churn *self)
{
	uint32_t i;
	int status;

	STORE(self->log->stop, 1);
	ASSERT_EQ(self->pid, waitpid(self->pid, &status, 0));
	self->pid = -1;
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status));
	ASSERT_EQ(NR_BLOCKS * BLK, pread(self->orig.fd, self->buf, NR_BLOCKS * BLK, 0));
	for (i = 0; i < NR_BLOCKS; i++) {
		EXPECT_EQ(LOAD(self->log->done[i]), read_stamp(self->buf + (size_t)i * BLK, i))
			TH_LOG("original block %u", i);
	}
	TH_LOG("%lu writes", LOAD(self->log->writes));
}

FIXTURE_TEARDOWN(churn)
{
	if (self->pid > 0) {
		STORE(self->log->stop, 1);
		waitpid(self->pid, NULL, 0);
	}
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	free(self->buf);
	close(self->ctl);
}

TEST_F(churn, snapshots_under_writes)
{
	static uint32_t before[NR_BLOCKS], after[NR_BLOCKS];
	struct blksnap_sectors all = { .offset = 0, .count = (32 * MIB) >> 9 };
	struct blksnap_uuid id;
	char image[64];
	struct stat st;
	int cycle, fd, bad;
	uint32_t i;

	ASSERT_EQ(0, fstat(self->orig.fd, &st));
	snprintf(image, sizeof(image), "/dev/blksnap-image_%u:%u", major(st.st_rdev),
		 minor(st.st_rdev));
	start_writer(_metadata, self);
	for (cycle = 0; cycle < CYCLES; cycle++) {
		ASSERT_EQ(0, snapshot_create(self->ctl, &id));
		ASSERT_EQ(0, snapshot_add(self->orig.fd, &id));
		ASSERT_EQ(0, storage_append(self->ctl, &id, self->store.path, &all, 1));
		copy_log(before, self->log->done);
		ASSERT_EQ(0, snapshot_take(self->ctl, &id));
		copy_log(after, self->log->started);
		usleep(20000);

		fd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		ASSERT_LE(0, fd);
		ASSERT_EQ(NR_BLOCKS * BLK, pread(fd, self->buf, NR_BLOCKS * BLK, 0));
		close(fd);
		for (i = 0, bad = 0; i < NR_BLOCKS; i++) {
			int64_t gen = read_stamp(self->buf + (size_t)i * BLK, i);

			if (gen < before[i] || gen > after[i]) {
				if (bad++ < 5)
					TH_LOG("cycle %d block %u: gen %lld not in [%u, %u]", cycle,
					       i, (long long)gen, before[i], after[i]);
			}
		}
		EXPECT_EQ(0, bad);
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &id));
	}
	TH_LOG("%d cycles", CYCLES);
	stop_writer(_metadata, self);
}

TEST_F(churn, attach_detach_under_writes)
{
	int i;

	start_writer(_metadata, self);
	for (i = 0; i < 50; i++) {
		ASSERT_EQ(0, blksnap_detach(self->orig.fd));
		ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	}
	stop_writer(_metadata, self);
}

/* Devices a snapshot uses cannot be deleted under it; after it they can. */
TEST_F(churn, delete_devices_in_use)
{
	struct blksnap_sectors all = { .offset = 0, .count = (32 * MIB) >> 9 };
	struct blksnap_uuid id;
	int ctl;

	ASSERT_EQ(0, snapshot_create(self->ctl, &id));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &id));
	ASSERT_EQ(0, storage_append(self->ctl, &id, self->store.path, &all, 1));
	ASSERT_EQ(0, snapshot_take(self->ctl, &id));
	start_writer(_metadata, self);
	ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	EXPECT_EQ(-1, ioctl(ctl, LOOP_CTL_REMOVE, self->store.nr));
	EXPECT_EQ(EBUSY, errno);
	EXPECT_EQ(-1, ioctl(ctl, LOOP_CTL_REMOVE, self->orig.nr));
	EXPECT_EQ(EBUSY, errno);
	stop_writer(_metadata, self);
	EXPECT_EQ(0, snapshot_destroy(self->ctl, &id));
	/* The storage is released with the snapshot. */
	ioctl(self->store.fd, LOOP_CLR_FD, 0);
	close(self->store.fd);
	self->store.fd = -1;
	EXPECT_EQ(0, ioctl(ctl, LOOP_CTL_REMOVE, self->store.nr));
	unlink(self->store.img);
	close(ctl);
}

static long meminfo_kib(const char *field)
{
	char line[128];
	long v = -1;
	FILE *f = fopen("/proc/meminfo", "r");

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, field, strlen(field)))
			sscanf(line + strlen(field), " %ld", &v);
	if (f)
		fclose(f);
	return v;
}

/* Load, use and unload the module: vmalloc'd memory comes back. */
TEST(module_reload_cycles)
{
	struct blksnap_sectors all = { .offset = 0, .count = (4 * MIB) >> 9 };
	struct loopdev orig = { .fd = -1 }, store = { .fd = -1 };
	unsigned char *b = aligned_alloc(BLK, 65536);
	long vmalloc0, slab0;
	struct blksnap_uuid id;
	int i, ctl, rc;

	ASSERT_NE(NULL, b);
	ASSERT_EQ(0, loop_create(&orig, 8 * MIB));
	ASSERT_EQ(0, loop_create(&store, 4 * MIB));
	memset(b, 0x11, 65536);
	run("rmmod blksnap 2>/dev/null");
	vmalloc0 = meminfo_kib("VmallocUsed:");
	slab0 = meminfo_kib("Slab:");
	for (i = 0; i < 5; i++) {
		ASSERT_EQ(0, run("modprobe blksnap"));
		ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
		ASSERT_LE(0, ctl);
		ASSERT_EQ(0, blksnap_attach(orig.fd));
		ASSERT_EQ(0, snapshot_create(ctl, &id));
		ASSERT_EQ(0, snapshot_add(orig.fd, &id));
		ASSERT_EQ(0, storage_append(ctl, &id, store.path, &all, 1));
		ASSERT_EQ(0, snapshot_take(ctl, &id));
		ASSERT_EQ(0, pwrite_all(orig.fd, b, 65536, i * 1048576));
		EXPECT_NE(0, run("rmmod blksnap 2>/dev/null"));
		ASSERT_EQ(0, snapshot_destroy(ctl, &id));
		close(ctl);
		ASSERT_EQ(0, blksnap_detach(orig.fd));
		rc = run("rmmod blksnap");
		/* Who still holds the module, for the log. */
		if (rc)
			run("grep '^blksnap ' /proc/modules; ls /sys/module/blksnap/holders");
		ASSERT_EQ(0, rc)
			TH_LOG("cycle %d", i);
	}
	TH_LOG("after 5 cycles: vmalloc %+ld KiB, slab %+ld KiB",
	       meminfo_kib("VmallocUsed:") - vmalloc0, meminfo_kib("Slab:") - slab0);
	EXPECT_GT(256, meminfo_kib("VmallocUsed:") - vmalloc0);
	ASSERT_EQ(0, run("modprobe blksnap"));
	loop_destroy(&orig);
	loop_destroy(&store);
	free(b);
}

TEST_HARNESS_MAIN
