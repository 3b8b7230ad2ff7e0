// SPDX-License-Identifier: GPL-2.0
/*
 * Snapshots of mounted file systems on a kernel booted with
 * bdev_allow_write_mounted=0, where nobody may open a mounted file
 * system's device for writing.  blksnap only reads originals, so it must
 * not need to.  Run in a boot of its own with that parameter; without it
 * the program skips.
 */
#define _GNU_SOURCE
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#define ORIG "bsnap_wm_orig"
#define STORE "bsnap_wm_store"

static bool writers_refused_on_mounted(void)
{
	char line[4096] = "";
	FILE *f = fopen("/proc/cmdline", "r");

	if (!f)
		return false;
	if (!fgets(line, sizeof(line), f))
		line[0] = '\0';
	fclose(f);
	return strstr(line, "bdev_allow_write_mounted=0") != NULL;
}

static int write_pattern(const char *path, unsigned char c)
{
	char buf[4096];
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY | O_CLOEXEC, 0600);
	int i, err = 0;

	if (fd < 0)
		return -1;
	memset(buf, c, sizeof(buf));
	for (i = 0; i < 64 && !err; i++)
		err = write(fd, buf, sizeof(buf)) != sizeof(buf);
	err |= fsync(fd);
	close(fd);
	return err ? -1 : 0;
}

static int check_pattern(const char *path, unsigned char c)
{
	unsigned char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int i, j, bad = 0;

	if (fd < 0)
		return -1;
	for (i = 0; i < 64 && !bad; i++) {
		bad = read(fd, buf, sizeof(buf)) != sizeof(buf);
		for (j = 0; j < (int)sizeof(buf) && !bad; j++)
			bad = buf[j] != c;
	}
	close(fd);
	return bad ? -1 : 0;
}

/* Item 10: a mounted ext4 is snapshotted; its device refuses writers. */
TEST(item10_snapshot_of_mounted_fs_with_writers_refused)
{
	struct blksnap_sectors all = { .offset = 0, .count = (64ULL << 20) >> 9 };
	struct blksnap_uuid id;
	char cmd[160], image[64];
	int ctl, fd, wfd, mounted;

	if (!writers_refused_on_mounted())
		SKIP(return, "needs a boot with bdev_allow_write_mounted=0");
	ASSERT_EQ(0, nullb_available());
	ASSERT_EQ(0, nullb_create(ORIG, 64, NULL));
	ASSERT_EQ(0, nullb_create(STORE, 64, NULL));
	ASSERT_EQ(0, run("modprobe blksnap"));
	ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, ctl);

	ASSERT_EQ(0, run("mkfs.ext4 -q -F /dev/" ORIG));
	ASSERT_EQ(0, run("mkdir -p /tmp/wm /tmp/wmimg"));
	ASSERT_EQ(0, run("mount -t ext4 /dev/" ORIG " /tmp/wm"));
	ASSERT_EQ(0, write_pattern("/tmp/wm/before", 'A'));
	sync();

	/* The parameter is in effect: writers are refused. */
	wfd = open("/dev/" ORIG, O_RDWR | O_CLOEXEC);
	EXPECT_EQ(-1, wfd);
	EXPECT_EQ(EBUSY, errno);
	if (wfd >= 0)
		close(wfd);

	fd = open("/dev/" ORIG, O_RDONLY | O_CLOEXEC);
	ASSERT_LE(0, fd);
	ASSERT_EQ(0, image_path_of(fd, image, sizeof(image)));
	ASSERT_EQ(0, blksnap_attach(fd));
	ASSERT_EQ(0, snapshot_create(ctl, &id));
	ASSERT_EQ(0, snapshot_add(fd, &id));
	ASSERT_EQ(0, storage_append(ctl, &id, "/dev/" STORE, &all, 1));
	EXPECT_EQ(0, snapshot_take(ctl, &id));

	EXPECT_EQ(0, write_pattern("/tmp/wm/before", 'B'));
	EXPECT_EQ(0, write_pattern("/tmp/wm/after", 'C'));
	sync();
	snprintf(cmd, sizeof(cmd), "mount -t ext4 -o ro %s /tmp/wmimg", image);
	mounted = run(cmd);
	EXPECT_EQ(0, mounted);
	if (!mounted) {
		EXPECT_EQ(0, check_pattern("/tmp/wmimg/before", 'A'));
		EXPECT_NE(0, access("/tmp/wmimg/after", F_OK));
		run("umount /tmp/wmimg");
	}
	EXPECT_EQ(0, check_pattern("/tmp/wm/before", 'B'));

	snapshot_destroy(ctl, &id);
	EXPECT_EQ(0, run("umount /tmp/wm"));
	EXPECT_EQ(0, blksnap_detach(fd));
	close(fd);
	close(ctl);
	nullb_delete(ORIG);
	nullb_delete(STORE);
}

TEST_HARNESS_MAIN
