// SPDX-License-Identifier: GPL-2.0
/*
 * ioctl fuzzing: several threads send a seeded, reproducible stream of every
 * control device command and every blksnap BLKFILTER_CTL command, with
 * random, boundary and invalid identifiers, lengths, offsets, counts and
 * pointers (NULL, unmapped, kernel, misaligned, ending in a guard page),
 * while another thread writes to the device.  Only errnos may come back.
 * Afterwards a normal snapshot must still work and keep its data.
 *
 * BLKSNAP_TEST_RAM is the device under test, BLKSNAP_TEST_STORAGE the
 * difference storage.  BLKSNAP_FUZZ_SEED repeats a run; the seed and the
 * number of calls are printed.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <linux/fs.h>
#include <linux/loop.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

/* Under emulation with a debug kernel, data checks take their time. */
#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 240

#define THREADS 4
#define CALLS_PER_THREAD 1500
#define MAX_IDS 16
#define MIB (1ULL << 20)

struct fuzz {
	const char *dev, *store;
	int ctl, fd;
	unsigned char *page;	/* a valid page followed by a guard page */
	void *unmapped;
	pthread_mutex_t lock;
	struct blksnap_uuid ids[MAX_IDS];	/* identifiers seen */
	int nr_ids;
	int bad_errno, calls;
	int stop;		/* atomic */
};

static bool expected_errno(int e)
{
	switch (e) {
	case EINVAL: case EFAULT: case ENOENT: case ESRCH: case ENODEV: case EALREADY:
	case EBUSY: case ENOSPC: case ENOTTY: case ENODATA: case ENOTBLK: case EINTR:
	case ENOMEM: case EFBIG: case E2BIG: case ENAMETOOLONG: case EOPNOTSUPP:
	case ENXIO: case EACCES: case EPERM: case EAGAIN: case ELOOP:
		return true;
	}
	return false;
}

static uint64_t rnd(unsigned int *s)
{
	return ((uint64_t)rand_r(s) << 33) ^ ((uint64_t)rand_r(s) << 11) ^ rand_r(s);
}

/* A pointer of any kind: good, NULL, unmapped, kernel, misaligned, edge. */
static void *any_ptr(struct fuzz *f, unsigned int *s, size_t want)
{
	switch (rand_r(s) % 8) {
	case 0:
		return NULL;
	case 1:
		return f->unmapped;
	case 2:
		return (void *)0xffffffff81000000ULL;
	case 3:
		return f->page + 1 + rand_r(s) % 64;
	case 4:
		/* Runs into the guard page. */
		return f->page + 4096 - (want > 1 ? rand_r(s) % want : 1);
	case 5:
		return (void *)-1L;
	default:
		return f->page;
	}
}

static uint64_t any_count(unsigned int *s)
{
	static const uint64_t edge[] = { 0, 1, 2, 63, 64, 65, 4096, 0x7fffffff, 0xffffffff,
					 0x100000000ULL, ~0ULL, ~0ULL >> 1 };

	if (rand_r(s) % 2)
		return edge[rand_r(s) % ARRAY_SIZE(edge)];
	return rnd(s) >> (rand_r(s) % 64);
}

static void any_id(struct fuzz *f, unsigned int *s, struct blksnap_uuid *id)
{
	unsigned int i;

	pthread_mutex_lock(&f->lock);
	if (f->nr_ids && rand_r(s) % 4) {
		*id = f->ids[rand_r(s) % f->nr_ids];
	} else {
		for (i = 0; i < sizeof(id->b); i++)
			id->b[i] = rand_r(s) % 3 ? rand_r(s) : 0;
	}
	pthread_mutex_unlock(&f->lock);
}

static void remember(struct fuzz *f, const struct blksnap_uuid *id)
{
	pthread_mutex_lock(&f->lock);
	f->ids[f->nr_ids % MAX_IDS] = *id;
	if (f->nr_ids < MAX_IDS)
		f->nr_ids++;
	pthread_mutex_unlock(&f->lock);
}

/* Fills the good page with a random mix of valid-looking fields. */
static void fill_page(struct fuzz *f, unsigned int *s)
{
	uint64_t *w = (uint64_t *)f->page;
	unsigned int i;

	for (i = 0; i < 512; i++)
		w[i] = rand_r(s) % 3 ? any_count(s) : (uint64_t)(uintptr_t)f->page;
}

static void one_call(struct fuzz *f, unsigned int *s)
{
	struct blksnap_snapshot_append_storage a;
	struct blksnap_snapshot_storage st;
	struct blksnap_snapshot_collect c;
	struct blksnap_sectors ranges[4];
	struct blkfilter_ctl fc;
	struct blksnap_uuid id;
	/* Not storage at all, a directory (an unnamed file), a named file. */
	static const char * const bad_paths[] = { "/dev/null", "/nonexistent", "/tmp",
						  "/tmp/bsnap_fuzz_file", "" };
	unsigned long req;
	void *arg;
	int r, i;

	fill_page(f, s);
	switch (rand_r(s) % 13) {
	case 0: /* create */
		arg = rand_r(s) % 4 ? (void *)&id : any_ptr(f, s, sizeof(id));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_CREATE, arg);
		if (r == 0 && arg == &id)
			remember(f, &id);
		break;
	case 1: /* destroy */
		any_id(f, s, &id);
		arg = rand_r(s) % 4 ? (void *)&id : any_ptr(f, s, sizeof(id));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, arg);
		break;
	case 2: /* collect */
		c.count = any_count(s);
		c.ids = (uintptr_t)any_ptr(f, s, 16 * (c.count & 0xff));
		arg = rand_r(s) % 4 ? (void *)&c : any_ptr(f, s, sizeof(c));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, arg);
		break;
	case 3: /* append storage */
		any_id(f, s, &a.id);
		for (i = 0; i < 4; i++) {
			ranges[i].offset = rand_r(s) % 2 ? rand_r(s) % 131072 : any_count(s);
			ranges[i].count = rand_r(s) % 2 ? rand_r(s) % 4096 : any_count(s);
		}
		if (rand_r(s) % 2) {
			const char *p = rand_r(s) % 2 ? bad_paths[rand_r(s) % 5] :
					rand_r(s) % 2 ? f->store : f->dev;

			a.bdev_path = (uintptr_t)p;
			a.bdev_path_size = strlen(p) + (rand_r(s) % 4 ? 1 : 0);
		} else {
			a.bdev_path = (uintptr_t)any_ptr(f, s, 16);
			a.bdev_path_size = any_count(s);
		}
		a.count = rand_r(s) % 2 ? rand_r(s) % 5 : any_count(s);
		a.ranges = rand_r(s) % 2 ? (uintptr_t)ranges : (uintptr_t)any_ptr(f, s, 64);
		arg = rand_r(s) % 4 ? (void *)&a : any_ptr(f, s, sizeof(a));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, arg);
		break;
	case 4: /* take */
		any_id(f, s, &id);
		arg = rand_r(s) % 4 ? (void *)&id : any_ptr(f, s, sizeof(id));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_TAKE, arg);
		break;
	case 5: { /* wait for an event, briefly */
		static __thread struct blksnap_snapshot_event ev;

		any_id(f, s, &ev.id);
		ev.timeout_ms = rand_r(s) % 3;
		arg = rand_r(s) % 4 ? (void *)&ev : any_ptr(f, s, sizeof(ev));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT, arg);
		break;
	}
	case 6: /* version, unknown numbers */
		req = rand_r(s) % 2 ? IOCTL_BLKSNAP_VERSION :
				      _IOWR(BLKSNAP, rand_r(s) % 256, struct blksnap_version);
		r = ioctl(f->ctl, req, any_ptr(f, s, 8));
		break;
	case 7: /* add the device to a snapshot */
		any_id(f, s, &id);
		errno = snapshot_add(f->fd, &id);
		r = errno ? -1 : 0;
		break;
	case 8:
	case 9: /* any BLKFILTER_CTL command */
		memset(&fc, 0, sizeof(fc));
		strcpy((char *)fc.name, rand_r(s) % 8 ? "blksnap" : "blksnapX");
		fc.cmd = rand_r(s) % 8;
		fc.optlen = rand_r(s) % 2 ? rand_r(s) % 64 : any_count(s);
		fc.opt = (uintptr_t)any_ptr(f, s, fc.optlen & 0xfff);
		arg = rand_r(s) % 8 ? (void *)&fc : any_ptr(f, s, sizeof(fc));
		r = ioctl(f->fd, BLKFILTER_CTL, arg);
		break;
	case 10: /* attach and detach, racing with everything */
		r = rand_r(s) % 2 ? blksnap_attach(f->fd) : blksnap_detach(f->fd);
		errno = r;
		r = r ? -1 : 0;
		break;
	case 11: /* storage the module opens, or a new limit */
		any_id(f, s, &st.id);
		if (rand_r(s) % 4) {
			const char *p = rand_r(s) % 2 ? bad_paths[rand_r(s) % 5] :
					rand_r(s) % 2 ? f->store : f->dev;

			st.path = rand_r(s) % 4 ? (uintptr_t)p : 0;
			st.path_size = strlen(p) + (rand_r(s) % 4 ? 1 : 0);
		} else {
			st.path = (uintptr_t)any_ptr(f, s, 16);
			st.path_size = any_count(s);
		}
		st.flags = rand_r(s) % 8 ? 0 : any_count(s);
		st.limit_sect = rand_r(s) % 2 ? rand_r(s) % 65536 : any_count(s);
		arg = rand_r(s) % 4 ? (void *)&st : any_ptr(f, s, sizeof(st));
		r = ioctl(f->ctl, IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE, arg);
		break;
	default: /* image names that come and go */
		r = 0;
		break;
	}
	if (r < 0 && !expected_errno(errno)) {
		__atomic_add_fetch(&f->bad_errno, 1, __ATOMIC_RELAXED);
		printf("# unexpected errno %d\n", errno);
	}
	__atomic_add_fetch(&f->calls, 1, __ATOMIC_RELAXED);
}

struct worker {
	struct fuzz *f;
	unsigned int seed;
};

static void *fuzz_thread(void *p)
{
	struct worker *w = p;
	int i;

	for (i = 0; i < CALLS_PER_THREAD; i++)
		one_call(w->f, &w->seed);
	return NULL;
}

/* Keeps writing to the device so that copy-on-write runs under the fuzz. */
static void *writer_thread(void *p)
{
	struct fuzz *f = p;
	unsigned char *buf = aligned_alloc(4096, 65536);
	int fd = open(f->dev, O_RDWR | O_DIRECT | O_CLOEXEC);
	unsigned int s = 1;

	if (fd < 0 || !buf)
		goto out;
	memset(buf, 0x3c, 65536);
	while (!__atomic_load_n(&f->stop, __ATOMIC_ACQUIRE)) {
		if (pwrite(fd, buf, 65536, (rand_r(&s) % 512) * 65536ULL) != 65536)
			break;
	}
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	return NULL;
}

static void destroy_all(int ctl)
{
	int n = snapshot_count(ctl);
	struct blksnap_uuid *ids = calloc(n > 0 ? n : 1, sizeof(*ids));
	struct blksnap_snapshot_collect c = { .count = n, .ids = (uintptr_t)ids };
	unsigned int i;

	if (n > 0 && ids && ioctl(ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c) == 0)
		for (i = 0; i < c.count; i++)
			snapshot_destroy(ctl, &ids[i]);
	free(ids);
}

/*
 * Opens the control device and `f->dev`, attaches, and runs the fuzz
 * threads while `side` (a writer, a resizer) runs beside them until they
 * are done and `*side_stop` is set.
 */
static void fuzz_run(struct __test_metadata *_metadata, struct fuzz *f, unsigned int seed,
		     void *(*side)(void *), void *side_arg, int *side_stop)
{
	struct worker workers[THREADS];
	pthread_t threads[THREADS], side_thread;
	int i;

	f->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, f->ctl);
	/* A named storage file, empty, which snapshots grow. */
	i = open("/tmp/bsnap_fuzz_file", O_CREAT | O_TRUNC | O_RDWR | O_CLOEXEC, 0600);
	ASSERT_LE(0, i);
	close(i);
	f->fd = open(f->dev, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, f->fd);
	f->page = mmap(NULL, 3 * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);
	ASSERT_NE(MAP_FAILED, f->page);
	f->unmapped = f->page + 2 * 4096;
	ASSERT_EQ(0, munmap(f->page + 4096, 2 * 4096));
	ASSERT_EQ(0, blksnap_attach(f->fd));

	ASSERT_EQ(0, pthread_create(&side_thread, NULL, side, side_arg));
	for (i = 0; i < THREADS; i++) {
		workers[i].f = f;
		workers[i].seed = seed + i;
		ASSERT_EQ(0, pthread_create(&threads[i], NULL, fuzz_thread, &workers[i]));
	}
	for (i = 0; i < THREADS; i++)
		pthread_join(threads[i], NULL);
	__atomic_store_n(side_stop, 1, __ATOMIC_RELEASE);
	pthread_join(side_thread, NULL);
	TH_LOG("%d calls, %d unexpected errnos", f->calls, f->bad_errno);
	EXPECT_EQ(0, f->bad_errno);
	EXPECT_EQ(THREADS * CALLS_PER_THREAD, f->calls);
}

TEST(fuzz_every_command)
{
	struct fuzz f = { .lock = PTHREAD_MUTEX_INITIALIZER };
	unsigned int seed;
	const char *env;

	f.dev = getenv("BLKSNAP_TEST_RAM");
	f.store = getenv("BLKSNAP_TEST_STORAGE");
	if (!f.dev || !f.store)
		SKIP(return, "BLKSNAP_TEST_RAM or BLKSNAP_TEST_STORAGE not set");
	env = getenv("BLKSNAP_FUZZ_SEED");
	seed = env ? strtoul(env, NULL, 0) : (unsigned int)time(NULL);
	TH_LOG("seed %u, %d threads x %d calls (BLKSNAP_FUZZ_SEED=%u repeats it)", seed,
	       THREADS, CALLS_PER_THREAD, seed);

	ASSERT_EQ(0, run("modprobe blksnap"));
	fuzz_run(_metadata, &f, seed, writer_thread, &f, &f.stop);

	destroy_all(f.ctl);
	EXPECT_EQ(0, snapshot_count(f.ctl));
	blksnap_detach(f.fd);
	close(f.fd);
	close(f.ctl);
	munmap(f.page, 4096);
}

/* After the fuzzing, the module still makes correct snapshots. */
TEST(valid_snapshot_after_fuzzing)
{
	const char *dev = getenv("BLKSNAP_TEST_RAM"), *store = getenv("BLKSNAP_TEST_STORAGE");
	unsigned char *before = aligned_alloc(4096, 4 * MIB);
	unsigned char *buf = aligned_alloc(4096, 4 * MIB);
	struct blksnap_sectors all = { .offset = 0, .count = MIB >> 9 };
	struct blksnap_uuid id;
	char image[64];
	struct stat st;
	int ctl, fd, ifd;

	if (!dev || !store)
		SKIP(return, "BLKSNAP_TEST_RAM or BLKSNAP_TEST_STORAGE not set");
	ASSERT_NE(NULL, before);
	ASSERT_NE(NULL, buf);
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);
	fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, fd);
	fill_random(before, 4 * MIB, 5);
	ASSERT_EQ(0, pwrite_all(fd, before, 4 * MIB, 0));
	ASSERT_EQ(0, blksnap_attach(fd));
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	ASSERT_EQ(0, snapshot_add(fd, &id));
	ASSERT_EQ(0, storage_append(ctl, &id, store, &all, 1));
	ASSERT_EQ(0, snapshot_take(ctl, &id));
	fill_random(buf, 4 * MIB, 6);
	ASSERT_EQ(0, pwrite_all(fd, buf, 256 * 1024, 512 * 1024));
	ASSERT_EQ(0, fstat(fd, &st));
	snprintf(image, sizeof(image), "/dev/blksnap-image_%u:%u", major(st.st_rdev),
		 minor(st.st_rdev));
	ifd = open(image, O_RDONLY | O_DIRECT | O_CLOEXEC);
	ASSERT_LE(0, ifd);
	ASSERT_EQ(4 * MIB, pread(ifd, buf, 4 * MIB, 0));
	EXPECT_EQ(0, memcmp(buf, before, 4 * MIB));
	close(ifd);
	EXPECT_EQ(0, snapshot_destroy(ctl, &id));
	EXPECT_EQ(0, blksnap_detach(fd));
	close(fd);
	close(ctl);
	free(before);
	free(buf);
}

struct resizer {
	struct loopdev *l;
	int stop;	/* atomic */
};

/* Grows and shrinks the loop device under the fuzz, as LOOP_SET_CAPACITY does. */
static void *resizer_thread(void *p)
{
	struct resizer *r = p;
	int i = 0;

	while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
		if (truncate(r->l->img, (i++ % 2 ? 96 : 64) * MIB) ||
		    ioctl(r->l->fd, LOOP_SET_CAPACITY, 0))
			break;
		usleep(2000);
	}
	return NULL;
}

/*
 * Issue 12 item 9: the same fuzz on a loop device that is resized all the
 * time (so takes resize the maps under cbtdirty and cbtinfo), with the
 * module loaded with tracking blocks of 2^32 bytes and more.  Last: it
 * reloads the module.
 */
TEST(fuzz_with_resizes_and_huge_blocks)
{
	struct fuzz f = { .lock = PTHREAD_MUTEX_INITIALIZER };
	struct loopdev l = { .fd = -1 };
	struct resizer r = { .l = &l };
	unsigned int seed;
	char cmd[160];
	const char *env;

	f.store = getenv("BLKSNAP_TEST_STORAGE");
	if (!f.store)
		SKIP(return, "BLKSNAP_TEST_STORAGE not set");
	env = getenv("BLKSNAP_FUZZ_SEED");
	seed = env ? strtoul(env, NULL, 0) : (unsigned int)time(NULL);
	TH_LOG("seed %u (BLKSNAP_FUZZ_SEED=%u repeats it)", seed, seed);

	run("rmmod blksnap");
	/* Tracking blocks of 2^33 bytes and more: beyond the __u32 block size. */
	snprintf(cmd, sizeof(cmd), "modprobe blksnap %s %s %s", "tracking_block_minimum_shift=33",
		 "tracking_block_maximum_shift=40", "tracking_block_maximum_count=1");
	ASSERT_EQ(0, run(cmd));
	ASSERT_EQ(0, loop_create(&l, 64 * MIB));
	f.dev = l.path;
	fuzz_run(_metadata, &f, seed, resizer_thread, &r, &r.stop);

	destroy_all(f.ctl);
	blksnap_detach(f.fd);
	close(f.fd);
	close(f.ctl);
	munmap(f.page, 4096);
	loop_destroy(&l);
	EXPECT_EQ(0, run("rmmod blksnap"));
	EXPECT_EQ(0, run("modprobe blksnap"));
}

TEST_HARNESS_MAIN
