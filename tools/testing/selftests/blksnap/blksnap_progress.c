// SPDX-License-Identifier: GPL-2.0
/*
 * Forward progress of copy-on-write never depends on an allocation that may
 * fail: fio keeps 1024 first writes in flight on a snapshotted original
 * while failslab and fail_page_alloc fail a tenth of the non-sleeping
 * allocations fio's submit path makes.  The snapshot must stay intact (no
 * error, the image as at the take) and every write must land.  And a take
 * under memory cgroup pressure, with dirty page cache on the original,
 * ends, with a clean image.
 *
 * The original and the storage are memory-backed null_blk disks.  Needs
 * fio, CONFIG_FAILSLAB, CONFIG_FAIL_PAGE_ALLOC and debugfs.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 300

#define MIB (1ULL << 20)
#define DEV_MB 32
#define DEV_SIZE ((off_t)DEV_MB * MIB)
#define ORIG "bsnap_pg_orig"
#define STORE "bsnap_pg_store"
#define ROUNDS 2

static const char *const injectors[] = {
	"/sys/kernel/debug/failslab/",
	"/sys/kernel/debug/fail_page_alloc/",
};

static int set(const char *dir, const char *file, const char *val)
{
	char path[128];

	snprintf(path, sizeof(path), "%s%s", dir, file);
	return write_str(path, val);
}

/* Fails 10 % of the non-sleeping allocations of flagged tasks, or none. */
static int arm(bool on)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(injectors); i++) {
		const char *d = injectors[i];

		if (set(d, "verbose", "0") || set(d, "task-filter", "Y") ||
		    set(d, "ignore-gfp-wait", "Y") || set(d, "interval", "1") ||
		    set(d, "times", "-1") || set(d, "probability", on ? "10" : "0"))
			return -1;
	}
	return 0;
}

/* fio, flagged for failure injection: random 4 KiB writes at iodepth 1024. */
static int run_fio(unsigned int seed)
{
	char seedarg[32];
	pid_t pid = fork();
	int status;

	if (pid < 0)
		return -1;
	if (!pid) {
		snprintf(seedarg, sizeof(seedarg), "--randseed=%u", seed);
		if (write_str("/proc/self/make-it-fail", "1"))
			_exit(2);
		execlp("fio", "fio", "--name=first", "--filename=/dev/" ORIG,
		       "--ioengine=libaio", "--direct=1", "--rw=randwrite", "--bs=4k",
		       "--iodepth=1024", "--iodepth_batch_submit=256",
		       "--number_ios=4096", "--norandommap", seedarg,
		       "--output=/dev/null", "--eta=never", (char *)NULL);
		_exit(3);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

FIXTURE(progress) {
	int ctl, orig;
	char image[64];
	unsigned char *before, *img;
};

FIXTURE_SETUP(progress)
{
	self->ctl = self->orig = -1;
	if (access("/usr/bin/fio", X_OK))
		SKIP(return, "fio is not available");
	if (access(injectors[0], F_OK) || access(injectors[1], F_OK))
		SKIP(return, "failslab or fail_page_alloc is not available");
	if (nullb_available())
		SKIP(return, "null_blk configfs is not available");
	ASSERT_EQ(0, nullb_create(ORIG, DEV_MB, NULL));
	ASSERT_EQ(0, nullb_create(STORE, DEV_MB, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig = open("/dev/" ORIG, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, self->orig);
	ASSERT_EQ(0, image_path_of(self->orig, self->image, sizeof(self->image)));
	self->before = aligned_alloc(4096, DEV_SIZE);
	self->img = aligned_alloc(4096, DEV_SIZE);
	ASSERT_NE(NULL, self->before);
	ASSERT_NE(NULL, self->img);
	ASSERT_EQ(0, blksnap_attach(self->orig));
}

FIXTURE_TEARDOWN(progress)
{
	arm(false);
	run("umount /tmp/bsnap_pg 2>/dev/null");
	rmdir("/sys/fs/cgroup/bsnap_progress");
	nullb_pair_teardown(self->ctl, self->orig, ORIG, STORE);
	free(self->before);
	free(self->img);
}

/*
 * Item 5: each round takes a new snapshot (a new difference area, whose
 * queues start small) and runs fio's first writes under injection.
 */
TEST_F(progress, item5_submit_path_allocation_failures_keep_snapshot_intact)
{
	struct blksnap_snapshotinfo info;
	unsigned int len;
	struct blksnap_uuid id;
	int round, fd;

	for (round = 0; round < ROUNDS; round++) {
		fill_random(self->before, DEV_SIZE, 700 + round);
		ASSERT_EQ(0, pwrite_all(self->orig, self->before, DEV_SIZE, 0));
		ASSERT_EQ(0, snapshot_simple(self->ctl, self->orig, &id, "/dev/" STORE,
					     DEV_SIZE >> 9));

		ASSERT_EQ(0, arm(true));
		EXPECT_EQ(0, run_fio(round + 1)) TH_LOG("round %d: fio failed", round);
		ASSERT_EQ(0, arm(false));

		len = sizeof(info);
		ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_snapshotinfo, &info,
					 &len, NULL));
		EXPECT_EQ(0, info.error_code) TH_LOG("round %d: snapshot broken", round);
		fd = open(self->image, O_RDONLY | O_DIRECT | O_CLOEXEC);
		ASSERT_LE(0, fd);
		EXPECT_EQ(DEV_SIZE, pread(fd, self->img, DEV_SIZE, 0));
		close(fd);
		EXPECT_EQ(0, memcmp(self->img, self->before, DEV_SIZE))
			TH_LOG("round %d: the image is not the take", round);
		ASSERT_EQ(0, snapshot_destroy(self->ctl, &id));
	}
}

#define MEMCG "/sys/fs/cgroup/bsnap_progress"

/* Half the original: a file that fits in its ext4 with room to spare. */
#define FILL_MB (DEV_MB / 2)

/*
 * A writer in a memory cgroup of 16 MiB dirties page cache of a file on
 * the original (ext4) twice over: reclaim in the cgroup writes back to
 * the original, whose writes wait for copy-on-write, whose work must not
 * wait for that reclaim.
 */
static pid_t start_memcg_writer(void)
{
	static char buf[1 << 20];
	pid_t pid = fork();
	char me[32];
	int fd = -1, i;

	if (pid)
		return pid;
	snprintf(me, sizeof(me), "%d", getpid());
	if (write_str(MEMCG "/cgroup.procs", me))
		_exit(2);
	memset(buf, 0x6b, sizeof(buf));
	for (i = 0; i < 2 * FILL_MB; i++) {
		if (i % FILL_MB == 0) {
			fd = open("/tmp/bsnap_pg/fill", O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
			if (fd < 0)
				_exit(3);
		}
		if (write(fd, buf, sizeof(buf)) != sizeof(buf))
			_exit(4);
		if (i % FILL_MB == FILL_MB - 1)
			close(fd);
	}
	_exit(0);
}

/* How often the cgroup hit its limit (memory.events "max"), or -1. */
static long memcg_max_events(void)
{
	FILE *f = fopen(MEMCG "/memory.events", "re");
	char key[32];
	long n, found = -1;

	if (!f)
		return -1;
	while (fscanf(f, "%31s %ld", key, &n) == 2)
		if (!strcmp(key, "max"))
			found = n;
	fclose(f);
	return found;
}

/*
 * Item 5: a snapshot taken while a memory cgroup under pressure writes
 * back dirty pages to the original.  The take and the writer end (the
 * hung-task detector is on), and the image is a clean file system.
 */
TEST_F(progress, item5_take_under_memory_cgroup_pressure)
{
	struct blksnap_snapshotinfo info;
	unsigned int len = sizeof(info);
	struct blksnap_uuid id;
	int status, kmsg = kmsg_mark();
	char cmd[160];
	pid_t writer;
	int i;

	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		run("mount -t cgroup2 none /sys/fs/cgroup");
	if (access("/sys/fs/cgroup/cgroup.controllers", F_OK))
		SKIP(return, "cgroup v2 is not available");
	ASSERT_EQ(0, write_str("/sys/fs/cgroup/cgroup.subtree_control", "+memory"));
	rmdir(MEMCG);
	ASSERT_EQ(0, mkdir(MEMCG, 0755));
	ASSERT_EQ(0, write_str(MEMCG "/memory.max", "16M"));
	ASSERT_EQ(0, run("mkfs.ext4 -q -F /dev/" ORIG));
	ASSERT_EQ(0, run("mkdir -p /tmp/bsnap_pg && mount -t ext4 /dev/" ORIG " /tmp/bsnap_pg"));

	writer = start_memcg_writer();
	ASSERT_LT(0, writer);
	/* The take comes once the cgroup is at its limit, with the writer on. */
	for (i = 0; i < 600 && memcg_max_events() <= 0; i++)
		usleep(100000);
	EXPECT_LT(0, memcg_max_events()) TH_LOG("the cgroup never reached its limit");
	EXPECT_EQ(0, snapshot_simple(self->ctl, self->orig, &id, "/dev/" STORE, DEV_SIZE >> 9));
	EXPECT_EQ(0, waitpid(writer, &status, WNOHANG)) TH_LOG("the writer ended before the take");
	ASSERT_EQ(writer, waitpid(writer, &status, 0));
	EXPECT_TRUE(WIFEXITED(status));
	EXPECT_EQ(0, WEXITSTATUS(status)) TH_LOG("the writer failed (2 cgroup, 3 open, 4 write)");
	sync();

	ASSERT_EQ(0, blksnap_ctl(self->orig, blkfilter_ctl_blksnap_snapshotinfo, &info, &len,
				 NULL));
	EXPECT_EQ(0, info.error_code);
	snprintf(cmd, sizeof(cmd), "e2fsck -fn %s >/dev/null 2>&1", self->image);
	EXPECT_EQ(0, run(cmd));
	snapshot_destroy(self->ctl, &id);
	EXPECT_EQ(0, run("umount /tmp/bsnap_pg"));
	rmdir(MEMCG);
	EXPECT_NO_SPLAT(kmsg);
}

TEST_HARNESS_MAIN
