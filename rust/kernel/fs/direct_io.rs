// SPDX-License-Identifier: GPL-2.0

//! Direct I/O on a file, past the page cache, without waiting.
//!
//! Counterparts of block I/O, for a driver that keeps data in a file:
//! [`submit`] sends pages that an object owns and tells it when the I/O
//! ended, as [`page_io`] does on a device, keeping the owner (and so the
//! file and the pages) alive until then, and [`submit_merged`] sends the
//! I/Os of several owners that follow one another in a file as one;
//! [`FileBatch`] moves stretches of bios between their data and files, as a
//! `Batch` of bio parts does, and waits for them together;
//! [`read_from_files`] fills a read bio of the driver's disk from files
//! without waiting, as a forwarded clone does.
//!
//! C header: [`include/linux/fs.h`](srctree/include/linux/fs.h)
//!
//! [`page_io`]: crate::block::io::page_io

use super::File;
use crate::{
    alloc::{allocator::Kmalloc, IntoIter, KVec},
    bindings,
    block::{
        bio::{Bio, DiskBio, Operation, Status},
        forward::Held,
        io::{
            batch::{Ended, InFlight as PartsInFlight, PartList},
            page_io::Owner,
        },
        SECTOR_SHIFT,
    },
    page::Page,
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{Atomic, Full, Relaxed},
        Arc,
    },
};
use core::{marker::PhantomData, mem::MaybeUninit, ptr::NonNull};

/// While it exists, memory the task allocates is allocated without I/O, as
/// `memalloc_noio_save()` arranges: for calls into a file system from a
/// task that must not wait for I/O that may wait for it.
///
/// # Examples
///
/// ```
/// use kernel::fs::direct_io::NoIo;
/// use kernel::prelude::*;
///
/// /// Allocates a buffer for a file system call made while I/O that the
/// /// call may wait for is held back.
/// fn buffer() -> Result<KVec<u8>> {
///     let _noio = NoIo::new();
///     Ok(KVec::with_capacity(4096, GFP_KERNEL)?)
/// }
/// ```
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
    /// Ends the I/O: `finish_queued::<T>`, which is in the module of the owner.
    finish: unsafe fn(*mut bindings::kiocb, isize),
    bvecs: KVec<bindings::bio_vec>,
    /// The owners whose I/O this is, in file order, each with where its
    /// bytes end in the I/O.
    owners: KVec<(*const T, usize)>,
    bytes: usize,
    write: bool,
    /// The sender's and the completion's: a file system may still use the
    /// iocb after it queued the I/O, while the I/O completes.  Whichever
    /// goes last ends the I/O.
    refs: Atomic<usize>,
    /// What the I/O returned; set before the completion's reference goes.
    ret: isize,
}

/// The most bytes that [`submit_merged`] sends as one I/O.
const MERGED_BYTES: usize = 4 << 20;

/// Sends `io(&owner)` without waiting, and keeps `owner` until it ended;
/// then calls `T::io_ended` with it, from the file system's completion
/// context (which may be interrupt context) or from here.  An I/O that
/// moved fewer bytes than asked (the file was truncated) failed, and so did
/// one that `io` did not give (`None`).
///
/// Memory for the I/O is allocated without I/O, and so is any memory the
/// file system allocates while it takes the I/O in: reclaim must not write
/// to a device whose writes may wait for this I/O.
///
/// # Examples
///
/// ```
/// use kernel::{
///     block::io::page_io::Owner,
///     fs::{direct_io::{self, FileIo}, File},
///     page::Page,
///     prelude::*,
///     sync::{aref::ARef, Arc},
/// };
///
/// /// A page of data on its way to the start of a file.
/// struct Saved {
///     file: ARef<File>,
///     page: [Page; 1],
/// }
///
/// impl Owner for Saved {
///     fn io_ended(_this: Arc<Self>, ok: bool) {
///         // Possibly in interrupt context: a real owner hands `this` to
///         // a work item.
///         pr_info!("saved: {}\n", ok);
///     }
/// }
///
/// fn to_file(saved: &Saved) -> Option<FileIo<'_>> {
///     Some(FileIo {
///         file: &saved.file,
///         write: true,
///         pos: 0,
///         pages: &saved.page,
///         bytes: kernel::page::PAGE_SIZE,
///     })
/// }
///
/// fn save(saved: Arc<Saved>) {
///     direct_io::submit(saved, to_file);
/// }
/// ```
pub fn submit<T: Owner>(owner: Arc<T>, io: for<'a> fn(&'a T) -> Option<FileIo<'a>>) {
    submit_merged(core::iter::once(owner), io);
}

/// Sends the I/O of each of `owners` as [`submit`] does, but an I/O that
/// goes on in the same file, the same way, where the one before it ends,
/// goes with it as one, up to 4 MiB.  The file system then maps the range,
/// and for a write into unwritten extents converts them, once for all: for
/// writes in chunks of a few hundred KiB that is most of what a file costs
/// over a block device.  Each owner is told of its own part: when fewer
/// bytes moved than asked, the owners whose bytes all moved succeeded.
///
/// An I/O joins the one before it only if both move whole pages: a file
/// system sends an unaligned direct I/O alone, and waits for it.
///
/// The I/O being merged goes out only when the next owner does not join
/// it, or at the end: `owners` must not wait, while it yields them, for
/// the I/O of owners it yielded before.  An owner whose I/O cannot be
/// built is told at once, possibly before owners ahead of it are sent.
pub fn submit_merged<T: Owner>(
    owners: impl IntoIterator<Item = Arc<T>>,
    io: for<'a> fn(&'a T) -> Option<FileIo<'a>>,
) {
    let mut open: Option<Merging<T>> = None;
    for owner in owners {
        let raw_owner = Arc::into_raw(owner);
        // SAFETY: `raw_owner` holds a reference until `put` or `failed`
        // takes it back, after the I/O ended: the borrow outlives its use.
        let Some(req) = io(unsafe { &*raw_owner }) else {
            // SAFETY: The reference was not handed to any I/O.
            unsafe { failed(raw_owner) };
            continue;
        };
        if let Some(merging) = open.as_mut() {
            if merging.continued_by(&req) && merging.add(&req, raw_owner).is_ok() {
                continue;
            }
        }
        if let Some(merging) = open.take() {
            merging.send();
        }
        match prepare(&req, raw_owner) {
            Ok(in_flight) => {
                open = Some(Merging {
                    // A reference of our own: the completion may release
                    // the owner, and with it the file, before `send`
                    // returns.
                    file: req.file.into(),
                    in_flight,
                })
            }
            // SAFETY: The reference was not handed to any I/O.
            Err(_) => unsafe { failed(raw_owner) },
        }
    }
    if let Some(merging) = open {
        merging.send();
    }
}

/// Hands an owner whose I/O was never sent back to it, failed.
///
/// # Safety
///
/// `raw_owner` came from `Arc::into_raw`, and its reference is given back
/// here, once, with no I/O using it.
unsafe fn failed<T: Owner>(raw_owner: *const T) {
    // SAFETY: See the contract.
    let owner = unsafe { Arc::from_raw(raw_owner) };
    T::io_ended(owner, false);
}

/// An I/O of [`submit_merged`] not sent yet, which more may join.
struct Merging<T> {
    file: ARef<File>,
    in_flight: KBox<InFlight<T>>,
}

impl<T: Owner> Merging<T> {
    /// Whether `req` may join: the same file and way, where this I/O ends,
    /// both in whole pages, and within `MERGED_BYTES`.
    fn continued_by(&self, req: &FileIo<'_>) -> bool {
        let io = &self.in_flight;
        let end = u64::try_from(io.iocb.ki_pos)
            .ok()
            .map(|pos| pos + io.bytes as u64);
        core::ptr::eq(req.file.as_ptr(), self.file.as_ptr())
            && req.write == io.write
            && io.bytes % PAGE_SIZE == 0
            && req.bytes % PAGE_SIZE == 0
            && end == Some(req.pos)
            && io.bytes + req.bytes <= MERGED_BYTES
    }

    /// Adds the I/O `req` of `raw_owner`; on failure nothing changed, and
    /// the I/O goes on its own.
    fn add(&mut self, req: &FileIo<'_>, raw_owner: *const T) -> Result {
        let io = &mut self.in_flight;
        let end = io.bytes + req.bytes;
        io.owners.reserve(1, GFP_NOIO | __GFP_NOWARN)?;
        let entries = io.bvecs.len();
        if let Err(e) = append_page_vecs(&mut io.bvecs, req, GFP_NOIO | __GFP_NOWARN) {
            io.bvecs.truncate(entries);
            return Err(e);
        }
        // Cannot fail: room was reserved.
        let _ = io.owners.push((raw_owner, end), GFP_NOIO);
        io.bytes = end;
        Ok(())
    }

    /// Sends the I/O; its owners are told when it ended.
    fn send(self) {
        let write = self.in_flight.write;
        let raw = KBox::into_raw(self.in_flight);
        // SAFETY: `raw` is ours until the I/O completes; its vector holds
        // `bvecs.len()` valid entries covering `bytes`, and stays until then.
        let mut iter = unsafe {
            bvec_iter(
                (*raw).bvecs.as_ptr(),
                (*raw).bvecs.len(),
                (*raw).bytes,
                write,
            )
        };
        // SAFETY: The iocb and the vector stay in `raw` until its last
        // reference goes, not before the sender's below.
        let ret = unsafe { run(&self.file, &raw mut (*raw).iocb, iter.as_mut_ptr(), write) };
        if ret != -(bindings::EIOCBQUEUED as isize) {
            // SAFETY: Not queued: there is no completion, its reference goes
            // here, with the result.  A write that was not queued has its
            // freeze protection dropped already.
            unsafe {
                (*raw).ret = ret;
                put::<T>(raw);
            }
        }
        // SAFETY: The sender's reference; `raw` is not used afterwards.
        unsafe { put::<T>(raw) };
    }
}

/// The vector of the pages of `req`.
fn page_vecs(req: &FileIo<'_>) -> Result<KVec<bindings::bio_vec>> {
    let mut bvecs = KVec::new();
    append_page_vecs(&mut bvecs, req, GFP_NOIO)?;
    Ok(bvecs)
}

/// Appends the vector of the pages of `req` to `bvecs`, allocating with
/// `flags`.
fn append_page_vecs(
    bvecs: &mut KVec<bindings::bio_vec>,
    req: &FileIo<'_>,
    flags: crate::alloc::Flags,
) -> Result {
    let npages = req.bytes.div_ceil(PAGE_SIZE);
    if req.bytes == 0 || npages > req.pages.len() {
        return Err(EINVAL);
    }
    bvecs.reserve(npages, flags)?;
    let mut left = req.bytes;
    for page in &req.pages[..npages] {
        let len = left.min(PAGE_SIZE);
        // Cannot fail: room was reserved.
        let _ = bvecs.push(
            bindings::bio_vec {
                bv_page: page.as_ptr(),
                bv_len: len as u32,
                bv_offset: 0,
            },
            GFP_NOIO,
        );
        left -= len;
    }
    Ok(())
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
/// `-EIOCBQUEUED`, else when `ki_complete` is called.  The iocb itself
/// stays valid until both happened: a file system may still use it after
/// it queued the I/O, while the I/O completes.
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
    let mut owners = KVec::with_capacity(1, GFP_NOIO)?;
    owners.push((raw_owner, req.bytes), GFP_NOIO)?;
    let mut iocb = direct_iocb(req.file, req.pos)?;
    iocb.ki_complete = Some(file_io_end);
    Ok(KBox::new(
        InFlight {
            iocb,
            finish: finish_queued::<T>,
            bvecs,
            owners,
            bytes: req.bytes,
            write: req.write,
            refs: Atomic::new(2),
            ret: 0,
        },
        GFP_NOIO,
    )?)
}

/// Drops a reference of an I/O of [`submit_merged`]; the last one ends it:
/// frees what it used and hands each owner to `T::io_ended`, with whether
/// all of its bytes moved.
///
/// # Safety
///
/// `raw` came from `submit_merged` and holds the reference given back
/// here, once; its I/O is over if this is the completion's.
unsafe fn put<T: Owner>(raw: *mut InFlight<T>) {
    // Full ordering: the last one sees the result the completion stored.
    // SAFETY: Valid until the last reference goes, here or elsewhere.
    if unsafe { (*raw).refs.fetch_sub(1, Full) } != 1 {
        return;
    }
    // SAFETY: That was the last reference: `raw` is ours again.
    let mut in_flight = unsafe { KBox::from_raw(raw) };
    let moved = usize::try_from(in_flight.ret).unwrap_or(0);
    let owners = core::mem::take(&mut in_flight.owners);
    drop(in_flight);
    for (raw_owner, end) in owners {
        // SAFETY: `submit_merged` handed over this reference with the I/O.
        let owner = unsafe { Arc::from_raw(raw_owner) };
        T::io_ended(owner, end <= moved);
    }
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
    // SAFETY: See the contract: the completion's reference is still held.
    // A queued write keeps the freeze protection that `vfs_iocb_iter_write`
    // took until it ends, now.
    unsafe {
        if (*raw).write {
            bindings::kiocb_end_write(iocb);
        }
        (*raw).ret = ret;
        put::<T>(raw);
    }
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

/// Stretches of bios moved between their data and files, all at once, and
/// waited for together: the file counterpart of [`Batch`], with which it
/// nests.  A read of a part fills its stretch of the bio from the file, a
/// write stores it there; each part comes back with the tag the caller gave
/// it and its own result.  A part that moved fewer bytes than asked (the
/// file was truncated) failed with `EIO`.
///
/// The bios and files are borrowed for the whole run, as in [`Batch`], and
/// [`FileBatch::run`] waits for I/O: it is for a task that may sleep, not a
/// `submit_bio`.  Memory is allocated without I/O, as [`submit`]'s, and the
/// completion runs kernel code only, so a module that runs a batch may go
/// once the run returned.
///
/// # Examples
///
/// Reads `bio` from the start of `a` and writes `other` to the start of `b`,
/// both at once:
///
/// ```
/// use kernel::{block::bio::Bio, fs::{direct_io::FileBatch, File}, prelude::*};
///
/// fn read_and_write(bio: &Bio, a: &File, other: &Bio, b: &File) -> Result {
///     let ((), ended) = FileBatch::run(2, |files| {
///         let _ = files.add("read", bio, 0, bio.nr_sectors(), a, 0);
///         let _ = files.add("write", other, 0, other.nr_sectors(), b, 0);
///     })?;
///     for part in ended {
///         if let Err(e) = part.result {
///             pr_warn!("{} failed: {:?}\n", part.tag, e);
///         }
///     }
///     Ok(())
/// }
/// ```
///
/// # Invariants
///
/// Each `Stretch` in `parts` was sent with the list's `InFlight` and is
/// freed only once the list waited for all parts.
///
/// [`Batch`]: crate::block::io::batch::Batch
pub struct FileBatch<'b, T> {
    parts: PartList<FilePart<T>>,
    /// Makes `'b` invariant, as in [`Batch`](crate::block::io::batch::Batch).
    _borrows: PhantomData<fn(&'b Bio) -> &'b Bio>,
}

/// A part of a file batch: its tag, and its I/O or why it was not sent.
struct FilePart<T> {
    tag: T,
    io: Result<NonNull<Stretch>>,
}

/// The parts of a file batch once every part ended, in the order they were
/// added.
pub struct EndedFileParts<T>(IntoIter<FilePart<T>, Kmalloc>);

impl<T> Iterator for EndedFileParts<T> {
    type Item = Ended<T>;

    fn next(&mut self) -> Option<Ended<T>> {
        let part = self.0.next()?;
        let result = part.io.and_then(|raw| {
            // SAFETY: Every part ended: the stretch is ours again, and
            // nothing else refers to it.
            let io = unsafe { KBox::from_raw(raw.as_ptr()) };
            sync_result(io.ret, io.len)
        });
        Some(Ended {
            tag: part.tag,
            result,
        })
    }
}

impl<T> Drop for EndedFileParts<T> {
    fn drop(&mut self) {
        // Frees the stretches of the parts not looked at.
        for _ in self.by_ref() {}
    }
}

/// One stretch in flight: the iocb first, so that its completion finds the
/// rest.
#[repr(C)]
struct Stretch {
    iocb: bindings::kiocb,
    state: *const PartsInFlight,
    /// What the I/O returned, bytes moved or a negative errno; set before
    /// the part counts as ended.
    ret: isize,
    len: usize,
    write: bool,
}

impl<'b, T> FileBatch<'b, T> {
    /// Runs `send`, which adds parts to a new batch, waits until every part
    /// ended, and returns what `send` returned and the parts in the order
    /// they were added.  Room for `expected` parts is made first, so adding
    /// that many cannot fail; `ENOMEM`, with nothing sent, if it cannot.
    pub fn run<R>(
        expected: usize,
        send: impl FnOnce(&Self) -> R,
    ) -> Result<(R, EndedFileParts<T>)> {
        // INVARIANT: No part yet; `finish` below waits for all that `send`
        // adds before any stretch is freed.
        let batch = Self {
            parts: PartList::new(expected)?,
            _borrows: PhantomData,
        };
        let sent = send(&batch);
        Ok((sent, EndedFileParts(batch.parts.finish().into_iter())))
    }

    /// Sends `sectors` sectors of `bio`'s data, from `offset` sectors into
    /// it, to or from `file` at `sector` (of 512 bytes), without waiting:
    /// a read bio is filled from the file, a write bio's data stored there.
    ///
    /// The part comes back from [`FileBatch::run`] with `tag` and its
    /// result; one that cannot be sent (a stretch outside the bio, a bio
    /// that is neither a read nor a write) comes back with the error.
    /// Fails with `ENOMEM`, dropping `tag` and sending nothing, only if more
    /// parts than expected are added and one more cannot be recorded.
    pub fn add(
        &self,
        tag: T,
        bio: &'b Bio,
        offset: u64,
        sectors: u64,
        file: &'b File,
        sector: u64,
    ) -> Result {
        self.parts.add(|state| FilePart {
            tag,
            io: Self::send(state, bio, offset, sectors, file, sector),
        })
    }

    fn send(
        state: &PartsInFlight,
        bio: &'b Bio,
        offset: u64,
        sectors: u64,
        file: &'b File,
        sector: u64,
    ) -> Result<NonNull<Stretch>> {
        let write = match bio.operation() {
            Operation::Read => false,
            Operation::Write => true,
            _ => return Err(EOPNOTSUPP),
        };
        let len = sectors_to_bytes(sectors)?;
        let mut iter = bio_stretch(bio, sectors_to_bytes(offset)?, len, write)?;
        let mut iocb = direct_iocb(file, sector.checked_mul(1 << SECTOR_SHIFT).ok_or(EFBIG)?)?;
        iocb.ki_complete = Some(stretch_end);
        let stretch = Stretch {
            iocb,
            state,
            ret: 0,
            len,
            write,
        };
        let raw = KBox::into_raw(KBox::new(stretch, GFP_NOIO)?);
        state.started();
        // SAFETY: The stretch stays where it is until the run frees it after
        // the part ended; the bio's vector, which the iterator and the file
        // system's bios point into, is borrowed for `'b`, past the run.
        let ret = unsafe { run(file, &raw mut (*raw).iocb, iter.as_mut_ptr(), write) };
        if ret != -(bindings::EIOCBQUEUED as isize) {
            // SAFETY: Not queued: the file system is done with the iocb and
            // will not complete it; the part ends here.
            unsafe { (*raw).ret = ret };
            state.ended();
        }
        // SAFETY: `KBox::into_raw` gives a non-null pointer.
        Ok(unsafe { NonNull::new_unchecked(raw) })
    }
}

/// The `ki_complete` of a [`FileBatch`] part.
///
/// # Safety
///
/// `iocb` is the iocb of a `Stretch` that the file system queued, and it is
/// completing now.
unsafe extern "C" fn stretch_end(iocb: *mut bindings::kiocb, ret: crate::ffi::c_long) {
    // `iocb` is the first field of the `#[repr(C)]` `Stretch`.
    let stretch = iocb.cast::<Stretch>();
    // SAFETY: See the contract.  A queued write keeps the freeze protection
    // that `vfs_iocb_iter_write` took until it ends, now.  The run may free
    // the stretch once the part ended, so it is not touched after that.
    unsafe {
        if (*stretch).write {
            bindings::kiocb_end_write(iocb);
        }
        (*stretch).ret = ret;
        (*(*stretch).state).ended();
    }
}

/// A stretch of a read bio served from a file: `sectors` sectors from
/// `offset` sectors into the bio's data, read from sector `sector` (of 512
/// bytes) of `file`.
pub struct FileStretch<'a> {
    /// Sectors into the bio's data.
    pub offset: u64,
    /// How many sectors.
    pub sectors: u64,
    /// The file, opened with `O_DIRECT`.
    pub file: &'a File,
    /// Where in the file, in sectors.
    pub sector: u64,
}

/// Fills the read bio `bio` from files without waiting: each stretch of
/// `stretches` is read from its file into the bio, and the bio ends once
/// every stretch ended, with an I/O error if one failed, read fewer bytes
/// than asked (the file was truncated) or could not be sent.  A bio that is
/// not a read ends with an I/O error.  `held` is dropped right after the
/// bio ended: the forwarder it came from waits for the bio in its drain and
/// its drop.
///
/// Each stretch holds a reference to its file until it ended; memory is
/// allocated without I/O, as [`submit`]'s, and the completion runs kernel
/// code only, so the caller's module may go once the forwarder did.
///
/// # Examples
///
/// Serves a read of a disk whose data is the file `backing`, sector for
/// sector:
///
/// ```
/// use kernel::{
///     block::{bio::DiskBio, forward::Forwarder},
///     fs::{direct_io::{read_from_files, FileStretch}, File},
///     prelude::*,
/// };
///
/// fn read_from(forwarder: &Forwarder<()>, bio: DiskBio, backing: &File) -> Option<DiskBio> {
///     let Some(held) = forwarder.hold() else {
///         // Draining: the forwarder's owner is going.
///         return Some(bio);
///     };
///     let whole = FileStretch {
///         offset: 0,
///         sectors: bio.nr_sectors(),
///         file: backing,
///         sector: bio.sector(),
///     };
///     read_from_files(bio, held, [whole]);
///     None
/// }
/// ```
pub fn read_from_files<'a>(
    bio: DiskBio,
    held: Held,
    stretches: impl IntoIterator<Item = FileStretch<'a>>,
) {
    if bio.operation() != Operation::Read {
        // The bio ends with an error, then the hold goes.
        drop(bio);
        drop(held);
        return;
    }
    let Ok(whole) = KBox::new(
        WholeBio {
            bio,
            left: Atomic::new(1),
            failed: Atomic::new(false),
            _held: held,
        },
        GFP_NOIO,
    ) else {
        return;
    };
    let whole = KBox::into_raw(whole);
    for stretch in stretches {
        // SAFETY: The sender's own count keeps `whole` until the end of this
        // function.
        unsafe { (*whole).left.add(1, Relaxed) };
        // SAFETY: As above; the bio stays until `whole` goes.
        let sent = unsafe { send_stretch(whole, &(*whole).bio, &stretch) };
        if sent.is_err() {
            // SAFETY: The count taken above, for a stretch that was not sent.
            unsafe { stretch_ended(whole, false) };
        }
    }
    // SAFETY: The sender's own count, given back once.
    unsafe { stretch_ended(whole, true) };
}

/// A bio read from files: what [`read_from_files`] keeps until the last
/// stretch ended.
struct WholeBio {
    bio: DiskBio,
    /// Stretches in flight, plus one while they are being sent.
    left: Atomic<usize>,
    failed: Atomic<bool>,
    _held: Held,
}

/// One stretch of a [`WholeBio`] in flight: the iocb first, so that its
/// completion finds the rest.
#[repr(C)]
struct BioStretch {
    iocb: bindings::kiocb,
    whole: *const WholeBio,
    /// Held until the stretch ended.
    _file: ARef<File>,
    len: usize,
    /// The sender's and the completion's, as in [`submit`]'s I/O.
    refs: Atomic<usize>,
    /// What the read returned; set before the completion's reference goes.
    ret: isize,
}

/// Sends one stretch of the read bio `bio`, which `whole` owns.
///
/// # Safety
///
/// `whole` is valid and counts this stretch in `left`; `bio` is its bio.
unsafe fn send_stretch(whole: *const WholeBio, bio: &Bio, stretch: &FileStretch<'_>) -> Result {
    let len = sectors_to_bytes(stretch.sectors)?;
    let mut iter = bio_stretch(bio, sectors_to_bytes(stretch.offset)?, len, false)?;
    let pos = stretch.sector.checked_mul(1 << SECTOR_SHIFT).ok_or(EFBIG)?;
    let mut iocb = direct_iocb(stretch.file, pos)?;
    iocb.ki_complete = Some(bio_stretch_end);
    let raw = KBox::into_raw(KBox::new(
        BioStretch {
            iocb,
            whole,
            _file: stretch.file.into(),
            len,
            refs: Atomic::new(2),
            ret: 0,
        },
        GFP_NOIO,
    )?);
    // SAFETY: The stretch stays until its last reference goes, not before
    // the sender's below; the bio's vector, which the iterator and the file
    // system's bios point into, stays until the bio ends, after this
    // stretch ended.
    let ret = unsafe { run(stretch.file, &raw mut (*raw).iocb, iter.as_mut_ptr(), false) };
    if ret != -(bindings::EIOCBQUEUED as isize) {
        // SAFETY: Not queued: there is no completion, its reference goes
        // here, with the result.
        unsafe {
            (*raw).ret = ret;
            stretch_put(raw);
        }
    }
    // SAFETY: The sender's reference; `raw` is not used afterwards.
    unsafe { stretch_put(raw) };
    Ok(())
}

/// `sectors` in bytes, if that fits.
fn sectors_to_bytes(sectors: u64) -> Result<usize> {
    sectors
        .checked_mul(1 << SECTOR_SHIFT)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or(EINVAL)
}

/// The `ki_complete` of a stretch of [`read_from_files`].
///
/// # Safety
///
/// `iocb` is the iocb of a `BioStretch` that the file system queued, and it
/// is completing now.
unsafe extern "C" fn bio_stretch_end(iocb: *mut bindings::kiocb, ret: crate::ffi::c_long) {
    // `iocb` is the first field of the `#[repr(C)]` `BioStretch`.
    let raw = iocb.cast::<BioStretch>();
    // SAFETY: See the contract: the completion's reference is still held.
    unsafe {
        (*raw).ret = ret;
        stretch_put(raw);
    }
}

/// Drops a reference of a stretch; the last one frees it, and ends the bio
/// with it if it was the bio's last stretch.
///
/// # Safety
///
/// `raw` came from `send_stretch` and holds the reference given back here,
/// once; its I/O is over if this is the completion's.
unsafe fn stretch_put(raw: *mut BioStretch) {
    // Full ordering: the last one sees the result the completion stored.
    // SAFETY: Valid until the last reference goes, here or elsewhere.
    if unsafe { (*raw).refs.fetch_sub(1, Full) } != 1 {
        return;
    }
    // SAFETY: That was the last reference: `raw` is ours again.
    let stretch = unsafe { KBox::from_raw(raw) };
    let ok = usize::try_from(stretch.ret).is_ok_and(|n| n == stretch.len);
    let whole = stretch.whole;
    drop(stretch);
    // SAFETY: The stretch was counted in `left` of its `whole`.
    unsafe { stretch_ended(whole, ok) };
}

/// Counts a stretch of `whole` ended; the last one ends the bio, and then
/// lets the forwarder go.
///
/// # Safety
///
/// `whole` came from [`read_from_files`] and this gives back one count of
/// `left`, once.
unsafe fn stretch_ended(whole: *const WholeBio, ok: bool) {
    if !ok {
        // SAFETY: Valid until the last count is given back, below.
        unsafe { (*whole).failed.store(true, Relaxed) };
    }
    // Full ordering: the last one sees every other stretch's failure.  No
    // reference to `whole` outlives this: once the count is given back,
    // another stretch's completion may free it.
    // SAFETY: As above.
    if unsafe { (*whole).left.fetch_sub(1, Full) } != 1 {
        return;
    }
    // SAFETY: That was the last count: nothing else refers to `whole`.
    let whole = unsafe { KBox::from_raw(whole.cast_mut()) };
    let WholeBio {
        bio, failed, _held, ..
    } = KBox::into_inner(whole);
    bio.end(if failed.load(Relaxed) {
        Status::IoError
    } else {
        Status::Ok
    });
    // `_held` goes last: the forwarder may then go, and the module.
}

/// An iterator over `len` bytes of `bio`'s data from `offset` bytes into
/// it, the source of a write to a file or where a read of it goes; `EINVAL`
/// if the stretch is not within the bio.  It points into the bio's vector.
fn bio_stretch(
    bio: &Bio,
    offset: usize,
    len: usize,
    write: bool,
) -> Result<MaybeUninit<bindings::iov_iter>> {
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
    // bytes; they live as long as the bio.
    let mut iter = unsafe { bvec_iter(vecs.add(idx), nr, skip + len, write) };
    // SAFETY: The iterator was set up above and holds `skip + len` bytes.
    unsafe { bindings::iov_iter_advance(iter.as_mut_ptr(), skip) };
    Ok(iter)
}
