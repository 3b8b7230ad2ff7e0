// SPDX-License-Identifier: GPL-2.0

//! Bios: the block layer's I/O units.
//!
//! C header: [`include/linux/blk_types.h`](srctree/include/linux/blk_types.h)

use crate::{bindings, types::Opaque};
use core::{marker::PhantomData, ptr::NonNull};

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

/// A bio (`struct bio`) in flight, as a filter or a bio-based disk sees it
/// while it is submitted: the view shared by every [`SubmittedBio`].
///
/// # Examples
///
/// ```
/// use kernel::block::bio::Bio;
///
/// /// Whether `bio` changes data in the first `sectors` sectors.
/// fn changes_head(bio: &Bio, sectors: u64) -> bool {
///     bio.changed_sectors().is_some_and(|(start, _)| start < sectors)
/// }
/// ```
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
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::bio) -> &'a Self {
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

/// Where a [`SubmittedBio`] came from, which decides what may be done with
/// it besides ending it.
pub trait Origin: private::Sealed + Send + 'static {}

/// The origin of a bio that a block device filter took over in its
/// `submit_bio`: it was checked and remapped already, and may go on to its
/// device past the filter.
pub enum Filtered {}

/// The origin of a bio submitted to a driver's own bio-based disk: the
/// driver serves it and ends it.
pub enum Disk {}

impl Origin for Filtered {}
impl Origin for Disk {}

mod private {
    pub trait Sealed {}
    impl Sealed for super::Filtered {}
    impl Sealed for super::Disk {}
}

/// A bio a filter took over.
pub type FilteredBio = SubmittedBio<Filtered>;

/// A bio submitted to a driver's own disk.
pub type DiskBio = SubmittedBio<Disk>;

/// A bio in flight that was handed to us, which we must end (or, for a
/// [`FilteredBio`], send on).
///
/// Dropping it without doing so ends it with an I/O error, so that nobody
/// waits forever.
///
/// # Examples
///
/// ```
/// use kernel::block::bio::{FilteredBio, Status};
///
/// /// A filter's `submit_bio` that refuses writes and lets the rest go on.
/// fn read_only(bio: FilteredBio) -> Option<FilteredBio> {
///     if bio.operation().changes_data() {
///         bio.end(Status::IoError);
///         return None;
///     }
///     Some(bio)
/// }
/// ```
///
/// # Invariants
///
/// `bio` is a valid bio whose completion this object owns, and it came from
/// where `O` says.
pub struct SubmittedBio<O: Origin> {
    bio: NonNull<bindings::bio>,
    _origin: PhantomData<O>,
}

// SAFETY: A bio may be completed or resubmitted from any task.
unsafe impl<O: Origin> Send for SubmittedBio<O> {}

impl<O: Origin> SubmittedBio<O> {
    /// Takes over a bio.
    ///
    /// # Safety
    ///
    /// `bio` must be a bio in flight whose completion the caller hands over,
    /// and must come from where `O` says: for [`Filtered`], a bio that a
    /// block device filter got in its `submit_bio`.
    pub(crate) unsafe fn from_raw(bio: *mut bindings::bio) -> Self {
        // INVARIANT: The caller hands over the completion of a bio from `O`.
        Self {
            // SAFETY: The block layer never hands out a null bio.
            bio: unsafe { NonNull::new_unchecked(bio) },
            _origin: PhantomData,
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
}

impl SubmittedBio<Filtered> {
    /// Sends the bio on to its device, past the filter that took it over.
    pub fn resubmit(self) {
        // SAFETY: The bio came from a filter (type invariant), so it was
        // checked and remapped already, as `blkfilter_resubmit_bio` requires.
        unsafe { bindings::blkfilter_resubmit_bio(self.into_raw()) };
    }
}

impl<O: Origin> core::ops::Deref for SubmittedBio<O> {
    type Target = Bio;

    fn deref(&self) -> &Bio {
        // SAFETY: The bio is valid and not completed while we own it.
        unsafe { Bio::from_raw(self.bio.as_ptr()) }
    }
}

impl<O: Origin> Drop for SubmittedBio<O> {
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
/// # Examples
///
/// ```
/// use kernel::block::bio::{BioList, Filtered, FilteredBio};
/// use kernel::sync::{new_spinlock, SpinLock};
///
/// /// Writes held back until the filter lets them go, in the order they came.
/// #[pin_data]
/// struct Held {
///     #[pin]
///     writes: SpinLock<BioList<Filtered>>,
/// }
///
/// impl Held {
///     fn new() -> impl PinInit<Self> {
///         pin_init!(Self { writes <- new_spinlock!(BioList::new()) })
///     }
///
///     fn hold(&self, bio: FilteredBio) {
///         self.writes.lock().push(bio);
///     }
///
///     /// Sends every held write on, outside the lock.
///     fn release(&self) {
///         let mut writes = self.writes.lock().take();
///         while let Some(bio) = writes.pop() {
///             bio.resubmit();
///         }
///     }
/// }
/// ```
///
/// # Invariants
///
/// `head` starts a chain through `bi_next` of bios from `O` whose completion
/// the list owns, ending at `tail`; both are null when it is empty.
pub struct BioList<O: Origin> {
    head: *mut bindings::bio,
    tail: *mut bindings::bio,
    _origin: PhantomData<O>,
}

// SAFETY: The list owns its bios, which may be ended or resubmitted from any
// task.
unsafe impl<O: Origin> Send for BioList<O> {}

impl<O: Origin> BioList<O> {
    /// An empty list.
    pub const fn new() -> Self {
        // INVARIANT: An empty chain: both ends null.
        Self {
            head: core::ptr::null_mut(),
            tail: core::ptr::null_mut(),
            _origin: PhantomData,
        }
    }

    /// Returns true if no bio is queued.
    pub fn is_empty(&self) -> bool {
        self.head.is_null()
    }

    /// Queues `bio` last.
    pub fn push(&mut self, bio: SubmittedBio<O>) {
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
        // INVARIANT: `raw` came from `O`, is owned by the list and ends the
        // chain.
        self.tail = raw;
    }

    /// Takes the oldest bio off the list.
    pub fn pop(&mut self) -> Option<SubmittedBio<O>> {
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
        // SAFETY: The list owned the completion of `raw`, a bio from `O`, and
        // hands it over.
        Some(unsafe { SubmittedBio::from_raw(raw) })
    }

    /// Takes every queued bio, leaving the list empty.
    pub fn take(&mut self) -> Self {
        core::mem::take(self)
    }
}

impl<O: Origin> Default for BioList<O> {
    fn default() -> Self {
        Self::new()
    }
}

impl<O: Origin> Drop for BioList<O> {
    fn drop(&mut self) {
        while let Some(bio) = self.pop() {
            drop(bio);
        }
    }
}
