// SPDX-License-Identifier: GPL-2.0

//! Snapshots and the registry that names them.
//!
//! A snapshot is created empty, gets devices added, and is destroyed.  Its
//! life is a state machine under one lock, so an addition that races with
//! the destruction either lands before it (and is undone by it) or fails.

use crate::{diff_storage::DiffStorage, tracker::Tracker};
use kernel::{
    block::bdev::OpenedBlockDevice,
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    uuid::Uuid,
};

/// What a snapshot holds before it is taken.
struct Parts {
    devices: KVec<Arc<Tracker>>,
    storage: DiffStorage,
}

enum State {
    /// Accepting devices and storage.
    Created(Parts),
    /// Destroyed; kept alive only by callers that looked it up before.
    Destroyed,
}

#[pin_data]
pub(crate) struct Snapshot {
    pub(crate) id: Uuid,
    #[pin]
    state: Mutex<State>,
}

impl Snapshot {
    fn new(id: Uuid) -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                id,
                state <- new_mutex!(
                    State::Created(Parts {
                        devices: KVec::new(),
                        storage: DiffStorage::default(),
                    }),
                    "blksnap_snapshot_state"
                ),
            }),
            GFP_KERNEL,
        )
    }

    fn add(&self, tracker: Arc<Tracker>) -> Result {
        let mut state = self.state.lock();
        let State::Created(parts) = &mut *state else {
            return Err(ESRCH);
        };
        parts.devices.reserve(1, GFP_KERNEL)?;
        tracker.join(self.id)?;
        parts.devices.push(tracker, GFP_KERNEL)?;
        Ok(())
    }

    fn append_storage(&self, device: Arc<OpenedBlockDevice>, ranges: &[(u64, u64)]) -> Result {
        let mut state = self.state.lock();
        let State::Created(parts) = &mut *state else {
            return Err(ESRCH);
        };
        parts.storage.append(device, ranges)?;
        pr_debug!(
            "snapshot {}: {} sectors of storage\n",
            self.id,
            parts.storage.capacity()
        );
        Ok(())
    }

    /// Releases the devices; they keep being tracked.
    fn destroy(&self) {
        let old = core::mem::replace(&mut *self.state.lock(), State::Destroyed);
        if let State::Created(parts) = old {
            for tracker in parts.devices.iter() {
                tracker.leave(self.id);
            }
        }
    }
}

kernel::sync::global_lock! {
    // SAFETY: Initialised in the module's init function before anything else
    // can reach it.
    pub(crate) unsafe(uninit) static SNAPSHOTS: Mutex<KVec<Arc<Snapshot>>> = KVec::new();
}

fn find(id: Uuid) -> Result<Arc<Snapshot>> {
    SNAPSHOTS
        .lock()
        .iter()
        .find(|s| s.id == id)
        .cloned()
        .ok_or(ESRCH)
}

/// Creates an empty snapshot and returns its identifier.
pub(crate) fn create() -> Result<Uuid> {
    let snapshot = Snapshot::new(Uuid::new_random())?;
    let id = snapshot.id;
    SNAPSHOTS.lock().push(snapshot, GFP_KERNEL)?;
    pr_debug!("snapshot {} created\n", id);
    Ok(id)
}

/// Destroys a snapshot; `ENODEV` if there is none with that identifier.
pub(crate) fn destroy(id: Uuid) -> Result {
    let snapshot = {
        let mut all = SNAPSHOTS.lock();
        let i = all.iter().position(|s| s.id == id).ok_or(ENODEV)?;
        all.remove(i)?
    };
    snapshot.destroy();
    pr_debug!("snapshot {} destroyed\n", id);
    Ok(())
}

/// Destroys every snapshot, when the module goes away.
pub(crate) fn destroy_all() {
    let all = core::mem::take(&mut *SNAPSHOTS.lock());
    for snapshot in all.iter() {
        snapshot.destroy();
    }
}

/// Returns the identifiers of all snapshots.
pub(crate) fn collect() -> Result<KVec<Uuid>> {
    let all = SNAPSHOTS.lock();
    let mut ids = KVec::with_capacity(all.len(), GFP_KERNEL)?;
    for s in all.iter() {
        ids.push(s.id, GFP_KERNEL)?;
    }
    Ok(ids)
}

/// Adds the device of `tracker` to snapshot `id`.
pub(crate) fn add_device(id: Uuid, tracker: Arc<Tracker>) -> Result {
    find(id)?.add(tracker)
}

/// Checks that snapshot `id` exists, for commands that validate their other
/// arguments before acting.
pub(crate) fn exists(id: Uuid) -> Result {
    find(id).map(|_| ())
}

/// Gives snapshot `id` the sector `ranges` of `device` as difference storage.
pub(crate) fn append_storage(
    id: Uuid,
    device: Arc<OpenedBlockDevice>,
    ranges: &[(u64, u64)],
) -> Result {
    find(id)?.append_storage(device, ranges)
}
