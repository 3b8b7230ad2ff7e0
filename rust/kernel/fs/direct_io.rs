// SPDX-License-Identifier: GPL-2.0

//! Asynchronous direct I/O of pages that an object owns, on a file.
//!
//! The file counterpart of [`page_io`]: a driver that keeps data in a file
//! sends it through the file system, past the page cache, without waiting,
//! and is told when the I/O ended, as the loop driver does for a backing
//! file.  [`submit`] keeps the owner alive until then, so the file and the
//! pages it borrows stay.
//!
//! C header: [`include/linux/fs.h`](srctree/include/linux/fs.h)
//!
//! [`page_io`]: crate::block::bio::page_io

use super::File;
use crate::{
    alloc::KVec, bindings, block::bio::page_io::Owner, page::Page, page::PAGE_SIZE, prelude::*,
    sync::Arc,
};
use core::{marker::PhantomData, mem::MaybeUninit};

/// While it exists, memory the task allocates is allocated without I/O, as
/// `memalloc_noio_save()` arranges: for calls into a file system from a
/// task that must not wait for I/O that may wait for it.
pub struct NoIo {
    flags: u32,
    /// The scope belongs to the task that made it.
    _not_send: PhantomData<*mut ()>,
}

impl NoIo {
    /// Starts a no-I/O scope, which ends when the guard is dropped.
    pub fn new() -> Self {
        // SAFETY: Always safe to call; `drop` restores the flags.
        let flags = unsafe { bindings::memalloc_noio_save() };
        Self {
            flags,
            _not_send: PhantomData,
        }
    }
}

impl Default for NoIo {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for NoIo {
    fn drop(&mut self) {
        // SAFETY: Restores what `new` saved, on the same task.
        unsafe { bindings::memalloc_noio_restore(self.flags) };
    }
}

/// A transfer between pages and a file.
pub struct FileIo<'a> {
    /// The file, opened with `O_DIRECT`.
    pub file: &'a File,
    /// Whether the pages are written to the file, or read into.
    pub write: bool,
    /// Where in the file, in bytes.
    pub pos: u64,
    /// The pages; the I/O uses as many as `bytes` needs.
    pub pages: &'a [Page],
    /// How many bytes move.
    pub bytes: usize,
}

/// One I/O in flight: the iocb the file system completes, first, so that
/// the completion finds the rest, and the vector the file system's bios
/// point into.
#[repr(C)]
struct InFlight<T> {
    iocb: bindings::kiocb,
    /// Ends the I/O: `complete::<T>`, which is in the module of the owner.
    finish: unsafe fn(*mut bindings::kiocb, isize),
    bvecs: KVec<bindings::bio_vec>,
    owner: *const T,
    bytes: usize,
    write: bool,
}

/// Sends `io(&owner)` without waiting, and keeps `owner` until it ended;
/// then calls `T::io_ended` with it, from the file system's completion
/// context (which may be interrupt context) or from here.  An I/O that
/// moved fewer bytes than asked (the file was truncated) failed, and so did
/// one that `io` did not give (`None`).
///
/// Memory for the I/O is allocated without I/O, and so is any memory the
/// file system allocates while it takes the I/O in: reclaim must not write
/// to a device whose writes may wait for this I/O.
pub fn submit<T: Owner>(owner: Arc<T>, io: for<'a> fn(&'a T) -> Option<FileIo<'a>>) {
    let raw_owner = Arc::into_raw(owner);
    // SAFETY: `raw_owner` holds a reference until `complete` takes it back,
    // so the borrow lives as long as the I/O.
    let req = io(unsafe { &*raw_owner });
    let prepared = req.as_ref().map(|req| (prepare(req, raw_owner), req));
    let (in_flight, req) = match prepared {
        Some((Ok(in_flight), req)) => (in_flight, req),
        _ => {
            // SAFETY: Nothing was sent: the reference comes back.
            let owner = unsafe { Arc::from_raw(raw_owner) };
            return T::io_ended(owner, false);
        }
    };
    let raw = KBox::into_raw(in_flight);
    // SAFETY: `raw` is ours until the I/O completes; its vector holds
    // `bvecs.len()` valid entries covering `bytes`, and stays until then.
    let mut iter = unsafe {
        bvec_iter(
            (*raw).bvecs.as_ptr(),
            (*raw).bvecs.len(),
            (*raw).bytes,
            req.write,
        )
    };
    // SAFETY: The iocb and the vector stay in `raw` until the completion,
    // here or in `file_io_end`, frees it.
    let ret = unsafe { run(req.file, &raw mut (*raw).iocb, iter.as_mut_ptr(), req.write) };
    if ret != -(bindings::EIOCBQUEUED as isize) {
        // SAFETY: The file system is done with the iocb; a write that was
        // not queued has its freeze protection dropped already.
        unsafe { complete::<T>(raw, ret, false) };
    }
}

/// The vector of the pages of `req`.
fn page_vecs(req: &FileIo<'_>) -> Result<KVec<bindings::bio_vec>> {
    let npages = req.bytes.div_ceil(PAGE_SIZE);
    if req.bytes == 0 || npages > req.pages.len() {
        return Err(EINVAL);
    }
    let mut bvecs = KVec::with_capacity(npages, GFP_NOIO)?;
    let mut left = req.bytes;
    for page in &req.pages[..npages] {
        let len = left.min(PAGE_SIZE);
        bvecs.push(
            bindings::bio_vec {
                bv_page: page.as_ptr(),
                bv_len: len as u32,
                bv_offset: 0,
            },
            GFP_NOIO,
        )?;
        left -= len;
    }
    Ok(bvecs)
}

/// An iocb for direct I/O on `file` at `pos`, synchronous unless
/// `ki_complete` is set.
fn direct_iocb(file: &File, pos: u64) -> Result<bindings::kiocb> {
    let pos = i64::try_from(pos).map_err(|_| EFBIG)?;
    // SAFETY: An all-zero `kiocb` is a valid one with nothing set, as
    // `init_sync_kiocb` starts from.
    let mut iocb: bindings::kiocb = unsafe { core::mem::zeroed() };
    iocb.ki_filp = file.as_ptr();
    iocb.ki_pos = pos;
    // SAFETY: The file is open.
    iocb.ki_flags = (unsafe { (*file.as_ptr()).f_iocb_flags } | bindings::IOCB_DIRECT) as i32;
    Ok(iocb)
}

/// Runs the I/O that `iocb` and `iter` describe, under a no-I/O scope.
///
/// # Safety
///
/// `iocb` is set up for `file` and `iter` describes memory that stays valid
/// until the I/O ended: when this returns unless it returns
/// `-EIOCBQUEUED`, else when `ki_complete` is called.
unsafe fn run(
    file: &File,
    iocb: *mut bindings::kiocb,
    iter: *mut bindings::iov_iter,
    write: bool,
) -> isize {
    let _noio = NoIo::new();
    // SAFETY: See the contract; the file is open.
    unsafe {
        if write {
            bindings::vfs_iocb_iter_write(file.as_ptr(), iocb, iter)
        } else {
            bindings::vfs_iocb_iter_read(file.as_ptr(), iocb, iter)
        }
    }
}

/// The result of a synchronous I/O that was to move `len` bytes.
fn sync_result(ret: isize, len: usize) -> Result {
    match usize::try_from(ret) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(EIO),
        Err(_) => Err(Error::from_errno(ret as i32)),
    }
}

/// Moves the pages of `io` and waits for it, as [`submit`] does without
/// waiting.
pub fn transfer_pages(io: FileIo<'_>) -> Result {
    let bvecs = page_vecs(&io)?;
    let mut iocb = direct_iocb(io.file, io.pos)?;
    // SAFETY: `bvecs` holds `len()` valid entries covering `bytes`, and
    // lives across the I/O.
    let mut iter = unsafe { bvec_iter(bvecs.as_ptr(), bvecs.len(), io.bytes, io.write) };
    // SAFETY: The iocb is synchronous and the pages and `bvecs` live across
    // the call.
    let ret = unsafe { run(io.file, &mut iocb, iter.as_mut_ptr(), io.write) };
    sync_result(ret, io.bytes)
}

/// An iterator over the `nr` vector entries at `bvecs`, `bytes` long: the
/// source of a write to the file, or where a read of it goes.
///
/// # Safety
///
/// `bvecs` points at `nr` valid entries that cover `bytes` and stay valid
/// while the iterator is used.
unsafe fn bvec_iter(
    bvecs: *const bindings::bio_vec,
    nr: usize,
    bytes: usize,
    write: bool,
) -> MaybeUninit<bindings::iov_iter> {
    let mut iter = MaybeUninit::uninit();
    let direction = if write {
        bindings::ITER_SOURCE
    } else {
        bindings::ITER_DEST
    };
    // SAFETY: See the contract; `iov_iter_bvec` initialises all of `iter`.
    unsafe { bindings::iov_iter_bvec(iter.as_mut_ptr(), direction, bvecs, nr, bytes) };
    iter
}

/// Builds the I/O of `req` for the owner `raw_owner`.
fn prepare<T: Owner>(req: &FileIo<'_>, raw_owner: *const T) -> Result<KBox<InFlight<T>>> {
    let bvecs = page_vecs(req)?;
    let mut iocb = direct_iocb(req.file, req.pos)?;
    iocb.ki_complete = Some(file_io_end);
    Ok(KBox::new(
        InFlight {
            iocb,
            finish: finish_queued::<T>,
            bvecs,
            owner: raw_owner,
            bytes: req.bytes,
            write: req.write,
        },
        GFP_NOIO,
    )?)
}

/// Ends an I/O: frees what it used and hands the owner to `T::io_ended`.
///
/// # Safety
///
/// `raw` came from `submit`, its I/O is over, and this is called once.
/// `queued` is true when the file system queued the I/O, so that a write
/// still holds freeze protection.
unsafe fn complete<T: Owner>(raw: *mut InFlight<T>, ret: isize, queued: bool) {
    // SAFETY: `raw` is ours again, see the contract.
    let mut in_flight = unsafe { KBox::from_raw(raw) };
    if queued && in_flight.write {
        // SAFETY: A queued write keeps the freeze protection that
        // `vfs_iocb_iter_write` took until it ends, now.
        unsafe { bindings::kiocb_end_write(&raw mut in_flight.iocb) };
    }
    let ok = usize::try_from(ret).is_ok_and(|n| n == in_flight.bytes);
    // SAFETY: `submit` handed over this reference with the I/O.
    let owner = unsafe { Arc::from_raw(in_flight.owner) };
    drop(in_flight);
    T::io_ended(owner, ok);
}

/// Ends a queued I/O for an owner `T`.
///
/// # Safety
///
/// `iocb` is the iocb of an `InFlight<T>` that the file system queued, and
/// it is completing now.
unsafe fn finish_queued<T: Owner>(iocb: *mut bindings::kiocb, ret: isize) {
    // `iocb` is the first field of the `#[repr(C)]` `InFlight<T>`.
    let raw = iocb.cast::<InFlight<T>>();
    // SAFETY: See the contract: the I/O is over and this runs once.
    unsafe { complete::<T>(raw, ret, true) };
}

/// The `ki_complete` of every I/O of [`submit`]: not generic, so that it is
/// in the kernel, not in the module of the owner.  The owner's code runs
/// inside an RCU read-side section, which unloading a module waits for: the
/// file system may complete from a work item (the conversion of unwritten
/// extents, errors), and the module's code must stay until that returned.
///
/// # Safety
///
/// `iocb` is the iocb of an `InFlight` that the file system queued, and it
/// is completing now.
unsafe extern "C" fn file_io_end(iocb: *mut bindings::kiocb, ret: crate::ffi::c_long) {
    let _rcu = crate::sync::rcu::read_lock();
    // `InFlight<T>` is `#[repr(C)]` and starts with the iocb and `finish`,
    // whatever `T` is.
    // SAFETY: See the contract.
    let finish = unsafe { (*iocb.cast::<InFlightHead>()).finish };
    // SAFETY: See the contract; `finish` matches the `InFlight<T>`.
    unsafe { finish(iocb, ret) };
}

/// The start of every `InFlight<T>`.
#[repr(C)]
struct InFlightHead {
    iocb: bindings::kiocb,
    finish: unsafe fn(*mut bindings::kiocb, isize),
}

/// Moves `len` bytes between `file` at `pos` and the data of `bio` from
/// `offset` bytes into it, with direct I/O, and waits for it: a read of the
/// file fills that stretch of the bio, a write stores it.  Fails with `EIO`
/// if fewer bytes moved (the file was truncated), `EINVAL` if the stretch
/// is not within the bio.  Allocations are made without I/O, as `submit`'s.
pub fn transfer_bio(
    file: &File,
    pos: u64,
    bio: &crate::block::bio::Bio,
    offset: usize,
    len: usize,
    write: bool,
) -> Result {
    let raw = bio.raw();
    // SAFETY: The bio is valid while borrowed; its iterator says which part
    // of its vector is its data.
    let (vecs, mut idx, done, size) = unsafe {
        (
            (*raw).bi_io_vec,
            (*raw).bi_iter.bi_idx as usize,
            (*raw).bi_iter.bi_offset as usize,
            (*raw).bi_iter.bi_size as usize,
        )
    };
    if len == 0 || offset.checked_add(len).is_none_or(|end| end > size) {
        return Err(EINVAL);
    }
    // The vector entries that hold the stretch: the data holds `size`
    // bytes from `done` into entry `idx`, so the walk stays within it.
    let mut skip = done + offset;
    // SAFETY: Entries from `idx` on cover the bio's data, see above.
    let len_at = |i: usize| unsafe { (*vecs.add(i)).bv_len as usize };
    while skip >= len_at(idx) {
        skip -= len_at(idx);
        idx += 1;
    }
    let mut nr = 0;
    let mut covered = 0;
    while covered < skip + len {
        covered += len_at(idx + nr);
        nr += 1;
    }
    // SAFETY: Entries `idx..idx + nr` are valid and cover `skip + len`
    // bytes; the bio and its vector outlive the I/O, which ends before we
    // return.
    let mut iter = unsafe { bvec_iter(vecs.add(idx), nr, skip + len, write) };
    // SAFETY: The iterator was set up above and holds `skip + len` bytes.
    unsafe { bindings::iov_iter_advance(iter.as_mut_ptr(), skip) };
    let mut iocb = direct_iocb(file, pos)?;
    // SAFETY: The iocb is synchronous; the bio's pages live across the call.
    let ret = unsafe { run(file, &mut iocb, iter.as_mut_ptr(), write) };
    sync_result(ret, len)
}
