// SPDX-License-Identifier: GPL-2.0

//! Counting the bios a filter let pass until they end.
//!
//! A filter that must wait for the bios it let pass, to draw a line in time
//! between them and what comes later, cannot use the device's in-flight
//! count for a bio-based disk: device mapper targets such as dm-crypt,
//! dm-thin, dm-cache and dm-delay count a bio only when they send it down,
//! and may hold it a long time before that.  Nor does a queue freeze wait
//! for such a bio: a bio-based driver holds its queue only while it takes a
//! bio in.  [`PassedBios`] hooks the end of each bio it is given, the way
//! stacking drivers save and restore `bi_end_io`, and ends it again once
//! the hook is undone.
//!
//! A bio the driver split comes back to the filter for its rest: it is
//! counted once, until all of it ended.  The hooks come from a mempool with
//! a small reserve; past it, counting a bio waits for memory, or for counted
//! bios to end.
//!
//! C header: [`include/linux/mempool.h`](srctree/include/linux/mempool.h)

use crate::{
    bindings,
    block::bio::FilteredBio,
    prelude::*,
    sync::{
        atomic::{Acquire, Atomic, Full},
        Arc,
    },
    types::ScopeGuard,
};
use core::{ffi::c_void, ptr::NonNull};

/// Hooks kept in reserve, so that counting a bio never waits for memory
/// that only I/O could free.
const RESERVED_HOOKS: i32 = 16;

/// What a counted bio carries while in flight, in place of its own
/// completion, which is put back when the bio ends.
struct Hook {
    end_io: bindings::bio_end_io_t,
    private: *mut c_void,
    /// A reference, from [`Arc::into_raw`], given back when the bio ends.
    counts: *const Counts,
}

/// The count, and the hooks' memory; shared with the bios in flight, so the
/// last of them may free it.
///
/// # Invariants
///
/// `pool` is a mempool of [`Hook`]-sized elements, destroyed only by drop,
/// when no bio holds a hook (each holds a reference to `self`).
struct Counts {
    in_flight: Atomic<usize>,
    pool: NonNull<bindings::mempool>,
}

// SAFETY: The count is atomic; the mempool is used only through its C API,
// which locks as it needs.
unsafe impl Send for Counts {}
// SAFETY: As for `Send`.
unsafe impl Sync for Counts {}

impl Drop for Counts {
    fn drop(&mut self) {
        // SAFETY: By the type invariant the pool is valid and every hook is
        // back in it.  Freeing its elements needs no sleeping context.
        unsafe { bindings::mempool_destroy(self.pool.as_ptr()) };
    }
}

/// Counts bios, from when a filter lets them pass until they end.
///
/// # Examples
///
/// ```
/// use kernel::block::{bio::FilteredBio, filter::passed::PassedBios};
///
/// /// Passes `bio` on, counted; a bio that asked not to wait may be ended
/// /// with `EAGAIN` instead.
/// fn pass(passed: &PassedBios, mut bio: FilteredBio) -> Option<FilteredBio> {
///     passed.count(&mut bio).ok()?;
///     Some(bio)
/// }
///
/// let passed = PassedBios::new()?;
/// assert_eq!(passed.in_flight(), 0);
/// # Ok::<(), Error>(())
/// ```
pub struct PassedBios {
    counts: Arc<Counts>,
}

impl PassedBios {
    /// Creates a counter with nothing in flight.
    pub fn new() -> Result<Self> {
        // SAFETY: `mempool_kmalloc` and `mempool_kfree` take the element
        // size as their data, as `mempool_create_kmalloc_pool` passes it.
        let pool = unsafe {
            bindings::mempool_create_node_noprof(
                RESERVED_HOOKS,
                Some(bindings::mempool_kmalloc),
                Some(bindings::mempool_kfree),
                core::ptr::without_provenance_mut(core::mem::size_of::<Hook>()),
                bindings::GFP_KERNEL,
                bindings::NUMA_NO_NODE,
            )
        };
        let pool = NonNull::new(pool).ok_or(ENOMEM)?;
        let guard = ScopeGuard::new_with_data(pool, |pool| {
            // SAFETY: The pool was created above and nothing used it.
            unsafe { bindings::mempool_destroy(pool.as_ptr()) }
        });
        let counts = Arc::new(
            // INVARIANT: A new pool of hooks, none handed out.
            Counts {
                in_flight: Atomic::new(0),
                pool: guard.dismiss(),
            },
            GFP_KERNEL,
        );
        // `Arc::new` drops what it was given when it fails, and with it the
        // pool.
        Ok(Self { counts: counts? })
    }

    /// Counts `bio` as in flight until it ends.  Only a bio that asked not
    /// to wait can fail, with `EAGAIN`, when no memory is at hand; the
    /// caller ends it then.
    pub fn count(&self, bio: &mut FilteredBio) -> Result {
        let raw = bio.raw();
        // SAFETY: We own the bio's completion (type invariant of
        // `FilteredBio`); its `bi_end_io` is ours to read.
        let end_io = unsafe { (*raw).bi_end_io };
        if end_io.is_some_and(|f| core::ptr::fn_addr_eq(f, passed_end_io as PassedEndIo)) {
            // The rest of a bio counted when its first part passed.
            return Ok(());
        }
        let gfp = if bio.is_nowait() {
            bindings::GFP_NOWAIT
        } else {
            bindings::GFP_NOIO
        };
        // SAFETY: The pool is valid (type invariant of `Counts`).  A mempool
        // allocation that may sleep never fails.
        let hook = unsafe { bindings::mempool_alloc_noprof(self.counts.pool.as_ptr(), gfp) };
        if hook.is_null() {
            return Err(EAGAIN);
        }
        let hook = hook.cast::<Hook>();
        self.counts.in_flight.fetch_add(1, Full);
        // SAFETY: We own the bio's completion, see above.
        let private = unsafe { (*raw).bi_private };
        // SAFETY: `hook` is a new element of `Hook` size, suitably aligned
        // as kmalloc memory is.
        unsafe {
            hook.write(Hook {
                end_io,
                private,
                counts: Arc::into_raw(self.counts.clone()),
            })
        };
        // SAFETY: We own the bio's completion, so its `bi_end_io` and
        // `bi_private` are ours to replace until it ends, when
        // `passed_end_io` puts them back.
        unsafe {
            (*raw).bi_end_io = Some(passed_end_io);
            (*raw).bi_private = hook.cast();
        }
        Ok(())
    }

    /// How many bios counted have not ended yet.
    pub fn in_flight(&self) -> usize {
        self.counts.in_flight.load(Acquire)
    }
}

type PassedEndIo = unsafe extern "C" fn(*mut bindings::bio);

/// Ends a counted bio: puts its own completion back and ends it again.
///
/// # Safety
///
/// `bio` was counted by [`PassedBios::count`] and is ending now.
unsafe extern "C" fn passed_end_io(bio: *mut bindings::bio) {
    // SAFETY: `count` put a hook in `bi_private`, and the bio is ours until
    // it is ended again below.
    let hook = unsafe { (*bio).bi_private.cast::<Hook>() };
    // SAFETY: The hook is valid and read once, here.
    let Hook {
        end_io,
        private,
        counts,
    } = unsafe { hook.read() };
    // SAFETY: `count` gave the hook this reference.
    let counts = unsafe { Arc::from_raw(counts) };
    // SAFETY: The hook came from this pool, which lives while `counts` does.
    unsafe { bindings::mempool_free(hook.cast(), counts.pool.as_ptr()) };
    // SAFETY: The bio is ours until it is ended again.
    unsafe {
        (*bio).bi_end_io = end_io;
        (*bio).bi_private = private;
    }
    // Again, not the saved completion directly: `bio_endio` resolves a
    // chained bio (`bio_chain_endio` itself must never be called), and what
    // it did the first time (the chain count, integrity, zone and trace
    // flags, the cgroup) is cleared and not done twice.
    // SAFETY: The bio is ending; after this it is not touched again.
    unsafe { bindings::bio_endio(bio) };
    counts.in_flight.fetch_sub(1, Full);
}
