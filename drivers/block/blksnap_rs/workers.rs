// SPDX-License-Identifier: GPL-2.0

//! The module's own workqueues, on which every difference area runs its
//! copy, store, storage file and release work.
//!
//! That work sits in the write-back path of the originals, so it must make
//! progress when memory is short: the queues have rescuers.  Copy work waits
//! for store work, so the two are on separate queues: a rescuer busy with a
//! copy that waits for a store would otherwise be the only one that could
//! run the store.  Growths of a storage file, and the stores sent to it,
//! may wait seconds for the file's lock (a growth waits for the direct I/O
//! in flight on the file), so they have a queue of their own, and store
//! work never waits for them.  And the work runs the module's code, so the module must
//! not go while an item is queued or running: the queues are destroyed,
//! which waits for all of them, when the module goes and every area is
//! gone.

use kernel::{
    prelude::*,
    sync::Arc,
    workqueue::{OwnedQueue, QueueFlags},
};

/// The module's queues.
pub(crate) struct Queues {
    /// Copy work: writes to originals and image I/O.
    pub(crate) copy: OwnedQueue,
    /// Store work, and the release of areas; never waits for copy work.
    pub(crate) store: OwnedQueue,
    /// Growths of storage files, and the stores sent to them.
    pub(crate) file: OwnedQueue,
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in the module's init function before anything else
    // can reach it.
    pub(crate) unsafe(uninit) static QUEUE: Mutex<Option<Arc<Queues>>> = None;
}

/// The queues, for as long as the module holds them: a field of the module,
/// dropped after the filter and the control device are gone.
pub(crate) struct Workers(());

impl Workers {
    pub(crate) fn start() -> Result<Self> {
        let flags = QueueFlags::UNBOUND | QueueFlags::MEM_RECLAIM;
        let queues = Queues {
            copy: OwnedQueue::new(c"blksnap_copy", flags)?,
            store: OwnedQueue::new(c"blksnap_store", flags)?,
            file: OwnedQueue::new(c"blksnap_file", flags)?,
        };
        *QUEUE.lock() = Some(Arc::new(queues, GFP_KERNEL)?);
        Ok(Self(()))
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let Some(queue) = QUEUE.lock().take() else {
            return;
        };
        // Every area, and with it every other holder, is gone by now
        // (destroying a snapshot waits for its areas), so this destroys the
        // queue and waits for the items still running.  Were an area left,
        // its last holder would destroy the queue, perhaps from one of its
        // own items.
        if Arc::into_unique_or_drop(queue).is_none() {
            pr_warn!("workqueues still in use at module exit\n");
        }
    }
}

/// The queues, for a new difference area to hold.
pub(crate) fn queues() -> Result<Arc<Queues>> {
    QUEUE.lock().clone().ok_or(ENODEV)
}
