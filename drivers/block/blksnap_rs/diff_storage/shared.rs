// SPDX-License-Identifier: GPL-2.0

//! The difference storage of a taken snapshot, shared by the areas of all
//! its devices, with the condition a copy waits on while another one grows
//! the storage file.

use super::{DiffStorage, Growth};
use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, Mutex, MutexGuard},
};

/// A snapshot's storage once it is taken: every area allocates from it.
///
/// # Invariants
///
/// A growth that the storage has handed out (`DiffStorage::growth`) ends in
/// [`SharedStorage::grown`], which notifies `grown`: a copy waiting in
/// [`SharedStorage::wait_for_growth`] is always woken.
#[pin_data]
pub(crate) struct SharedStorage {
    #[pin]
    storage: Mutex<DiffStorage>,
    /// Notified when a growth of the storage file ends.
    #[pin]
    grown: CondVar,
}

impl SharedStorage {
    /// Shares `storage`.
    pub(crate) fn new(storage: DiffStorage) -> Result<Arc<Self>> {
        Arc::pin_init(
            pin_init!(Self {
                storage <- new_mutex!(storage, "blksnap_diff_storage"),
                grown <- new_condvar!("blksnap_diff_storage_grown"),
            }),
            GFP_KERNEL,
        )
    }

    /// Locks the storage, to allocate from it or to change its limit.
    pub(crate) fn lock(&self) -> MutexGuard<'_, DiffStorage> {
        self.storage.lock()
    }

    /// Records how `growth`, run without the lock, ended, and wakes the
    /// copies that wait for room.
    pub(crate) fn grown(&self, growth: Growth, result: Result) {
        self.storage.lock().grown(growth, result);
        self.grown.notify_all();
    }

    /// Waits until no growth of the storage file runs.  Only the copy
    /// worker waits here, and the write to the original it holds up is
    /// waited for uninterruptibly too: a growth stuck for two minutes
    /// shows as a hung task, as it should.
    pub(crate) fn wait_for_growth(&self) {
        let mut storage = self.storage.lock();
        while storage.growing() {
            self.grown.wait(&mut storage);
        }
    }
}
