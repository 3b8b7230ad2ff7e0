// SPDX-License-Identifier: GPL-2.0

//! Room in difference storage for the copies of one device, and growing a
//! storage file ahead of need.
//!
//! A file system waits for the direct I/O in flight on a file before it
//! grows it (ext4 and XFS do, holding the file's lock): the image reads
//! among it, however slow their device.  So a file that still has room
//! grows from the module's file queue, and the copy worker goes on with
//! the room left meanwhile; only a copy that finds no room at all waits
//! for a growth.  On the file queue the stores to the file wait for the
//! growth (the file system's lock) without holding up the store work.
//! The growth holds the area, so destroying the snapshot and unloading
//! the module wait for it.

use super::DiffArea;
use crate::diff_storage::{Growth, Place};
use kernel::{prelude::*, sync::Arc, workqueue::WorkItem};

impl DiffArea {
    /// A place in difference storage for `sectors`.  A storage file that
    /// runs short grows without the storage lock: copy-on-write of other
    /// devices of the snapshot goes on meanwhile, and waits only for room
    /// it needs.
    pub(super) fn place(self: &Arc<Self>, sectors: u64) -> Result<Place> {
        loop {
            let (result, growth) = {
                let mut storage = self.storage.lock();
                let result = storage.alloc(sectors);
                let needed = match &result {
                    Err(e) if *e == EAGAIN => sectors,
                    _ => 0,
                };
                (result, storage.growth(needed))
            };
            if let Some(growth) = growth {
                if result.is_ok() {
                    self.grow_ahead(growth);
                } else {
                    self.grow(growth);
                }
            }
            match result {
                // Another device's worker, or the file queue, grows the
                // file: wait for it, and try again.
                Err(e) if e == EAGAIN => self.storage.wait_for_growth(),
                result => return result,
            }
        }
    }

    /// Runs `growth` and records how it ended.
    fn grow(&self, growth: Growth) {
        let grown = growth.run();
        self.storage.grown(growth, grown);
    }

    /// Hands `growth` to the file queue.  The storage runs one growth at a
    /// time (`DiffStorage::growth` gives none while one runs), so the
    /// area's slot is free.
    fn grow_ahead(self: &Arc<Self>, growth: Growth) {
        let left = self.growth.lock().replace(growth);
        if let Some(left) = left {
            // Cannot happen (see above); grow here rather than lose it.
            self.grow(left);
        }
        // If the work is pending already, it takes this growth too.
        let _ = self.queues.file.enqueue::<_, 3>(self.clone());
    }
}

impl WorkItem<3> for DiffArea {
    type Pointer = Arc<DiffArea>;

    /// Runs the growth handed over by `grow_ahead`.
    fn run(this: Arc<DiffArea>) {
        let growth = this.growth.lock().take();
        if let Some(growth) = growth {
            this.grow(growth);
        }
    }
}
