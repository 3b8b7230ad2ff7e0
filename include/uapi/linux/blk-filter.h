/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * User interface of block device filters: attach a named filter to a block
 * device, detach it, and pass it filter-specific commands.
 */
#ifndef _UAPI_LINUX_BLK_FILTER_H
#define _UAPI_LINUX_BLK_FILTER_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* Room for a filter name, including its terminating NUL. */
#define BLKFILTER_NAME_LENGTH	32

/**
 * struct blkfilter_name - names the filter for BLKFILTER_ATTACH and
 *	BLKFILTER_DETACH
 * @name: NUL-terminated name of a registered filter.
 */
struct blkfilter_name {
	__u8 name[BLKFILTER_NAME_LENGTH];
};

/**
 * struct blkfilter_ctl - a filter-specific command for BLKFILTER_CTL
 * @name: NUL-terminated name of the filter attached to the device.
 * @cmd: Command code, defined by that filter.
 * @optlen: Size of the buffer at @opt in bytes.  Only read: whatever the
 *	filter answers is in that buffer or in the ioctl's return value.
 * @opt: User space address of the command's arguments.
 */
struct blkfilter_ctl {
	__u8 name[BLKFILTER_NAME_LENGTH];
	__u32 cmd;
	__u32 optlen;
	__u64 opt;
};

/* 143-145 in the 0x12 block ioctl space; see uapi/linux/fs.h */
#define BLKFILTER_ATTACH	_IOWR(0x12, 143, struct blkfilter_name)
#define BLKFILTER_DETACH	_IOWR(0x12, 144, struct blkfilter_name)
#define BLKFILTER_CTL		_IOWR(0x12, 145, struct blkfilter_ctl)

#endif /* _UAPI_LINUX_BLK_FILTER_H */
