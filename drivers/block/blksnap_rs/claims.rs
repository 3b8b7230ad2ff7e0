// SPDX-License-Identifier: GPL-2.0

//! What the module writes to, across all snapshots: the sector ranges given
//! as difference storage and the image devices.
//!
//! One snapshot's storage must never be another's (each would overwrite
//! the other's copies), nor an image (storing a chunk would write to the
//! image, which stores chunks).  The checks within one snapshot are
//! `DiffStorage`'s; these are the ones across snapshots, made and recorded
//! in one step under one lock, so that two appends cannot both pass.

use kernel::{prelude::*, sync::Mutex};

/// A range of sectors `start..end` on device `devt`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Claim {
    pub(crate) devt: u32,
    pub(crate) start: u64,
    pub(crate) end: u64,
}

impl Claim {
    fn overlaps(&self, other: &Claim) -> bool {
        self.devt == other.devt && self.start < other.end && other.start < self.end
    }
}

pub(crate) struct Claims {
    ranges: KVec<Claim>,
    images: KVec<u32>,
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in the module's init function before anything else
    // can reach it.
    pub(crate) unsafe(uninit) static CLAIMS: Mutex<Claims> = Claims {
        ranges: KVec::new(),
        images: KVec::new(),
    };
}

/// Records `ranges` as difference storage: `EINVAL` if they are on an image,
/// `EBUSY` if any overlaps storage already recorded (another snapshot's:
/// a snapshot's own ranges were checked against each other before).
/// Records all or none.
pub(crate) fn claim(ranges: &[Claim]) -> Result {
    let mut claims = CLAIMS.lock();
    for new in ranges {
        if claims.images.contains(&new.devt) {
            return Err(EINVAL);
        }
        if claims.ranges.iter().any(|old| old.overlaps(new)) {
            return Err(EBUSY);
        }
    }
    claims.ranges.reserve(ranges.len(), GFP_KERNEL)?;
    for new in ranges {
        // Cannot fail: the room was reserved.
        let _ = claims.ranges.push(*new, GFP_NOWAIT);
    }
    Ok(())
}

/// Forgets `ranges`, once nothing writes to them any more.
pub(crate) fn release(ranges: impl Iterator<Item = Claim>) {
    let mut claims = CLAIMS.lock();
    for gone in ranges {
        if let Some(i) = claims.ranges.iter().position(|c| *c == gone) {
            let _ = claims.ranges.remove(i);
        }
    }
}

/// Records image device `devt`, which storage may not be on.
pub(crate) fn add_image(devt: u32) -> Result {
    CLAIMS.lock().images.push(devt, GFP_KERNEL)?;
    Ok(())
}

/// Forgets image device `devt`.
pub(crate) fn remove_image(devt: u32) {
    let mut claims = CLAIMS.lock();
    if let Some(i) = claims.images.iter().position(|&d| d == devt) {
        let _ = claims.images.remove(i);
    }
}
