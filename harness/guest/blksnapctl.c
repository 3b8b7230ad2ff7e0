// SPDX-License-Identifier: GPL-2.0
/*
 * blksnapctl: a minimal command-line front end to the blksnap interface, for
 * the demo and for poking at the module by hand.
 *
 *   blksnapctl attach|detach DEVICE
 *   blksnapctl create                       prints the new snapshot id
 *   blksnapctl add DEVICE ID
 *   blksnapctl storage ID DEVICE FIRST_SECTOR SECTORS
 *   blksnapctl take|destroy ID
 *   blksnapctl info DEVICE                  error code and image name
 *   blksnapctl cbt DEVICE                   tracker facts and changed blocks
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>
#include <linux/blk-filter.h>
#include <linux/blksnap.h>

static int fail(const char *what)
{
	fprintf(stderr, "blksnapctl: %s: %s\n", what, strerror(errno));
	return 1;
}

static int open_dev(const char *path)
{
	int fd = open(path, O_RDWR);

	if (fd < 0) {
		perror(path);
		exit(1);
	}
	return fd;
}

static int control(void)
{
	return open_dev("/dev/" BLKSNAP_CTL);
}

static void parse_id(const char *s, struct blksnap_uuid *id)
{
	int i = 0;

	for (; *s && i < 16; s++) {
		unsigned int b;

		if (*s == '-')
			continue;
		if (sscanf(s, "%2x", &b) != 1)
			break;
		id->b[i++] = b;
		s++;
	}
	if (i != 16) {
		fprintf(stderr, "blksnapctl: bad snapshot id\n");
		exit(2);
	}
}

static void print_id(const struct blksnap_uuid *id)
{
	int i;

	for (i = 0; i < 16; i++)
		printf("%02x%s", id->b[i], (i == 3 || i == 5 || i == 7 || i == 9) ? "-" : "");
	printf("\n");
}

static int ctl(int fd, unsigned int cmd, void *arg, unsigned int len)
{
	struct blkfilter_ctl c = { .cmd = cmd, .optlen = len, .opt = (uintptr_t)arg };

	strcpy((char *)c.name, "blksnap");
	return ioctl(fd, BLKFILTER_CTL, &c);
}

static int filter(const char *dev, unsigned long req)
{
	struct blkfilter_name n = { .name = "blksnap" };

	if (ioctl(open_dev(dev), req, &n))
		return fail(dev);
	return 0;
}

static int cbt(const char *dev)
{
	struct blksnap_cbtinfo info;
	struct blksnap_cbtmap m;
	unsigned char *map;
	unsigned int i, changed = 0;
	int fd = open_dev(dev);

	if (ctl(fd, blkfilter_ctl_blksnap_cbtinfo, &info, sizeof(info)) < 0)
		return fail("cbtinfo");
	printf("%llu bytes in %u blocks of %u bytes; last snapshot #%u\n",
	       (unsigned long long)info.device_capacity, info.block_count,
	       info.block_size, info.changes_number);
	map = malloc(info.block_count);
	m = (struct blksnap_cbtmap){ .offset = 0, .length = info.block_count,
				     .buffer = (uintptr_t)map };
	if (!map || ctl(fd, blkfilter_ctl_blksnap_cbtmap, &m, sizeof(m)) < 0)
		return fail("cbtmap");
	printf("blocks changed before snapshot #%u and after the one before:",
	       info.changes_number);
	for (i = 0; i < info.block_count; i++) {
		if (info.changes_number > 1 && map[i] == info.changes_number) {
			if (changed++ < 20)
				printf(" %u", i);
		}
	}
	printf("%s (%u of %u)\n", changed > 20 ? " ..." : "", changed, info.block_count);
	return 0;
}

int main(int argc, char **argv)
{
	struct blksnap_uuid id;

	if (argc < 2)
		goto usage;
	if (!strcmp(argv[1], "attach") && argc == 3)
		return filter(argv[2], BLKFILTER_ATTACH);
	if (!strcmp(argv[1], "detach") && argc == 3)
		return filter(argv[2], BLKFILTER_DETACH);
	if (!strcmp(argv[1], "create") && argc == 2) {
		if (ioctl(control(), IOCTL_BLKSNAP_SNAPSHOT_CREATE, &id))
			return fail("create");
		print_id(&id);
		return 0;
	}
	if (!strcmp(argv[1], "add") && argc == 4) {
		struct blksnap_snapshotadd a;

		parse_id(argv[3], &a.id);
		if (ctl(open_dev(argv[2]), blkfilter_ctl_blksnap_snapshotadd, &a, sizeof(a)) < 0)
			return fail("add");
		return 0;
	}
	if (!strcmp(argv[1], "storage") && argc == 6) {
		struct blksnap_sectors r = { strtoull(argv[4], NULL, 0),
					     strtoull(argv[5], NULL, 0) };
		struct blksnap_snapshot_append_storage a = {
			.bdev_path = (uintptr_t)argv[3],
			.bdev_path_size = strlen(argv[3]) + 1,
			.count = 1,
			.ranges = (uintptr_t)&r,
		};

		parse_id(argv[2], &a.id);
		if (ioctl(control(), IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE, &a))
			return fail("storage");
		return 0;
	}
	if ((!strcmp(argv[1], "take") || !strcmp(argv[1], "destroy")) && argc == 3) {
		parse_id(argv[2], &id);
		if (ioctl(control(), argv[1][0] == 't' ? IOCTL_BLKSNAP_SNAPSHOT_TAKE :
			  IOCTL_BLKSNAP_SNAPSHOT_DESTROY, &id))
			return fail(argv[1]);
		return 0;
	}
	if (!strcmp(argv[1], "info") && argc == 3) {
		struct blksnap_snapshotinfo info;

		if (ctl(open_dev(argv[2]), blkfilter_ctl_blksnap_snapshotinfo, &info,
			sizeof(info)) < 0)
			return fail("info");
		printf("error %d, image /dev/%s\n", info.error_code, info.image);
		return 0;
	}
	if (!strcmp(argv[1], "cbt") && argc == 3)
		return cbt(argv[2]);
usage:
	fprintf(stderr, "usage: see the comment at the top of blksnapctl.c\n");
	return 2;
}
