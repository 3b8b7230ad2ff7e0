// SPDX-License-Identifier: GPL-2.0

//! Capabilities of the current task.
//!
//! C header: [`include/linux/capability.h`](srctree/include/linux/capability.h)

use crate::bindings;

/// A capability, as numbered in `include/uapi/linux/capability.h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability(u32);

impl Capability {
    /// Administration of the system, including block devices.
    pub const SYS_ADMIN: Self = Self(bindings::CAP_SYS_ADMIN);
}

/// Returns true if the current task has `cap` in its user namespace's
/// initial namespace, recording its use as `capable()` does.
///
/// # Examples
///
/// ```
/// use kernel::capability::{capable, Capability};
///
/// /// Lets only administrators go on.
/// fn admin_only() -> Result {
///     if capable(Capability::SYS_ADMIN) {
///         Ok(())
///     } else {
///         Err(EPERM)
///     }
/// }
/// ```
pub fn capable(cap: Capability) -> bool {
    // The value is one of the constants above, all valid capabilities.
    let cap = cap.0 as crate::ffi::c_int;
    // SAFETY: `capable` only reads the credentials of the current task, which
    // are valid while it runs.
    unsafe { bindings::capable(cap) }
}
