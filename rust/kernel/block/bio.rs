// SPDX-License-Identifier: GPL-2.0

//! Bios: the block layer's I/O units.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{
    bindings,
    block::bdev::BlockDevice,
    error::to_result,
    page::Page,
    prelude::*,
    sync::{
        atomic::{Atomic, Full, Relaxed},
        Completion,
    },
    types::Opaque,
};
use core::{cell::RefCell, marker::PhantomData, ptr::NonNull};

pub mod page_io;
pub mod plug;

/// What a bio asks the device to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Read data.
    Read,
    /// Write data.
    Write,
    /// Discard a range: its content becomes undefined.
    Discard,
    /// Securely erase a range.
    SecureErase,
    /// Write zeroes to a range.
    WriteZeroes,
    /// A cache flush without data.
    Flush,
    /// Write data at the write pointer of a zone.
    ZoneAppend,
    /// Move a zone's write pointer to its end: the rest of it reads as
    /// unwritten.
    ZoneFinish,
    /// Empty a zone.
    ZoneReset,
    /// Empty every zone of the device.
    ZoneResetAll,
    /// Anything else (opening and closing zones, driver-private operations).
    Other,
}

impl Operation {
    /// Returns true for operations that change the content of the device.
    pub fn changes_data(self) -> bool {
        !matches!(self, Self::Read | Self::Flush | Self::Other)
    }
}

/// A bio (`struct bio`) seen by a block device filter while it is submitted.
///
/// # Invariants
///
/// The wrapped `struct bio` is valid and is not completed for as long as the
/// reference exists.
#[repr(transparent)]
pub struct Bio(Opaque<bindings::bio>);

impl Bio {
    /// Borrows a bio from a raw pointer.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a valid bio that is neither completed nor freed
    /// during `'a`.
    pub unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
        // SAFETY: `Bio` is `repr(transparent)` over the C struct; validity is
        // guaranteed by the caller.
        unsafe { &*ptr.cast() }
    }

    pub(crate) fn raw(&self) -> *mut bindings::bio {
        self.0.get()
    }

    /// Returns the operation of the bio.
    pub fn operation(&self) -> Operation {
        // SAFETY: The bio is valid by the type invariant.
        let opf = unsafe { (*self.raw()).bi_opf };
        match opf & ((1 << bindings::REQ_OP_BITS) - 1) {
            bindings::req_op_REQ_OP_READ => Operation::Read,
            bindings::req_op_REQ_OP_WRITE => Operation::Write,
            bindings::req_op_REQ_OP_DISCARD => Operation::Discard,
            bindings::req_op_REQ_OP_SECURE_ERASE => Operation::SecureErase,
            bindings::req_op_REQ_OP_WRITE_ZEROES => Operation::WriteZeroes,
            bindings::req_op_REQ_OP_FLUSH => Operation::Flush,
            bindings::req_op_REQ_OP_ZONE_APPEND => Operation::ZoneAppend,
            bindings::req_op_REQ_OP_ZONE_FINISH => Operation::ZoneFinish,
            bindings::req_op_REQ_OP_ZONE_RESET => Operation::ZoneReset,
            bindings::req_op_REQ_OP_ZONE_RESET_ALL => Operation::ZoneResetAll,
            _ => Operation::Other,
        }
    }

    /// Returns the sectors whose content the bio may change, as the first
    /// and the count, or `None` if it changes none.  A zone append, finish
    /// or reset may change any sector of its zone (where an append lands is
    /// known only once it completes); a reset of all zones, the whole device.
    /// Sectors count as [`Bio::sector`] does.
    pub fn changed_sectors(&self) -> Option<(u64, u64)> {
        let op = self.operation();
        if !op.changes_data() {
            return None;
        }
        // SAFETY: The bio is valid by the type invariant, and so are its
        // device and the device's queue.
        let (zone, capacity) = unsafe {
            let bdev = (*self.raw()).bi_bdev;
            (
                u64::from((*(*bdev).bd_queue).limits.chunk_sectors),
                core::ptr::read_volatile(&raw const (*bdev).bd_nr_sectors),
            )
        };
        match op {
            Operation::ZoneResetAll => Some((0, capacity)),
            Operation::ZoneAppend | Operation::ZoneFinish | Operation::ZoneReset
                if zone.is_power_of_two() =>
            {
                Some((self.sector() & !(zone - 1), zone))
            }
            _ => (self.nr_sectors() != 0).then(|| (self.sector(), self.nr_sectors())),
        }
    }

    /// Returns the first sector the bio addresses.
    ///
    /// For a bio submitted to a partition and seen by a filter, this counts
    /// from the start of the whole disk.
    pub fn sector(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariant.
        unsafe { (*self.raw()).bi_iter.bi_sector }
    }

    /// Returns the number of 512-byte sectors the bio addresses.
    pub fn nr_sectors(&self) -> u64 {
        // SAFETY: The bio is valid by the type invariant.
        u64::from(unsafe { (*self.raw()).bi_iter.bi_size }) >> crate::block::SECTOR_SHIFT
    }

    /// Returns true if the submitter asked not to be made to wait.
    pub fn is_nowait(&self) -> bool {
        // SAFETY: The bio is valid by the type invariant.
        let opf = unsafe { (*self.raw()).bi_opf };
        opf & (1 << bindings::req_flag_bits___REQ_NOWAIT) != 0
    }

    /// Reads or writes, for this bio's data, `sectors` sectors starting
    /// `offset` sectors into the bio, at `sector` of `bdev`; waits for the I/O.
    ///
    /// The I/O goes through a clone that shares this bio's pages and never
    /// outlives the call.  It skips the filter of `bdev` once.
    pub fn transfer_part(
        &self,
        bios: &BioSet,
        offset: u64,
        sectors: u64,
        bdev: &BlockDevice,
        sector: u64,
    ) -> Result {
        if offset.checked_add(sectors).ok_or(EINVAL)? > self.nr_sectors() || sectors == 0 {
            return Err(EINVAL);
        }
        // SAFETY: The source bio is valid; `bios` outlives the clone, which
        // is put before this returns.
        let clone = unsafe {
            bindings::bio_alloc_clone(bdev.as_raw(), self.raw(), bindings::GFP_NOIO, bios.as_raw())
        };
        let clone = NonNull::new(clone).ok_or(ENOMEM)?;
        let clone = clone.as_ptr();
        // SAFETY: `clone` is a new bio we own until `bio_put` below; its pages
        // belong to `self`, which outlives the synchronous I/O.  The offsets
        // were checked against the bio's size above.
        let ret = unsafe {
            bindings::bio_trim(clone, offset, sectors);
            (*clone).bi_iter.bi_sector = sector;
            (*clone).bi_flags |= 1u16 << bindings::BIO_FILTERED;
            let ret = bindings::submit_bio_wait(clone);
            bindings::bio_put(clone);
            ret
        };
        to_result(ret)
    }

    /// Returns the block device the bio was submitted to.
    pub fn device(&self) -> &BlockDevice {
        // SAFETY: A bio in flight holds a valid `bi_bdev`, which outlives it.
        unsafe { BlockDevice::from_raw((*self.raw()).bi_bdev) }
    }
}

/// How a bio ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Success.
    Ok,
    /// An I/O error (`EIO`).
    IoError,
    /// The bio asked not to wait, and would have had to (`EAGAIN`).
    Again,
}

impl Status {
    fn raw(self) -> bindings::blk_status_t {
        match self {
            Self::Ok => bindings::BLK_STS_OK as bindings::blk_status_t,
            Self::IoError => bindings::BLK_STS_IOERR as bindings::blk_status_t,
            Self::Again => bindings::BLK_STS_AGAIN as bindings::blk_status_t,
        }
    }
}

/// Ends `bio` with `status`.
///
/// # Safety
///
/// The caller must own the completion of `bio`, which must not be used
/// afterwards.
unsafe fn end_bio(bio: *mut bindings::bio, status: Status) {
    // SAFETY: The caller owns the bio's completion.
    unsafe {
        (*bio).bi_status = status.raw();
        bindings::bio_endio(bio);
    }
}

/// A bio in flight that was handed to us, which we must end or pass on.
///
/// Dropping it without doing so ends it with an I/O error, so that nobody
/// waits forever.
///
/// # Invariants
///
/// `bio` is a valid bio whose completion this object owns.
pub struct SubmittedBio {
    bio: NonNull<bindings::bio>,
    /// Whether it came from a filter, and so may go on to its device.
    filtered: bool,
}

// SAFETY: A bio may be completed or resubmitted from any task.
unsafe impl Send for SubmittedBio {}

impl SubmittedBio {
    /// Takes over a bio.
    ///
    /// # Safety
    ///
    /// `bio` must be a bio in flight whose completion the caller hands over.
    /// `filtered` may only be true for a bio that a block device filter got
    /// in its `submit_bio`.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio, filtered: bool) -> Self {
        Self {
            // SAFETY: The block layer never hands out a null bio.
            bio: unsafe { NonNull::new_unchecked(bio) },
            filtered,
        }
    }

    pub(crate) fn into_raw(self) -> *mut bindings::bio {
        let bio = self.bio.as_ptr();
        core::mem::forget(self);
        bio
    }

    /// Ends the bio with `status`.
    pub fn end(self, status: Status) {
        // SAFETY: By the type invariant we own the completion; `into_raw` makes
        // sure this happens once.
        unsafe { end_bio(self.into_raw(), status) };
    }

    /// Sends a bio that a filter took over on to its device, past the filter.
    /// A bio that did not come from a filter is ended with an I/O error.
    pub fn resubmit(self) {
        if !self.filtered {
            return self.end(Status::IoError);
        }
        // SAFETY: The bio came from a filter (`filtered`), so it was checked
        // and remapped already, as `blkfilter_resubmit_bio` requires.
        unsafe { bindings::blkfilter_resubmit_bio(self.into_raw()) };
    }
}

impl core::ops::Deref for SubmittedBio {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        // SAFETY: The bio is valid and not completed while we own it.
        unsafe { Bio::from_raw(self.bio.as_ptr()) }
    }
}

impl Drop for SubmittedBio {
    fn drop(&mut self) {
        // SAFETY: We still own the completion: `into_raw` forgets `self`.
        unsafe { end_bio(self.bio.as_ptr(), Status::IoError) };
    }
}

/// A queue of bios handed to us, oldest first, linked through the bios
/// themselves as `struct bio_list` does: queueing never allocates, so it
/// cannot fail in a submit path.  Bios left on it when it is dropped end
/// with an I/O error.
///
/// # Invariants
///
/// `head` starts a chain through `bi_next` of bios whose completion the
/// list owns, ending at `tail`; both are null when it is empty.  Every bio
/// on it came from a filter if `filtered` is true, and from no filter if it
/// is false.
pub struct BioList {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
    filtered: bool,
}

// SAFETY: The list owns its bios, which may be ended or resubmitted from any
// task.
unsafe impl Send for BioList {}

impl BioList {
    /// An empty list for bios that came from a filter (`filtered`) or for
    /// bios of a driver's own disk.
    pub const fn new(filtered: bool) -> Self {
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            filtered,
        }
    }

    /// Returns true if no bio is queued.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Queues `bio` last.  A bio of the other kind than the list's is ended
    /// with an I/O error.
    pub fn push(&mut self, bio: SubmittedBio) {
        if bio.filtered != self.filtered {
            return bio.end(Status::IoError);
        }
        let raw = bio.into_raw();
        // SAFETY: `raw` is ours now; `tail`, if any, is the last bio of the
        // chain, which the list owns.
        unsafe {
            (*raw).bi_next = core::ptr::null_mut();
            if self.tail.is_null() {
                self.head = raw;
            } else {
                (*self.tail).bi_next = raw;
            }
        }
        // INVARIANT: `raw` is owned by the list and ends the chain.
        self.tail = raw;
    }

    /// Takes the oldest bio off the list.
    pub fn pop(&mut self) -> Option<SubmittedBio> {
        let raw = self.head;
        if raw.is_null() {
            return None;
        }
        // SAFETY: `raw` heads the chain and is owned by the list.
        unsafe {
            self.head = (*raw).bi_next;
            (*raw).bi_next = core::ptr::null_mut();
        }
        if self.head.is_null() {
            self.tail = core::ptr::null_mut();
        }
        // SAFETY: The list owned the completion of `raw` and hands it over;
        // it came from a filter exactly if `filtered` says so.
        Some(unsafe { SubmittedBio::from_raw(raw, self.filtered) })
    }

    /// Takes every queued bio, leaving the list empty.
    pub fn take(&mut self) -> Self {
        core::mem::replace(self, Self::new(self.filtered))
    }
}

impl Drop for BioList {
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            drop(bio);
        }
    }
}

/// A driver's own pool of bios (`struct bio_set`), for the I/O it makes:
/// [`transfer_pages`] and [`transfer_parts`] take their bios from it.  With
/// `GFP_NOIO` an allocation waits for a bio of the pool to come back rather
/// than fail, so the driver's I/O goes on when memory is short, without
/// taking from a pool that other code counts on, such as `fs_bio_set`.
///
/// # Invariants
///
/// `set` is initialised with bio vectors, and is exited only by `drop`,
/// after every bio from it was put (the transfer functions put theirs
/// before they return).
#[pin_data(PinnedDrop)]
pub struct BioSet {
    #[pin]
    set: Opaque<bindings::bio_set>,
}

// SAFETY: A bio set is used through the C API, which locks as it needs.
unsafe impl Send for BioSet {}
// SAFETY: As for `Send`.
unsafe impl Sync for BioSet {}

impl BioSet {
    /// A bio set that keeps `reserve` bios for when memory is short.
    pub fn new(reserve: u32) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            set <- Opaque::try_ffi_init(move |slot: *mut bindings::bio_set| {
                // SAFETY: `slot` is valid, uninitialised memory for a bio set,
                // which `bioset_init` expects zeroed.
                to_result(unsafe {
                    core::ptr::write_bytes(slot, 0, 1);
                    // The enum constant is unsigned, the argument a C `int`.
                    let flags = bindings::BIOSET_NEED_BVECS as crate::ffi::c_int;
                    bindings::bioset_init(slot, reserve, 0, flags)
                })
            }),
        })
    }

    fn as_raw(&self) -> *mut bindings::bio_set {
        self.set.get()
    }
}

#[pinned_drop]
impl PinnedDrop for BioSet {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Initialised by the type invariant, and no bio from it is in
        // use any more.
        unsafe { bindings::bioset_exit(self.set.get()) };
    }
}

/// Largest number of pages one bio carries.
const BIO_MAX_PAGES: usize = bindings::BIO_MAX_VECS as usize;

/// Sectors in a page.
const SECTORS_PER_PAGE: u64 = (bindings::PAGE_SIZE >> crate::block::SECTOR_SHIFT) as u64;

/// Builds a bio that reads (`write == false`) or writes the first `sectors`
/// sectors of `pages` (at most `BIO_MAX_PAGES` of them are used) at
/// `sector` of `bdev`, skipping the filter of `bdev` once.  Returns the bio,
/// not yet submitted, and the number of sectors it moves.
///
/// The caller must keep `pages` and `bdev` alive until the bio ends.
fn page_bio(
    bios: &BioSet,
    bdev: &BlockDevice,
    write: bool,
    sector: u64,
    pages: &[Page],
    sectors: u64,
) -> Result<(NonNull<bindings::bio>, u64)> {
    let npages = (sectors.div_ceil(SECTORS_PER_PAGE) as usize).min(BIO_MAX_PAGES);
    if npages > pages.len() || sectors == 0 {
        return Err(EINVAL);
    }
    let op = if write {
        bindings::req_op_REQ_OP_WRITE
    } else {
        bindings::req_op_REQ_OP_READ
    };
    // SAFETY: `bdev` is valid; `bios` outlives the bio, which the callers
    // put before they return.
    let bio = NonNull::new(unsafe {
        bindings::bio_alloc_bioset(
            bdev.as_raw(),
            npages as u16,
            op,
            bindings::GFP_NOIO,
            bios.as_raw(),
        )
    })
    .ok_or(ENOMEM)?;
    let raw = bio.as_ptr();
    let mut done = 0u64;
    for page in &pages[..npages] {
        let len = (sectors - done).min(SECTORS_PER_PAGE);
        let bytes = (len << crate::block::SECTOR_SHIFT) as u32;
        // SAFETY: `raw` is ours, with room for `npages` pages; the caller
        // keeps `page` alive until the bio ends.
        let added = unsafe { bindings::bio_add_page(raw, page.as_ptr(), bytes, 0) };
        if added != bytes as i32 {
            // SAFETY: `raw` is ours and was never submitted.
            unsafe { bindings::bio_put(raw) };
            return Err(EIO);
        }
        done += len;
    }
    // SAFETY: `raw` is ours and not submitted yet.
    unsafe {
        (*raw).bi_iter.bi_sector = sector;
        (*raw).bi_flags |= 1u16 << bindings::BIO_FILTERED;
    }
    Ok((bio, done))
}

/// Reads (`write == false`) or writes the first `sectors` sectors of `pages`
/// at `sector` of `bdev`, and waits for the I/O, with bios from `bios`.  The
/// I/O skips the filter of `bdev`: this is for a filter's own reads and
/// writes.
pub fn transfer_pages(
    bios: &BioSet,
    bdev: &BlockDevice,
    write: bool,
    sector: u64,
    pages: &[Page],
    sectors: u64,
) -> Result {
    let mut done = 0u64;
    let mut page = 0;
    while done < sectors {
        let rest = pages.get(page..).ok_or(EINVAL)?;
        let (bio, n) = page_bio(bios, bdev, write, sector + done, rest, sectors - done)?;
        // SAFETY: `bio` is ours until `bio_put`; its pages and device outlive
        // the wait.
        let ret = unsafe {
            let ret = bindings::submit_bio_wait(bio.as_ptr());
            bindings::bio_put(bio.as_ptr());
            ret
        };
        to_result(ret)?;
        done += n;
        page += BIO_MAX_PAGES;
    }
    Ok(())
}

/// What the parts of one [`transfer_parts`] call share while in flight.
#[pin_data]
struct PartsInFlight {
    /// Parts not ended yet, plus one while parts are being added.
    remaining: Atomic<usize>,
    #[pin]
    done: Completion,
}

/// Parts of bios being sent by [`transfer_parts`].
///
/// # Invariants
///
/// `state` points to the `PartsInFlight` of the running [`transfer_parts`]
/// call, which outlives this object.  Each entry of `clones` is a clone that
/// was submitted with `state` as its private data, or `None` if it could not
/// be sent; the clones are put only by [`transfer_parts`], after all ended.
///
/// It is only ever lent out by shared reference, so that it cannot be
/// swapped with the `Parts` of another call.
pub struct Parts<'b> {
    state: *const PartsInFlight,
    bios: &'b BioSet,
    clones: RefCell<KVec<Option<NonNull<bindings::bio>>>>,
    _bios: PhantomData<&'b Bio>,
}

impl<'b> Parts<'b> {
    /// Sends `sectors` sectors of `bio`'s data, from `offset` sectors into
    /// it, to or from `sector` of `bdev`, without waiting; the I/O skips the
    /// filter of `bdev` once.
    ///
    /// Returns the part's number (from 0, in the order parts are added), or
    /// `ENOMEM` if the part could not even be recorded, and so was not sent.
    /// A part that is recorded but cannot be sent ends as failed.
    pub fn add(
        &self,
        bio: &'b Bio,
        offset: u64,
        sectors: u64,
        bdev: &'b BlockDevice,
        sector: u64,
    ) -> Result<usize> {
        // Only `add` and `add_pages` borrow, and neither calls the other:
        // this cannot fail, and `try_` keeps panics out of the I/O path.
        let mut clones = self.clones.try_borrow_mut().map_err(|_| EBUSY)?;
        clones.reserve(1, GFP_NOIO)?;
        let clone = Self::start(self.state, self.bios, bio, offset, sectors, bdev, sector);
        // Cannot fail: room was reserved above.
        let _ = clones.push(clone, GFP_NOIO);
        Ok(clones.len() - 1)
    }

    /// Reads (`write == false`) or writes the first `sectors` sectors of
    /// `pages` at `sector` of `bdev`, without waiting; the I/O skips the
    /// filter of `bdev` once.  It may take several bios, each its own part.
    ///
    /// Returns the numbers of the parts sent, or the error that stopped the
    /// sending; parts already sent then still run and are reported.
    pub fn add_pages(
        &self,
        bdev: &'b BlockDevice,
        write: bool,
        sector: u64,
        pages: &'b [Page],
        sectors: u64,
    ) -> Result<core::ops::Range<usize>> {
        // Only `add` and `add_pages` borrow, and neither calls the other:
        // this cannot fail, and `try_` keeps panics out of the I/O path.
        let mut clones = self.clones.try_borrow_mut().map_err(|_| EBUSY)?;
        let first = clones.len();
        let mut done = 0u64;
        let mut page = 0;
        while done < sectors {
            clones.reserve(1, GFP_NOIO)?;
            let rest = pages.get(page..).ok_or(EINVAL)?;
            let (bio, n) = page_bio(self.bios, bdev, write, sector + done, rest, sectors - done)?;
            Self::send(self.state, bio);
            // Cannot fail: room was reserved above.
            let _ = clones.push(Some(bio), GFP_NOIO);
            done += n;
            page += BIO_MAX_PAGES;
        }
        Ok(first..clones.len())
    }

    /// Submits `bio` as a part of the call whose state is `state`.
    fn send(state: *const PartsInFlight, bio: NonNull<bindings::bio>) {
        let raw = bio.as_ptr();
        // SAFETY: `state` is valid for the whole `transfer_parts` call (type
        // invariant), which waits for this part to end.  `raw` is a bio we
        // own and have not submitted; what it points to is borrowed for
        // `'b`, which outlasts that call.
        unsafe {
            (*state).remaining.add(1, Relaxed);
            (*raw).bi_private = state.cast_mut().cast();
            (*raw).bi_end_io = Some(part_end_io);
            bindings::submit_bio(raw);
        }
    }

    fn start(
        state: *const PartsInFlight,
        bios: &BioSet,
        bio: &Bio,
        offset: u64,
        sectors: u64,
        bdev: &BlockDevice,
        sector: u64,
    ) -> Option<NonNull<bindings::bio>> {
        if offset.checked_add(sectors)? > bio.nr_sectors() || sectors == 0 {
            return None;
        }
        // SAFETY: The source bio is valid for `'b`; `bios` outlives the
        // clone, which `transfer_parts` puts before it returns.
        let clone = NonNull::new(unsafe {
            bindings::bio_alloc_clone(bdev.as_raw(), bio.raw(), bindings::GFP_NOIO, bios.as_raw())
        })?;
        let c = clone.as_ptr();
        // SAFETY: `c` is a new clone we own, not submitted; the range was
        // checked against the bio's size above.
        unsafe {
            bindings::bio_trim(c, offset, sectors);
            (*c).bi_iter.bi_sector = sector;
            (*c).bi_flags |= 1u16 << bindings::BIO_FILTERED;
        }
        Self::send(state, clone);
        Some(clone)
    }
}

/// Ends one part of a [`transfer_parts`] call.
///
/// # Safety
///
/// `bio` is a bio sent by [`Parts::add`] or [`Parts::add_pages`], ending
/// now.
unsafe extern "C" fn part_end_io(bio: *mut bindings::bio) {
    // SAFETY: The private data is the `PartsInFlight` of the call, which
    // waits for this part before it goes away.
    let state = unsafe { &*((*bio).bi_private as *const PartsInFlight) };
    if state.remaining.fetch_sub(1, Full) == 1 {
        state.done.complete_all();
    }
}

/// Sends parts of bios in parallel, with bios from `bios`, and waits for all
/// of them.
///
/// `send` adds the parts with [`Parts::add`]; they start as they are added.
/// Once all ended, `ended` is called with each part's number and whether
/// it succeeded.  The bios and devices are borrowed for `'b`, which outlives
/// the call, so nothing they own can go away while a part is in flight.
pub fn transfer_parts<'b>(
    bios: &'b BioSet,
    send: impl FnOnce(&Parts<'b>),
    mut ended: impl FnMut(usize, bool),
) -> Result {
    let state = KBox::pin_init(
        pin_init!(PartsInFlight {
            remaining: Atomic::new(1),
            done <- Completion::new(),
        }),
        GFP_NOIO,
    )?;
    let parts = Parts {
        state: &*state,
        bios,
        clones: RefCell::new(KVec::new()),
        _bios: PhantomData,
    };
    send(&parts);
    // Drop the count held while adding; the last part to end completes.
    if state.remaining.fetch_sub(1, Full) != 1 {
        state.done.wait_for_completion();
    }
    for (i, clone) in parts.clones.into_inner().into_iter().enumerate() {
        let ok = clone.is_some_and(|c| {
            let c = c.as_ptr();
            // SAFETY: The clone ended (all parts did) and is still ours: read
            // its status and put it.
            unsafe {
                let ok = (*c).bi_status == bindings::BLK_STS_OK as bindings::blk_status_t;
                bindings::bio_put(c);
                ok
            }
        });
        ended(i, ok);
    }
    Ok(())
}
