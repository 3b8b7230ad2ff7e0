/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Helpers shared by the blksnap selftests: filter ioctls, the control
 * device and module handling, each returning 0 or the errno.
 */
#ifndef BLKSNAP_LIB_H
#define BLKSNAP_LIB_H

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>

#define BLKSNAP_CONTROL "/dev/" BLKSNAP_CTL

static inline int sys_errno(int ret)
{
	return ret < 0 ? errno : 0;
}

static inline int filter_ioctl(int fd, unsigned long req, const char *name)
{
	struct blkfilter_name n = { 0 };

	strncpy((char *)n.name, name, sizeof(n.name) - 1);
	return sys_errno(ioctl(fd, req, &n));
}

static inline int blksnap_attach(int fd)
{
	return filter_ioctl(fd, BLKFILTER_ATTACH, "blksnap");
}

static inline int blksnap_detach(int fd)
{
	return filter_ioctl(fd, BLKFILTER_DETACH, "blksnap");
}

/* A BLKFILTER_CTL command; *ret gets the ioctl's value on success. */
static inline int blksnap_ctl(int fd, unsigned int cmd, void *opt,
			      unsigned int *optlen, int *ret)
{
	struct blkfilter_ctl ctl = {
		.cmd = cmd,
		.optlen = *optlen,
		.opt = (unsigned long)opt,
	};
	int r;

	strcpy((char *)ctl.name, "blksnap");
	r = ioctl(fd, BLKFILTER_CTL, &ctl);
	if (r < 0)
		return errno;
	*optlen = ctl.optlen;
	if (ret)
		*ret = r;
	return 0;
}

static inline int snapshot_create(int ctl_fd, struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_CREATE, id));
}

static inline int snapshot_destroy(int ctl_fd, const struct blksnap_uuid *id)
{
	return sys_errno(ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_DESTROY, id));
}

static inline int snapshot_add(int dev_fd, const struct blksnap_uuid *id)
{
	struct blksnap_snapshotadd arg = { .id = *id };
	unsigned int len = sizeof(arg);

	return blksnap_ctl(dev_fd, blkfilter_ctl_blksnap_snapshotadd, &arg,
			   &len, NULL);
}

/* Number of snapshots, or -errno. */
static inline int snapshot_count(int ctl_fd)
{
	struct blksnap_snapshot_collect c = { .count = 0, .ids = 0 };
	int r = ioctl(ctl_fd, IOCTL_BLKSNAP_SNAPSHOT_COLLECT, &c);

	if (r == 0)
		return 0;
	return errno == ENODATA ? (int)c.count : -errno;
}

static inline int run(const char *cmd)
{
	int status = system(cmd);

	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The module's reference count, or -1 if it is not loaded. */
static inline int module_refcnt(void)
{
	FILE *f = fopen("/sys/module/blksnap/refcnt", "r");
	int n = -1;

	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	fclose(f);
	return n;
}

#endif /* BLKSNAP_LIB_H */
