// SPDX-License-Identifier: GPL-2.0
/*
 * blkfilter: issue one block device filter ioctl and print the answer.
 *
 *   blkfilter attach|detach DEVICE NAME
 *   blkfilter ctl DEVICE NAME CMD
 *   blkfilter drop-root attach|detach|ctl ...   (the same, as user nobody)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/blk-filter.h>

static int usage(void)
{
	fprintf(stderr, "usage: blkfilter [drop-root] attach|detach|ctl DEVICE NAME [CMD]\n");
	return 2;
}

int main(int argc, char **argv)
{
	struct blkfilter_name name;
	struct blkfilter_ctl ctl;
	int drop_root = 0, fd, ret;
	unsigned long req;
	void *arg;

	if (argc > 1 && !strcmp(argv[1], "drop-root")) {
		drop_root = 1;
		argv++;
		argc--;
	}
	if (argc < 4)
		return usage();

	memset(&name, 0, sizeof(name));
	memset(&ctl, 0, sizeof(ctl));
	/* Deliberately no NUL if the name fills the buffer: the kernel must cope. */
	memcpy(name.name, argv[3], strnlen(argv[3], sizeof(name.name)));
	memcpy(ctl.name, name.name, sizeof(ctl.name));

	if (!strcmp(argv[1], "attach")) {
		req = BLKFILTER_ATTACH;
		arg = &name;
	} else if (!strcmp(argv[1], "detach")) {
		req = BLKFILTER_DETACH;
		arg = &name;
	} else if (!strcmp(argv[1], "ctl") && argc > 4) {
		req = BLKFILTER_CTL;
		ctl.cmd = strtoul(argv[4], NULL, 0);
		arg = &ctl;
	} else {
		return usage();
	}

	fd = open(argv[2], O_RDWR);
	if (fd < 0) {
		perror(argv[2]);
		return 1;
	}
	if (drop_root && setresuid(65534, 65534, 65534)) {
		perror("setresuid");
		return 1;
	}
	ret = ioctl(fd, req, arg);
	printf("%s %s %.32s%s: %s\n", argv[1], argv[2], argv[3],
	       drop_root ? " (as nobody)" : "",
	       ret < 0 ? strerror(errno) : "ok");
	return ret < 0 ? 1 : 0;
}
