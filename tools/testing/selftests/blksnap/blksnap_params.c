// SPDX-License-Identifier: GPL-2.0
/*
 * blksnap's module parameters in sysfs: each of the nine is a file of mode
 * 0644 in /sys/module/blksnap/parameters that reads as the value in force,
 * a value written there applies to the next device attached (a device
 * tracked already keeps its change maps), and a value that does not parse
 * is refused with EINVAL and changes nothing.
 *
 * Each case starts from the module freshly loaded and leaves it loaded with
 * its defaults for the programs after it.  It also reads the kernel log it
 * caused: a splat fails the case that made it.
 *
 * Works on loop devices over files in /tmp.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 120

#define MIB (1ULL << 20)
#define PARAMS "/sys/module/blksnap/parameters/"

/* The parameters and their defaults, as blksnap.rs declares them. */
static const struct {
	const char *name;
	unsigned int def;
} params[] = {
	{ "tracking_block_minimum_shift", 16 },
	{ "tracking_block_maximum_count", 2097152 },
	{ "tracking_block_maximum_shift", 26 },
	{ "chunk_minimum_shift", 18 },
	{ "chunk_maximum_count", 2097152 },
	{ "chunk_maximum_shift", 26 },
	{ "chunk_maximum_in_queue", 16 },
	{ "free_diff_buffer_pool_size", 128 },
	{ "diff_storage_minimum", 2097152 },
};

/* Reads parameter `name` as sysfs shows it into buf; 0 or the errno. */
static int param_read(const char *name, char *buf, size_t len)
{
	char path[128];
	ssize_t n;
	int fd, err;

	buf[0] = 0;
	snprintf(path, sizeof(path), PARAMS "%s", name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	n = read(fd, buf, len - 1);
	err = n < 0 ? errno : 0;
	close(fd);
	buf[n < 0 ? 0 : n] = 0;
	return err;
}

/* Writes `val` to parameter `name` in one write(); 0 or the errno. */
static int param_write(const char *name, const char *val)
{
	char path[128];
	ssize_t n;
	int fd, err;

	snprintf(path, sizeof(path), PARAMS "%s", name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return errno;
	n = write(fd, val, strlen(val));
	err = n < 0 ? errno : (size_t)n == strlen(val) ? 0 : EIO;
	close(fd);
	return err;
}

static int cbtinfo(int fd, struct blksnap_cbtinfo *ci)
{
	unsigned int len = sizeof(*ci);

	return blksnap_ctl(fd, blkfilter_ctl_blksnap_cbtinfo, ci, &len, NULL);
}

FIXTURE(params) {
	int kmsg;
	struct loopdev a;
	struct loopdev b;
};

FIXTURE_SETUP(params)
{
	self->kmsg = -1;
	self->a.fd = -1;
	self->b.fd = -1;
	/* The defaults, whatever an earlier program loaded the module with. */
	run("rmmod blksnap 2>/dev/null");
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->kmsg = kmsg_mark();
	ASSERT_LE(0, self->kmsg);
}

FIXTURE_TEARDOWN(params)
{
	if (self->a.fd >= 0)
		blksnap_detach(self->a.fd);
	if (self->b.fd >= 0)
		blksnap_detach(self->b.fd);
	loop_destroy(&self->a);
	loop_destroy(&self->b);
	/* A value written in sysfs lasts until the module is unloaded. */
	EXPECT_EQ(0, run("rmmod blksnap && modprobe blksnap"));
	EXPECT_NO_SPLAT(self->kmsg);
}

/*
 * Item 12: the parameters were declared without a sysfs mode (perm 0), so
 * /sys/module/blksnap/parameters did not exist.
 */
TEST_F(params, item12_parameters_visible_in_sysfs)
{
	char path[128], buf[32], want[32];
	struct stat st;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(params); i++) {
		snprintf(path, sizeof(path), PARAMS "%s", params[i].name);
		ASSERT_EQ(0, stat(path, &st))
			TH_LOG("%s: %s", path, strerror(errno));
		EXPECT_TRUE(S_ISREG(st.st_mode));
		EXPECT_EQ(0644, st.st_mode & 07777)
			TH_LOG("%s: mode %o", params[i].name, st.st_mode & 07777);
		ASSERT_EQ(0, param_read(params[i].name, buf, sizeof(buf)));
		snprintf(want, sizeof(want), "%u\n", params[i].def);
		EXPECT_STREQ(want, buf) TH_LOG("%s", params[i].name);
	}
}

/*
 * Item 12: a value given to modprobe is the one sysfs shows, in decimal as
 * for a C uint parameter, and it can still be written (a parameter set at
 * load time was set once and for all).
 */
TEST_F(params, item12_parameter_set_at_load_reads_back_and_is_writable)
{
	const char *load =
		"modprobe blksnap chunk_maximum_in_queue=5 free_diff_buffer_pool_size=0x40";
	char buf[32];

	ASSERT_EQ(0, run("rmmod blksnap"));
	ASSERT_EQ(0, run(load));
	ASSERT_EQ(0, param_read("chunk_maximum_in_queue", buf, sizeof(buf)));
	EXPECT_STREQ("5\n", buf);
	ASSERT_EQ(0, param_read("free_diff_buffer_pool_size", buf, sizeof(buf)));
	EXPECT_STREQ("64\n", buf);

	EXPECT_EQ(0, param_write("chunk_maximum_in_queue", "6"));
	ASSERT_EQ(0, param_read("chunk_maximum_in_queue", buf, sizeof(buf)));
	EXPECT_STREQ("6\n", buf);
}

/*
 * Item 12: the tracking block of a device is chosen from the parameters
 * when the device is attached: after a write, the next device attached gets
 * the new size, the one attached before keeps its own.  16 MiB is 256
 * blocks of 64 KiB (shift 16), or 128 blocks of 128 KiB (shift 17).
 */
TEST_F(params, item12_parameter_write_applies_to_next_device)
{
	struct blksnap_cbtinfo ci;
	char buf[32];

	ASSERT_EQ(0, loop_create(&self->a, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->a.fd));
	ASSERT_EQ(0, cbtinfo(self->a.fd, &ci));
	EXPECT_EQ(1U << 16, ci.block_size);
	EXPECT_EQ(256, ci.block_count);

	/* As `echo 17 >` writes it, with a newline. */
	ASSERT_EQ(0, param_write("tracking_block_minimum_shift", "17\n"));
	ASSERT_EQ(0, param_read("tracking_block_minimum_shift", buf, sizeof(buf)));
	EXPECT_STREQ("17\n", buf);

	ASSERT_EQ(0, loop_create(&self->b, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->b.fd));
	ASSERT_EQ(0, cbtinfo(self->b.fd, &ci));
	EXPECT_EQ(1U << 17, ci.block_size);
	EXPECT_EQ(128, ci.block_count);

	ASSERT_EQ(0, cbtinfo(self->a.fd, &ci));
	EXPECT_EQ(1U << 16, ci.block_size);
	EXPECT_EQ(256, ci.block_count);

	/* Back to the default: attached again, the device has 64 KiB blocks. */
	ASSERT_EQ(0, param_write("tracking_block_minimum_shift", "16"));
	ASSERT_EQ(0, blksnap_detach(self->b.fd));
	ASSERT_EQ(0, blksnap_attach(self->b.fd));
	ASSERT_EQ(0, cbtinfo(self->b.fd, &ci));
	EXPECT_EQ(1U << 16, ci.block_size);
	EXPECT_EQ(256, ci.block_count);
}

/*
 * Item 12: what kstrtouint() would refuse is refused with EINVAL, and the
 * value in force stays: the next device still gets 64 KiB blocks.
 */
TEST_F(params, item12_parameter_rejects_garbage)
{
	static const char *const garbage[] = {
		"abc", "abc\n", "17abc", " 17", "-1", "4294967296", "1\n\n",
	};
	struct blksnap_cbtinfo ci;
	char buf[32];
	size_t i;

	for (i = 0; i < ARRAY_SIZE(garbage); i++) {
		EXPECT_EQ(EINVAL, param_write("tracking_block_minimum_shift", garbage[i]))
			TH_LOG("garbage[%zu]", i);
	}
	ASSERT_EQ(0, param_read("tracking_block_minimum_shift", buf, sizeof(buf)));
	EXPECT_STREQ("16\n", buf);

	ASSERT_EQ(0, loop_create(&self->a, 16 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->a.fd));
	ASSERT_EQ(0, cbtinfo(self->a.fd, &ci));
	EXPECT_EQ(1U << 16, ci.block_size);
	EXPECT_EQ(256, ci.block_count);
}

TEST_HARNESS_MAIN
