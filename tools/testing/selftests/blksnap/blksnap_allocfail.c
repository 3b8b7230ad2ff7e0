// SPDX-License-Identifier: GPL-2.0
/*
 * Allocation failures under a snapshot: failslab and fail_page_alloc fail a
 * share of the kernel allocations made by a writer process (the filter's
 * submit path) and, in the second half of the rounds, by the unbound kernel
 * workers too (where blksnap copies chunks), while the writer overwrites
 * every chunk of a snapshotted ram disk.
 *
 * Whatever fails, no write is lost: a write that fails is retried, and the
 * original must end up holding exactly the last data written to each
 * block.  The snapshot is either intact (its image equals the data of the
 * take) or corrupted (a negative errno in snapshotinfo, and image reads fail
 * with EIO); the kernel log stays free of splats (checked by the harness).
 *
 * Rounds, probability and the bound on failures are fixed and printed; the
 * number of failures injected in each round is printed, and at least one
 * must have been injected over the run.
 *
 * Needs CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC, debugfs, and two ram disks
 * named by BLKSNAP_TEST_RAM and BLKSNAP_TEST_STORAGE.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <linux/fs.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define MIB (1ULL << 20)
#define ORIG_SIZE (16 * MIB)
#define CHUNK (256 * 1024)	/* blksnap's chunk for a 16 MiB device */
#define WRITE_SIZE (64 * 1024)
#define ROUNDS 6
#define PROBABILITY "5"		/* percent of allocations that fail */
#define TIMES 40		/* failures at most, per round and injector */
#define RETRIES 1000

static const char *const injectors[] = {
	"/sys/kernel/debug/failslab/",
	"/sys/kernel/debug/fail_page_alloc/",
};

static long read_long(const char *path)
{
	char buf[32] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || read(fd, buf, sizeof(buf) - 1) <= 0)
		buf[0] = 0;
	if (fd >= 0)
		close(fd);
	return strtol(buf, NULL, 10);
}

static int set(const char *dir, const char *file, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "%s%s", dir, file);
	return write_str(path, val);
}

/* Arms both injectors for flagged tasks only, sleeping allocations too. */
static int arm(void)
{
	char times[16];
	size_t i;

	snprintf(times, sizeof(times), "%d", TIMES);
	for (i = 0; i < ARRAY_SIZE(injectors); i++) {
		const char *d = injectors[i];

		if (set(d, "verbose", "0") || set(d, "task-filter", "Y") ||
		    set(d, "ignore-gfp-wait", "N") || set(d, "interval", "1") ||
		    set(d, "times", times) || set(d, "probability", PROBABILITY))
			return -1;
	}
	return 0;
}

/* Disarms both injectors; returns how many failures they injected. */
static long disarm(void)
{
	long injected = 0;
	char path[128];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(injectors); i++) {
		set(injectors[i], "probability", "0");
		snprintf(path, sizeof(path), "%stimes", injectors[i]);
		injected += TIMES - read_long(path);
	}
	return injected;
}

/* Flags (or unflags) every unbound kernel worker for injection. */
static void flag_unbound_workers(const char *val)
{
	DIR *proc = opendir("/proc");
	struct dirent *d;
	char path[300], comm[32];

	while (proc && (d = readdir(proc))) {
		FILE *f;

		if (d->d_name[0] < '0' || d->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", d->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, "kworker/u", 9)) {
			snprintf(path, sizeof(path), "/proc/%s/make-it-fail", d->d_name);
			write_str(path, val);
		}
		fclose(f);
	}
	if (proc)
		closedir(proc);
}

/*
 * One writer pass: 64 KiB into every chunk, retrying failed writes.  Runs
 * in a child that flags itself for injection once its memory is touched.
 * Exits with 0 when every write landed.
 */
static int writer(const char *path, const unsigned char *data)
{
	int fd = open(path, O_RDWR | O_DIRECT | O_CLOEXEC);
	unsigned char *b = aligned_alloc(4096, WRITE_SIZE);
	off_t off;
	int tries;

	if (fd < 0 || !b)
		return 2;
	memset(b, 0, WRITE_SIZE);
	if (write_str("/proc/self/make-it-fail", "1"))
		return 3;
	for (off = 0; off < (off_t)ORIG_SIZE; off += CHUNK) {
		memcpy(b, data + off + 8192, WRITE_SIZE);
		for (tries = 0; tries < RETRIES; tries++)
			if (pwrite(fd, b, WRITE_SIZE, off + 8192) == WRITE_SIZE)
				break;
		if (tries == RETRIES)
			return 4;
	}
	return 0;
}

FIXTURE(allocfail) {
	int ctl, orig, store;
	const char *orig_path, *store_path;
	unsigned char *now, *next, *buf;
	char image[64];
};

FIXTURE_SETUP(allocfail)
{
	size_t i;

	self->orig = -1;
	self->store = -1;
	self->ctl = -1;
	self->orig_path = getenv("BLKSNAP_TEST_RAM");
	self->store_path = getenv("BLKSNAP_TEST_STORAGE");
	if (!self->orig_path || !self->store_path)
		SKIP(return, "BLKSNAP_TEST_RAM or BLKSNAP_TEST_STORAGE not set");
	for (i = 0; i < ARRAY_SIZE(injectors); i++) {
		char path[128];

		snprintf(path, sizeof(path), "%sprobability", injectors[i]);
		if (access(path, W_OK))
			SKIP(return, "%s is not available", injectors[i]);
	}
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open(self->orig_path, O_RDWR | O_DIRECT | O_CLOEXEC);
	self->store = open(self->store_path, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	ASSERT_LE(0, self->store);
	self->now = aligned_alloc(4096, ORIG_SIZE);
	self->next = aligned_alloc(4096, ORIG_SIZE);
	self->buf = aligned_alloc(4096, ORIG_SIZE);
	ASSERT_NE(NULL, self->now);
	ASSERT_NE(NULL, self->next);
	ASSERT_NE(NULL, self->buf);
	/* Ram disks allocate a page on its first write: do that now. */
	memset(self->buf, 0, ORIG_SIZE);
	ASSERT_EQ(0, pwrite_all(self->store, self->buf, ORIG_SIZE, 0));
	fill_random(self->now, ORIG_SIZE, 71);
	ASSERT_EQ(0, pwrite_all(self->orig, self->now, ORIG_SIZE, 0));
	ASSERT_EQ(0, blksnap_attach(self->orig));
}

FIXTURE_TEARDOWN(allocfail)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(injectors); i++)
		set(injectors[i], "probability", "0");
	flag_unbound_workers("0");
	if (self->orig >= 0) {
		blksnap_detach(self->orig);
		close(self->orig);
	}
	if (self->store >= 0)
		close(self->store);
	if (self->ctl >= 0)
		close(self->ctl);
	free(self->now);
	free(self->next);
	free(self->buf);
}

/* The image holds the data of the take, or the snapshot says it broke. */
static void check_image(struct __test_metadata *_metadata, struct _test_data_allocfail *self,
			int round, long injected)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	struct stat st;
	int fd;

	ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	ASSERT_EQ(0, fstat(self->orig, &st));
	snprintf(self->image, sizeof(self->image), "/dev/blksnap-image_%u:%u",
		 major(st.st_rdev), minor(st.st_rdev));
	fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	TH_LOG("round %d (%s): %ld failures injected, snapshot %s (%d)", round,
	       round < ROUNDS / 2 ? "writer" : "writer and workers", injected,
	       info.error_code ? "corrupted" : "intact", info.error_code);
	if (info.error_code == 0) {
		ASSERT_EQ(ORIG_SIZE, pread(fd, self->buf, ORIG_SIZE, 0));
		EXPECT_EQ(0, memcmp(self->buf, self->now, ORIG_SIZE));
	} else {
		EXPECT_GT(0, info.error_code);
		EXPECT_EQ(-1, pread(fd, self->buf, MIB, 0));
		EXPECT_EQ(EIO, errno);
	}
	close(fd);
}

TEST_F(allocfail, writes_survive_allocation_failures)
{
	struct blksnap_sectors all = { .offset = 0, .count = ORIG_SIZE >> 9 };
	long injected, total = 0;
	int round, status;
	pid_t pid;

	TH_LOG("%d rounds, %s%% of allocations failing, at most %d failures per injector",
	       ROUNDS, PROBABILITY, TIMES);
	for (round = 0; round < ROUNDS; round++) {
		struct blksnap_uuid id;

		ASSERT_EQ(0, snapshot_create(self->ctl, &id));
		ASSERT_EQ(0, snapshot_add(self->orig, &id));
		ASSERT_EQ(0, storage_append(self->ctl, &id, self->store_path, &all, 1));
		ASSERT_EQ(0, snapshot_take(self->ctl, &id));

		fill_random(self->next, ORIG_SIZE, 1000 + round);
		ASSERT_EQ(0, arm());
		if (round >= ROUNDS / 2)
			flag_unbound_workers("1");
		pid = fork();
		ASSERT_LE(0, pid);
		if (pid == 0)
			_exit(writer(self->orig_path, self->next));
		ASSERT_EQ(pid, waitpid(pid, &status, 0));
		injected = disarm();
		flag_unbound_workers("0");
		total += injected;
		ASSERT_TRUE(WIFEXITED(status));
		ASSERT_EQ(0, WEXITSTATUS(status));

		check_image(_metadata, self, round, injected);
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &id));

		/* Every write landed: the original is the writer's data. */
		for (off_t off = 0; off < (off_t)ORIG_SIZE; off += CHUNK)
			memcpy(self->now + off + 8192, self->next + off + 8192, WRITE_SIZE);
		ASSERT_EQ(ORIG_SIZE, pread(self->orig, self->buf, ORIG_SIZE, 0));
		ASSERT_EQ(0, memcmp(self->buf, self->now, ORIG_SIZE));
	}
	TH_LOG("%ld failures injected in all", total);
	EXPECT_LT(0, total);
}

TEST_HARNESS_MAIN
