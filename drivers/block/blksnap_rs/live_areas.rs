// SPDX-License-Identifier: GPL-2.0

//! The difference areas of a snapshot that still exist, so that destroying
//! the snapshot can wait for them.
//!
//! A retired area can outlive its snapshot for a while: work items and
//! queued bios hold it.  Until it is gone it may release writes it held and
//! store chunks, so its device must not join a new snapshot and its storage
//! must not be handed to another one before then.

use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex},
};

#[pin_data]
pub(crate) struct LiveAreas {
    #[pin]
    count: Mutex<usize>,
    #[pin]
    gone: CondVar,
}

impl LiveAreas {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                count <- new_mutex!(0, "blksnap_live_areas"),
                gone <- new_condvar!("blksnap_live_areas_gone"),
            }),
            GFP_KERNEL,
        )
    }

    /// Counts one more area, for as long as the returned token lives.
    pub(crate) fn enter(self: &Arc<Self>) -> LiveArea {
        *self.count.lock() += 1;
        LiveArea(self.clone())
    }

    /// Waits until every area counted is gone.
    pub(crate) fn wait_all_gone(&self) {
        let mut count = self.count.lock();
        while *count != 0 {
            self.gone.wait(&mut count);
        }
    }
}

/// Held by a difference area, as its last field: dropped after everything
/// else in it, its storage and devices included.
pub(crate) struct LiveArea(Arc<LiveAreas>);

impl Drop for LiveArea {
    fn drop(&mut self) {
        let mut count = self.0.count.lock();
        *count -= 1;
        if *count == 0 {
            self.0.gone.notify_all();
        }
    }
}
