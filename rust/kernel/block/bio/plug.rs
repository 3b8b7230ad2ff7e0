// SPDX-License-Identifier: GPL-2.0

//! Plugging: holding back the bios a task submits, so that the block layer
//! can merge neighbours before they go to the device.
//!
//! A task that sends several bios in a row, for example reads of adjacent
//! ranges, submits them under a plug; they go out when the plug ends, or
//! when the task sleeps.
//!
//! C header: [`include/linux/blkdev.h`](srctree/include/linux/blkdev.h)
//!
//! # Examples
//!
//! ```
//! use kernel::block::bio::plug;
//!
//! fn send_all(bios: impl Iterator<Item = kernel::block::bio::FilteredBio>) {
//!     plug::plugged(|| {
//!         for bio in bios {
//!             bio.resubmit();
//!         }
//!     });
//! }
//! ```

use crate::{bindings, types::Opaque};

/// Runs `f` with the current task's bios plugged, and sends them on when
/// it returns.  Plugs nest: only the outermost one holds bios back.
///
/// Process context only, and it may sleep: the plug belongs to the current
/// task, and sending the bios on may wait for the device.
pub fn plugged<R>(f: impl FnOnce() -> R) -> R {
    crate::task::might_sleep();
    let plug = Opaque::<bindings::blk_plug>::uninit();
    // SAFETY: In process context (checked above in debug builds), `plug`
    // becomes the current task's plug; it lives on this stack frame, does
    // not move, and is finished below, by the same task, before the frame
    // goes.
    unsafe { bindings::blk_start_plug(plug.get()) };
    let result = f();
    // SAFETY: `plug` was started above, by this task.
    unsafe { bindings::blk_finish_plug(plug.get()) };
    result
}
