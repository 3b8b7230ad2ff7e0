// SPDX-License-Identifier: GPL-2.0

//! Files the kernel opens itself, by path.
//!
//! A driver that keeps its data in a file that user space names (a backing
//! file, a log) opens it with [`File::open`], holds it as an [`ARef<File>`]
//! for as long as it uses it, and may give it room with [`File::allocate`].
//!
//! C header: [`include/linux/fs.h`](srctree/include/linux/fs.h)

use super::File;
use crate::{
    bindings,
    block::bdev::BlockDevice,
    error::{from_err_ptr, to_result},
    prelude::*,
    sync::aref::ARef,
};
use core::ptr::NonNull;

/// What an opened path is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    Regular,
    /// A directory.
    Directory,
    /// A block device node.
    BlockDevice,
    /// Anything else: a character device, a FIFO, a socket.
    Other,
}

/// Where a file system keeps its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backing {
    /// On a block device it was mounted from (`FS_REQUIRES_DEV`).
    Device,
    /// In memory (tmpfs).
    Memory,
    /// Elsewhere: another file system (overlayfs), a server (NFS, FUSE).
    Other,
}

/// What direct I/O on a file needs of its buffers and offsets, in bytes, as
/// `statx(2)` reports it with `STATX_DIOALIGN`.  A file that takes no
/// direct I/O (a file system may fall back to its page cache for it) has
/// 0 for each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DioAlignment {
    /// The alignment of buffers in memory.
    pub memory: u32,
    /// The alignment of the offsets and lengths of writes.
    pub write: u32,
    /// The alignment of the offsets and lengths of reads: smaller than for
    /// writes on some file systems.
    pub read: u32,
}

impl File {
    /// Opens `path` as `filp_open()` does, with the `O_*` flags `flags`, and
    /// `mode` for a file it creates.  The path is looked up in the caller's
    /// file system context and with its credentials.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::{bindings, c_str, fs::{open::Kind, File}};
    ///
    /// let root = File::open(c_str!("/"), bindings::O_RDONLY, 0)?;
    /// assert_eq!(root.kind(), Kind::Directory);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn open(path: &CStr, flags: u32, mode: u16) -> Result<ARef<File>> {
        let flags = i32::try_from(flags).map_err(|_| EINVAL)?;
        // SAFETY: `path` is a NUL-terminated string that lives across the call.
        let file = from_err_ptr(unsafe { bindings::filp_open(path.as_char_ptr(), flags, mode) })?;
        // SAFETY: `filp_open` returned a valid file with a reference that is
        // now ours.  The file has no descriptor, so nobody calls `fdget_pos`
        // on it, as `File` requires.  `File` is transparent over `struct file`.
        Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast::<File>())) })
    }

    /// The inode of the file.
    fn inode(&self) -> *mut bindings::inode {
        // SAFETY: `f_inode` is set when a file is opened and never changes.
        unsafe { (*self.as_ptr()).f_inode }
    }

    /// What the file is.
    pub fn kind(&self) -> Kind {
        // SAFETY: The inode lives as long as the open file; its type never
        // changes.
        let mode = u32::from(unsafe { (*self.inode()).i_mode }) & bindings::S_IFMT;
        match mode {
            bindings::S_IFREG => Kind::Regular,
            bindings::S_IFDIR => Kind::Directory,
            bindings::S_IFBLK => Kind::BlockDevice,
            _ => Kind::Other,
        }
    }

    /// The size of the file in bytes, as it is now.
    pub fn size(&self) -> u64 {
        // SAFETY: The inode lives as long as the open file.
        let size = unsafe { bindings::i_size_read(self.inode()) };
        u64::try_from(size).unwrap_or(0)
    }

    /// Allocates `len` bytes of the file from `offset` with the
    /// `FALLOC_FL_*` flags `mode`, as `fallocate(2)` does; the file grows
    /// unless `mode` has `FALLOC_FL_KEEP_SIZE`.
    pub fn allocate(&self, mode: u32, offset: u64, len: u64) -> Result {
        let mode = i32::try_from(mode).map_err(|_| EINVAL)?;
        let offset = i64::try_from(offset).map_err(|_| EFBIG)?;
        let len = i64::try_from(len).map_err(|_| EFBIG)?;
        // SAFETY: The file is open; `vfs_fallocate` checks the rest.
        to_result(unsafe { bindings::vfs_fallocate(self.as_ptr(), mode, offset, len) })
    }

    /// What direct I/O on the file needs, or `None` if its file system
    /// does not tell.  Asked of the file system without a security check:
    /// the caller opened the file, and the answer is for the kernel.
    ///
    /// # Examples
    ///
    /// ```
    /// use kernel::fs::File;
    ///
    /// /// Whether direct I/O of single sectors may go to `file`.
    /// fn takes_sectors(file: &File) -> Result<bool> {
    ///     Ok(match file.dio_alignment()? {
    ///         Some(a) => a.write != 0 && a.write.max(a.read).max(a.memory) <= 512,
    ///         None => true,
    ///     })
    /// }
    /// ```
    pub fn dio_alignment(&self) -> Result<Option<DioAlignment>> {
        // SAFETY: An all-zero `kstat` is a valid one with nothing reported.
        let mut stat: bindings::kstat = unsafe { core::mem::zeroed() };
        let wanted = bindings::STATX_DIOALIGN | bindings::STATX_DIO_READ_ALIGN;
        // SAFETY: The file is open, so its path is valid; `stat` is ours.
        to_result(unsafe {
            bindings::vfs_getattr_nosec(
                &raw const (*self.as_ptr()).__bindgen_anon_1.f_path,
                &mut stat,
                wanted,
                bindings::AT_STATX_SYNC_AS_STAT,
            )
        })?;
        if stat.result_mask & bindings::STATX_DIOALIGN == 0 {
            return Ok(None);
        }
        let read = if stat.result_mask & bindings::STATX_DIO_READ_ALIGN != 0 {
            stat.dio_read_offset_align
        } else {
            stat.dio_offset_align
        };
        Ok(Some(DioAlignment {
            memory: stat.dio_mem_align,
            write: stat.dio_offset_align,
            read,
        }))
    }

    /// The file system's device number and the inode number: the same for
    /// every open of one file, through any of its names.
    pub fn identity(&self) -> (u32, u64) {
        // SAFETY: The inode and its super block live while the file is open;
        // neither number changes.
        unsafe { ((*(*self.inode()).i_sb).s_dev, (*self.inode()).i_ino) }
    }

    /// Whether the file is an active swap file, which nothing else may use.
    pub fn is_swap_file(&self) -> bool {
        // SAFETY: The inode lives while the file is open; the flag is read
        // once.
        unsafe { (*self.inode()).i_flags & bindings::S_SWAPFILE != 0 }
    }

    /// Where the file system of the file keeps its data.
    pub fn backing(&self) -> Backing {
        // SAFETY: The super block and its type live while the file is open
        // and do not change.
        let (flags, magic) = unsafe {
            let sb = (*self.inode()).i_sb;
            ((*(*sb).s_type).fs_flags, (*sb).s_magic)
        };
        if flags & bindings::FS_REQUIRES_DEV as i32 != 0 {
            Backing::Device
        } else if magic == bindings::TMPFS_MAGIC as usize {
            Backing::Memory
        } else {
            Backing::Other
        }
    }

    /// Calls `f` with the block device the file system of the file is
    /// mounted from, or `None` for one that has no single device (tmpfs, a
    /// network file system).
    pub fn with_fs_device<R>(&self, f: impl FnOnce(Option<&BlockDevice>) -> R) -> R {
        // SAFETY: The inode's super block lives while the file is open, and
        // so does the device it was mounted from.
        let bdev = unsafe { (*(*self.inode()).i_sb).s_bdev };
        if bdev.is_null() {
            f(None)
        } else {
            // SAFETY: `bdev` is valid while the file is open, see above, and
            // `f` cannot keep the borrow.
            f(Some(unsafe { BlockDevice::from_raw(bdev) }))
        }
    }
}
