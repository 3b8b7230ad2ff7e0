// SPDX-License-Identifier: GPL-2.0
/*
 * Who may do what: every command on the control device needs
 * CAP_SYS_ADMIN (a process without it must not take another agent's
 * events), and difference storage is refused where the module would write
 * over something else's data: another snapshot's storage (also through a
 * partition of the same disk) or an image.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "../kselftest_harness.h"
#include "blksnap_lib.h"

#undef TEST_TIMEOUT_DEFAULT
#define TEST_TIMEOUT_DEFAULT 120

#define MIB (1ULL << 20)

FIXTURE(access) {
	int ctl;
	struct loopdev orig;
	struct loopdev store;
	struct blksnap_uuid a, b;
	struct blksnap_snapshot_event *ev;
};

FIXTURE_SETUP(access)
{
	ASSERT_EQ(0, run("modprobe blksnap"));
	self->ctl = open(BLKSNAP_CONTROL, O_RDWR | O_CLOEXEC);
	ASSERT_LE(0, self->ctl);
	self->orig.fd = -1;
	self->store.fd = -1;
	ASSERT_EQ(0, loop_create(&self->orig, 16 * MIB));
	ASSERT_EQ(0, loop_create(&self->store, 40 * MIB));
	ASSERT_EQ(0, blksnap_attach(self->orig.fd));
	self->ev = calloc(1, sizeof(*self->ev));
	ASSERT_NE(NULL, self->ev);
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->a));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->b));
}

FIXTURE_TEARDOWN(access)
{
	snapshot_destroy(self->ctl, &self->a);
	snapshot_destroy(self->ctl, &self->b);
	if (self->orig.fd >= 0)
		blksnap_detach(self->orig.fd);
	loop_destroy(&self->orig);
	loop_destroy(&self->store);
	free(self->ev);
	close(self->ctl);
}

static int give(int ctl, const struct blksnap_uuid *id, const char *path,
		unsigned long long first, unsigned long long sectors)
{
	struct blksnap_sectors r = { .offset = first, .count = sectors };

	return storage_append(ctl, id, path, &r, 1);
}

/* Item 11: VERSION, COLLECT and WAIT_EVENT skipped the capability check. */
TEST_F(access, every_control_command_needs_cap_sys_admin)
{
	int status;
	pid_t pid = fork();

	ASSERT_LE(0, pid);
	if (pid == 0) {
		struct blksnap_snapshot_collect c = { .count = 0, .ids = 0 };
		struct blksnap_version v;

		if (setresuid(65534, 65534, 65534))
			_exit(10);
		/* The descriptor was opened by root: only the capability counts. */
		if (sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_VERSION, &v)) != EPERM)
			_exit(1);
		if (sys_errno(ioctl(self->ctl, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c)) != EPERM)
			_exit(2);
		if (snapshot_wait_event(self->ctl, &self->a, 0, self->ev) != EPERM)
			_exit(3);
		_exit(0);
	}
	ASSERT_EQ(pid, waitpid(pid, &status, 0));
	EXPECT_EQ(0, WEXITSTATUS(status));
	/* The snapshot's first event is still there for the agent. */
	ASSERT_EQ(0, snapshot_wait_event(self->ctl, &self->a, 0, self->ev));
	EXPECT_EQ(blksnap_event_code_low_free_space, self->ev->code);
}

/* Item 11: ranges overlapping another snapshot's storage were accepted. */
TEST_F(access, storage_of_another_snapshot_is_refused)
{
	ASSERT_EQ(0, give(self->ctl, &self->a, self->store.path, 0, 8192));
	EXPECT_EQ(EBUSY, give(self->ctl, &self->b, self->store.path, 4096, 8192));
	EXPECT_EQ(EBUSY, give(self->ctl, &self->b, self->store.path, 8191, 1));
	EXPECT_EQ(0, give(self->ctl, &self->b, self->store.path, 8192, 8192));
	/* Free again once the snapshot that had them is gone. */
	ASSERT_EQ(0, snapshot_destroy(self->ctl, &self->a));
	EXPECT_EQ(0, give(self->ctl, &self->b, self->store.path, 0, 8192));
	/* Taken, with the ranges still its own. */
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->b));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->b));
	ASSERT_EQ(0, snapshot_create(self->ctl, &self->a));
	EXPECT_EQ(EBUSY, give(self->ctl, &self->a, self->store.path, 100, 8));
	EXPECT_EQ(0, give(self->ctl, &self->a, self->store.path, 16384, 8192));
}

/* The same sectors through a partition and through its disk. */
TEST_F(access, storage_through_a_partition_and_its_disk)
{
	char part[48];

	ASSERT_EQ(0, loop_partition(&self->store));
	snprintf(part, sizeof(part), "%sp1", self->store.path);
	/* Partition 1 starts at sector 2048 of the disk. */
	ASSERT_EQ(0, give(self->ctl, &self->a, part, 0, 4096));
	EXPECT_EQ(EBUSY, give(self->ctl, &self->b, self->store.path, 4096, 8));
	EXPECT_EQ(EBUSY, give(self->ctl, &self->b, self->store.path, 2048, 8));
	EXPECT_EQ(0, give(self->ctl, &self->b, self->store.path, 2048 + 4096, 8));
	EXPECT_EQ(0, give(self->ctl, &self->b, self->store.path, 8, 8));
}

/* Item 11: ranges on the snapshot's own image were accepted. */
TEST_F(access, storage_on_an_image_is_refused)
{
	char image[64];
	struct stat st;

	ASSERT_EQ(0, give(self->ctl, &self->a, self->store.path, 0, 8192));
	ASSERT_EQ(0, snapshot_add(self->orig.fd, &self->a));
	ASSERT_EQ(0, snapshot_take(self->ctl, &self->a));
	ASSERT_EQ(0, fstat(self->orig.fd, &st));
	snprintf(image, sizeof(image), "/dev/%s_%u:%u", BLKSNAP_IMAGE_NAME, major(st.st_rdev),
		 minor(st.st_rdev));
	/* Its own image, and another snapshot's. */
	EXPECT_EQ(EINVAL, give(self->ctl, &self->a, image, 0, 8));
	EXPECT_EQ(EINVAL, give(self->ctl, &self->b, image, 0, 8));
}

TEST_HARNESS_MAIN
