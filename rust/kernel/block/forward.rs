// SPDX-License-Identifier: GPL-2.0

//! Forwarding bios to a block device without waiting for them.
//!
//! A bio-based driver that finds a bio's data on a device it holds can send a
//! clone of the bio there and end the bio once the clone ended.  The
//! [`Forwarder`] owns what the clones may go to and outlives every clone in
//! flight: dropping it waits for them.  It can also hold new forwards back
//! and wait for those in flight, for a driver that must order them against
//! its own I/O.  A driver that serves a bio some other way without waiting
//! (from a file, say) holds the forwarder for it, so that the forwarder's
//! drop, and a drain, wait for that too.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

use crate::{
    bindings,
    block::{
        bdev::BlockDevice,
        bio::{Bio, DiskBio},
    },
    error::to_result,
    prelude::*,
    sync::{new_condvar, new_spinlock_irq, CondVar, SpinLockIrq},
    types::Opaque,
};
use core::ptr::NonNull;

/// The counts of a [`Forwarder`].
struct Counts {
    /// Clones sent that have not ended.
    in_flight: usize,
    /// I/O of the driver's own that it holds the forwarder for, see
    /// [`Held`].
    held: usize,
    /// Pauses in force; while there is one, nothing is forwarded.
    paused: usize,
    /// Those of the pauses that are drains; while there is one, nothing is
    /// held either.
    draining: usize,
}

/// What a clone carries in front of it, in its bio set's front pad.
#[repr(C)]
struct CloneInfo {
    /// The forwarded bio, ended when the clone ends.
    parent: *mut bindings::bio,
    flight: *const Flight,
}

/// The part of a [`Forwarder`] that clones in flight use.
///
/// # Invariants
///
/// `bio_set` is initialised, with a front pad of one [`CloneInfo`], and
/// is exited only by `drop`, after every clone ended.
#[pin_data(PinnedDrop)]
struct Flight {
    #[pin]
    counts: SpinLockIrq<Counts>,
    /// Signalled when the last clone in flight ends, or the last hold
    /// goes, during a pause.
    #[pin]
    drained: CondVar,
    #[pin]
    bio_set: Opaque<bindings::bio_set>,
}

// SAFETY: The bio set is only used through the C API, which locks as it
// needs; the counts are under a lock.
unsafe impl Send for Flight {}
// SAFETY: As for `Send`.
unsafe impl Sync for Flight {}

impl Flight {
    /// Counts one more in `count` (clones in flight, or holds), unless
    /// `refused` (a pause, or a drain) is in force.
    fn add(&self, count: fn(&mut Counts) -> &mut usize, refused: fn(&Counts) -> usize) -> bool {
        let mut counts = self.counts.lock();
        if refused(&counts) > 0 {
            return false;
        }
        *count(&mut counts) += 1;
        true
    }

    /// Counts one less in `count`.  The caller must not touch `self`
    /// afterwards: a pause in [`Forwarder`]'s drop may be waiting to free it.
    fn remove(&self, count: fn(&mut Counts) -> &mut usize) {
        let mut counts = self.counts.lock();
        let left = count(&mut counts);
        *left -= 1;
        if *left == 0 && counts.paused > 0 {
            // Under the lock: the waiter cannot go on before it is dropped.
            self.drained.notify_all();
        }
    }

    fn enter(&self) -> bool {
        self.add(|c| &mut c.in_flight, |c| c.paused)
    }

    fn leave(&self) {
        self.remove(|c| &mut c.in_flight)
    }

    fn hold(&self) -> bool {
        self.add(|c| &mut c.held, |c| c.draining)
    }

    fn release(&self) {
        self.remove(|c| &mut c.held)
    }

    /// Holds new forwards back, and waits until no clone is in flight;
    /// with `drain`, holds new holds back too and waits until none is left.
    fn pause(&self, drain: bool) {
        let mut counts = self.counts.lock();
        counts.paused += 1;
        counts.draining += usize::from(drain);
        while counts.in_flight > 0 || (drain && counts.held > 0) {
            self.drained.wait(&mut counts);
        }
    }

    fn resume(&self, drain: bool) {
        let mut counts = self.counts.lock();
        counts.paused -= 1;
        counts.draining -= usize::from(drain);
    }
}

#[pinned_drop]
impl PinnedDrop for Flight {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariant the bio set is initialised; the
        // `Forwarder` that holds us waited for every clone, so none of its
        // bios is in use.
        unsafe { bindings::bioset_exit(self.bio_set.get()) };
    }
}

/// Sends bios on, whole, to block devices that `target` holds, without
/// waiting for them.
///
/// Dropping it waits until every clone it sent ended, so `target`, and the
/// devices borrowed from it, outlive them.
///
/// # Examples
///
/// ```
/// use kernel::block::{
///     bdev::OpenedBlockDevice,
///     bio::{DiskBio, Status},
///     forward::Forwarder,
/// };
///
/// /// A forwarder to `lower`, which it keeps open while clones are in flight.
/// fn forwarder(lower: OpenedBlockDevice) -> Result<Pin<KBox<Forwarder<OpenedBlockDevice>>>> {
///     KBox::pin_init(Forwarder::new(lower), GFP_KERNEL)
/// }
///
/// /// Sends `bio` to the same sector of the lower device, or fails it.
/// fn pass_down(forwarder: &Forwarder<OpenedBlockDevice>, bio: DiskBio) {
///     if let Err(bio) = forwarder.forward(bio, |lower, bio| Some((lower.bdev(), bio.sector()))) {
///         bio.end(Status::IoError);
///     }
/// }
/// ```
#[pin_data(PinnedDrop)]
pub struct Forwarder<T> {
    #[pin]
    flight: Flight,
    target: T,
}

/// A hold on a [`Forwarder`] for one I/O of the driver's own, sent
/// somewhere else than a block device (a file, say), that must end before
/// whatever the forwarder's owner holds goes: [`Forwarder::drain`] and the
/// forwarder's drop wait until it is dropped, [`Forwarder::pause`] does not.
///
/// It is `'static` so that it can travel with the I/O to its completion;
/// dropping the forwarder on the task that holds one never returns.
///
/// # Invariants
///
/// `flight` points at the `Flight` of a pinned [`Forwarder`], in which this
/// counts as one hold: the forwarder's drop waits for `drop`.
pub struct Held {
    flight: NonNull<Flight>,
}

// SAFETY: It only counts: dropping it takes the flight's lock, which any
// task or interrupt may do.
unsafe impl Send for Held {}
// SAFETY: Shared, it gives nothing away.
unsafe impl Sync for Held {}

impl Drop for Held {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the flight stays until this is
        // released.
        unsafe { self.flight.as_ref().release() };
    }
}

/// New forwards are held back while this exists; see [`Forwarder::pause`].
pub struct Paused<'a> {
    flight: &'a Flight,
    /// A drain, see [`Forwarder::drain`].
    drain: bool,
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.flight.resume(self.drain);
    }
}

impl<T: Send + Sync> Forwarder<T> {
    /// Creates a forwarder whose clones go to devices that `target` holds.
    pub fn new(target: T) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            flight <- try_pin_init!(Flight {
                counts <- new_spinlock_irq!(
                    Counts { in_flight: 0, held: 0, paused: 0, draining: 0 },
                    "forwarder_counts"
                ),
                drained <- new_condvar!("forwarder_drained"),
                // Last, so that nothing after it can fail and leak it.
                bio_set <- Opaque::try_ffi_init(|slot: *mut bindings::bio_set| {
                    // INVARIANT: Initialised here with a `CloneInfo` of front
                    // pad; only the drop, after every clone, exits it.
                    // SAFETY: `slot` is valid, uninitialised memory for a bio
                    // set.  `bioset_init` expects it zeroed: it leaves the
                    // parts for flags we do not pass (bvec pool, rescuer,
                    // per-CPU cache) alone, and they are checked later.
                    // Clones need no bio vectors of their own.
                    to_result(unsafe {
                        core::ptr::write_bytes(slot, 0, 1);
                        bindings::bioset_init(
                            slot,
                            bindings::BIO_POOL_SIZE,
                            core::mem::size_of::<CloneInfo>() as u32,
                            0,
                        )
                    })
                }),
            }),
            target,
        })
    }

    /// Returns what the clones go to.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// Sends `bio` on, whole, to the device and sector that `route` picks,
    /// and ends it with the clone's status once the clone ended.  The clone
    /// skips the filter of its device once.
    ///
    /// `route` runs after the forward counts as in flight, so a pause that
    /// begins after it waits for the clone.  The bio is given back if a pause
    /// is in force, if `route` declines, or if there is no memory for the
    /// clone.
    pub fn forward(
        &self,
        bio: DiskBio,
        route: impl for<'t> FnOnce(&'t T, &Bio) -> Option<(&'t BlockDevice, u64)>,
    ) -> core::result::Result<(), DiskBio> {
        if !self.flight.enter() {
            return Err(bio);
        }
        let Some((bdev, sector)) = route(&self.target, &bio) else {
            self.flight.leave();
            return Err(bio);
        };
        let gfp = if bio.is_nowait() {
            bindings::GFP_NOWAIT
        } else {
            bindings::GFP_NOIO
        };
        // SAFETY: The bio is valid while we own it; the bio set is
        // initialised (type invariant of `Flight`).
        let clone = unsafe {
            bindings::bio_alloc_clone(bdev.as_raw(), bio.raw(), gfp, self.flight.bio_set.get())
        };
        if clone.is_null() {
            self.flight.leave();
            return Err(bio);
        }
        let parent = bio.into_raw();
        // SAFETY: `clone` is a new bio we own, allocated from our bio set,
        // so a `CloneInfo` fits in front of it.  `bdev` is borrowed from
        // `target`, and `self` waits in its drop for this clone to end.
        unsafe {
            let info = clone.cast::<CloneInfo>().sub(1);
            info.write(CloneInfo {
                parent,
                flight: &self.flight,
            });
            (*clone).bi_iter.bi_sector = sector;
            (*clone).bi_flags |= 1u16 << bindings::BIO_FILTERED;
            (*clone).bi_end_io = Some(forwarded_end_io);
            bindings::submit_bio_noacct(clone);
        }
        Ok(())
    }

    /// Holds the forwarder for an I/O of the caller's own until the
    /// returned token is dropped, or returns `None` if a drain is in force.
    /// Drains that begin meanwhile, and the forwarder's drop, wait for the
    /// token.
    pub fn hold(&self) -> Option<Held> {
        // INVARIANT: The forwarder is pinned, and its drop waits until the
        // hold taken here is released.
        self.flight.hold().then(|| Held {
            flight: NonNull::from(&self.flight),
        })
    }

    /// Holds new forwards back, and waits until every clone in flight
    /// ended; holds go on.  Forwards resume when the returned guard is
    /// dropped.
    pub fn pause(&self) -> Paused<'_> {
        self.flight.pause(false);
        Paused {
            flight: &self.flight,
            drain: false,
        }
    }

    /// Pauses as [`Forwarder::pause`] does, and also holds new holds back
    /// and waits until every [`Held`] token was dropped.
    pub fn drain(&self) -> Paused<'_> {
        self.flight.pause(true);
        Paused {
            flight: &self.flight,
            drain: true,
        }
    }
}

/// Ends a forwarded bio when its clone ends.
///
/// # Safety
///
/// `clone` was sent by [`Forwarder::forward`] and is ending now.
unsafe extern "C" fn forwarded_end_io(clone: *mut bindings::bio) {
    // SAFETY: `forward` wrote a `CloneInfo` in front of the clone, and the
    // clone is valid until it is put below; the parent waits for its end.
    let info = unsafe {
        let info = clone.cast::<CloneInfo>().sub(1).read();
        (*info.parent).bi_status = (*clone).bi_status;
        info
    };
    // SAFETY: The clone is ours and not used afterwards.
    unsafe { bindings::bio_put(clone) };
    // SAFETY: We own the parent's completion, handed over in `forward`.
    unsafe { bindings::bio_endio(info.parent) };
    // SAFETY: The `Forwarder` waits for this `leave` before going away.
    unsafe { (*info.flight).leave() };
}

#[pinned_drop]
impl<T> PinnedDrop for Forwarder<T> {
    fn drop(self: Pin<&mut Self>) {
        // Nobody else can forward any more: wait for the clones in flight,
        // and for the holds.
        self.flight.pause(true);
    }
}
