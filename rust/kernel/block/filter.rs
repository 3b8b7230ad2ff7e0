// SPDX-License-Identifier: GPL-2.0

//! Block device filters.
//!
//! A filter registers under a name; user space attaches it to block devices
//! with the `BLKFILTER_ATTACH` ioctl and the filter then sees every bio sent to
//! those devices.  See `Documentation/block/blkfilter.rst`.
//!
//! C header: [`include/linux/blk-filter.h`](srctree/include/linux/blk-filter.h)

use crate::{
    bindings,
    block::{bdev::BlockDevice, bio::FilteredBio},
    error::{from_result, to_result, VTABLE_DEFAULT_ERROR},
    prelude::*,
    types::Opaque,
    uaccess::UserPtr,
    ThisModule,
};
use core::marker::PhantomData;

pub mod passed;

/// The operations of a block device filter.
#[vtable]
pub trait Operations: Sized + 'static {
    /// The state the filter keeps for each device it is attached to.
    type Attachment: Send + Sync;

    /// Attaches the filter to `bdev` and returns the state for it.
    ///
    /// Runs under the disk's `open_mutex`; must not open the disk.
    fn attach(bdev: &BlockDevice) -> Result<Self::Attachment>;

    /// Detaches the filter: no [`Operations::submit_bio`] call for this
    /// attachment runs or will follow.  Runs under the disk's `open_mutex`.
    fn detach(attachment: Self::Attachment) {
        drop(attachment);
    }

    /// Executes the filter-specific command `cmd` with the user buffer `buf`
    /// of `len` bytes.  Returns a non-negative value for user space.
    fn ctl(_attachment: &Self::Attachment, _cmd: u32, _buf: UserPtr, _len: u32) -> Result<i32> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Looks at a bio before the device does.
    ///
    /// Returns the bio to let it go on, or keeps it and later passes it on
    /// with [`FilteredBio::resubmit`] or ends it.  (A different bio handed
    /// back is resubmitted, and the one given counts as kept.)  Called in the submitter's
    /// context with the queue entered; must not wait for I/O the filter
    /// submitted itself.
    fn submit_bio(attachment: &Self::Attachment, bio: FilteredBio) -> Option<FilteredBio>;
}

/// The state of one attachment, as the C side sees it.
///
/// `raw` comes first so that a pointer to it is a pointer to the whole.
#[repr(C)]
struct Attached<T: Operations> {
    raw: Opaque<bindings::blkfilter>,
    data: T::Attachment,
}

impl<T: Operations> Attached<T> {
    /// # Safety
    ///
    /// `flt` must have been returned by [`Adapter::attach`] for this `T` and
    /// not yet passed to [`Adapter::detach`].
    unsafe fn from_raw<'a>(flt: *mut bindings::blkfilter) -> &'a Self {
        // SAFETY: By the function's contract `flt` points to the first field of
        // a live `Attached<T>`, which is `repr(C)`.
        unsafe { &*flt.cast::<Self>() }
    }
}

struct Adapter<T: Operations>(PhantomData<T>);

impl<T: Operations> Adapter<T> {
    /// # Safety
    ///
    /// Called by the block layer with a valid `bdev`.
    unsafe extern "C" fn attach(bdev: *mut bindings::block_device) -> *mut bindings::blkfilter {
        // SAFETY: The block layer holds the device for the duration of the call.
        let bdev = unsafe { BlockDevice::from_raw(bdev) };
        let attached = T::attach(bdev).and_then(|data| {
            KBox::new(
                Attached::<T> {
                    raw: Opaque::zeroed(),
                    data,
                },
                GFP_KERNEL,
            )
            .map_err(Error::from)
        });
        match attached {
            Ok(attached) => KBox::into_raw(attached).cast(),
            Err(e) => e.to_ptr(),
        }
    }

    /// # Safety
    ///
    /// Called by the block layer, once, with a pointer [`Self::attach`] returned.
    unsafe extern "C" fn detach(flt: *mut bindings::blkfilter) {
        // SAFETY: `flt` came from `KBox::into_raw` in `attach` (the cast only
        // changed the pointee type of the same address), and the block layer
        // hands it back exactly once.
        let attached = unsafe { KBox::from_raw(flt.cast::<Attached<T>>()) };
        T::detach(KBox::into_inner(attached).data);
    }

    /// # Safety
    ///
    /// Called by the block layer with a live attachment.
    unsafe extern "C" fn ctl(
        flt: *mut bindings::blkfilter,
        cmd: c_uint,
        buf: *mut u8,
        len: u32,
    ) -> c_int {
        // SAFETY: The attachment is live while the block layer calls into it.
        let attached = unsafe { Attached::<T>::from_raw(flt) };
        from_result(|| T::ctl(&attached.data, cmd, UserPtr::from_ptr(buf.cast()), len))
    }

    /// # Safety
    ///
    /// Called by the block layer with a live attachment and a bio in flight.
    unsafe extern "C" fn submit_bio(
        flt: *mut bindings::blkfilter,
        bio: *mut bindings::bio,
    ) -> bool {
        // SAFETY: The attachment is live while the queue is entered.
        let attached = unsafe { Attached::<T>::from_raw(flt) };
        // SAFETY: The bio is in flight and the block layer hands its
        // completion to the filter; it came to a filter's `submit_bio`.
        let given = unsafe { FilteredBio::from_raw(bio) };
        match T::submit_bio(&attached.data, given) {
            Some(back) if back.raw() == bio => {
                // Passed back: the block layer goes on with it.
                back.into_raw();
                false
            }
            Some(other) => {
                // Another bio the filter held: the given one is the filter's
                // now, and the block layer must not go on with it.  The one
                // handed back goes on as if it had been resubmitted.
                other.resubmit();
                true
            }
            None => true,
        }
    }
}

/// A registered block device filter; unregistered when dropped.
///
/// # Examples
///
/// ```
/// use kernel::{
///     block::{bdev::BlockDevice, bio::FilteredBio, filter},
///     c_str,
///     sync::atomic::{Atomic, Relaxed},
///     ThisModule,
/// };
///
/// /// Counts the bios sent to each device it is attached to.
/// struct Counter;
///
/// #[vtable]
/// impl filter::Operations for Counter {
///     type Attachment = Atomic<usize>;
///
///     fn attach(_bdev: &BlockDevice) -> Result<Atomic<usize>> {
///         Ok(Atomic::new(0))
///     }
///
///     fn submit_bio(count: &Atomic<usize>, bio: FilteredBio) -> Option<FilteredBio> {
///         count.add(1, Relaxed);
///         Some(bio)
///     }
/// }
///
/// /// Registers the filter as `counter`, for `BLKFILTER_ATTACH` to name.
/// fn register(
///     module: &'static ThisModule,
/// ) -> impl PinInit<filter::Registration<Counter>, Error> {
///     filter::Registration::new(c_str!("counter"), module)
/// }
/// ```
///
/// # Invariants
///
/// `ops` is registered with the block layer from initialisation until drop.
#[pin_data(PinnedDrop)]
pub struct Registration<T: Operations> {
    #[pin]
    ops: Opaque<bindings::blkfilter_operations>,
    _t: PhantomData<T>,
}

// SAFETY: The registration is only touched by the block layer under its own
// locks, and by `drop`.
unsafe impl<T: Operations> Send for Registration<T> {}
// SAFETY: No method gives access to the C structure through `&self`.
unsafe impl<T: Operations> Sync for Registration<T> {}

impl<T: Operations> Registration<T> {
    /// Registers filter `T` under `name` for `module`.
    pub fn new(name: &'static CStr, module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(Self {
            ops <- Opaque::try_ffi_init(move |slot: *mut bindings::blkfilter_operations| {
                let mut ops: bindings::blkfilter_operations = pin_init::zeroed();
                ops.owner = module.as_ptr();
                ops.name = crate::str::as_char_ptr_in_const_context(name);
                ops.attach = Some(Adapter::<T>::attach);
                ops.detach = Some(Adapter::<T>::detach);
                ops.ctl = if T::HAS_CTL { Some(Adapter::<T>::ctl) } else { None };
                ops.submit_bio = Some(Adapter::<T>::submit_bio);
                // SAFETY: `slot` is valid for writes and pinned.
                unsafe { slot.write(ops) };
                // INVARIANT: Registered here; `drop` unregisters it.
                // SAFETY: `slot` is initialised and stays pinned until `drop`
                // unregisters it.
                to_result(unsafe { bindings::blkfilter_register(slot) })
            }),
            _t: PhantomData,
        })
    }
}

#[pinned_drop]
impl<T: Operations> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: Registered by the type invariant.  An attached filter pins
        // the module, so no attachment is left when the module's registration
        // is dropped.
        unsafe { bindings::blkfilter_unregister(self.ops.get()) };
    }
}
