// SPDX-License-Identifier: GPL-2.0

//! Snapshots and the registry that names them.
//!
//! A snapshot is created empty, gets devices added, and is destroyed.  Its
//! life is a state machine under one lock, so an addition that races with
//! the destruction either lands before it (and is undone by it) or fails.

use crate::{
    diff_area::DiffArea,
    diff_storage::{DiffStorage, SharedStorage},
    event_queue::{Event, EventQueue},
    image::{self, Image},
    live_areas::LiveAreas,
    params,
    tracker::Tracker,
};
use kernel::{
    block::{
        bdev::{BlockDevice, Mode, OpenedBlockDevice},
        freeze::Frozen,
    },
    fs::File,
    new_mutex,
    prelude::*,
    sync::{aref::ARef, Arc, Mutex},
    time::{Delta, Instant, Monotonic},
    uuid::Uuid,
};

/// What a snapshot holds before it is taken.
struct Parts {
    devices: KVec<Arc<Tracker>>,
    storage: DiffStorage,
    held: HeldStorage,
}

/// The exclusive open of a storage device given with `SET_STORAGE`, which
/// keeps others from mounting it or claiming it.  Its I/O goes through a
/// second, plain open in `DiffStorage`: letting an exclusive open go takes
/// the disk's `open_mutex`, which device commands hold while they take the
/// state lock, so it is only ever dropped where no lock is held (by
/// `destroy` and `take`, after the difference areas are gone).
type HeldStorage = Option<OpenedBlockDevice>;

/// A whole device given with `SET_STORAGE`: the exclusive open, and the one
/// for I/O.
pub(crate) struct StorageDevice {
    pub(crate) held: OpenedBlockDevice,
    pub(crate) io: Arc<OpenedBlockDevice>,
}

/// Storage given with `SET_STORAGE`.
pub(crate) enum NewStorage {
    Device(StorageDevice),
    /// A file the module opened: the one named, or an unnamed one in the
    /// directory named.
    File(ARef<File>),
}

/// What a taken snapshot holds.
struct TakenParts {
    devices: KVec<Arc<Tracker>>,
    /// Shared by the difference areas; can still grow.
    storage: Arc<SharedStorage>,
    held: HeldStorage,
    /// Dropped before the devices stop being copied: see `destroy`.
    images: KVec<Image>,
}

enum State {
    /// Accepting devices and storage.
    Created(Parts),
    /// Being taken, by a task that holds the parts while it opens devices
    /// (which takes their disks' `open_mutex`, so it cannot hold the state
    /// lock: device commands run under `open_mutex` and take it).
    Taking,
    /// Copy-on-write is on and the images exist.
    Taken(TakenParts),
    /// Destroyed; kept alive only by callers that looked it up before.
    Destroyed,
}

#[pin_data]
pub(crate) struct Snapshot {
    pub(crate) id: Uuid,
    events: Arc<EventQueue>,
    /// The difference areas made for this snapshot that still exist.
    areas: Arc<LiveAreas>,
    #[pin]
    state: Mutex<State>,
}

impl Snapshot {
    fn new(id: Uuid) -> Result<Arc<Self>> {
        let events = EventQueue::new()?;
        let storage = DiffStorage::new(events.clone(), params::diff_storage_minimum());
        Arc::pin_init(
            try_pin_init!(Self {
                id,
                events,
                areas: LiveAreas::new()?,
                state <- new_mutex!(
                    State::Created(Parts {
                        devices: KVec::new(),
                        storage,
                        held: None,
                    }),
                    "blksnap_snapshot_state"
                ),
            }),
            GFP_KERNEL,
        )
    }

    fn add(&self, tracker: Arc<Tracker>) -> Result {
        let mut state = self.state.lock();
        let parts = match &mut *state {
            State::Created(parts) => parts,
            State::Taking | State::Taken(_) => return Err(EBUSY),
            State::Destroyed => return Err(ESRCH),
        };
        parts.devices.reserve(1, GFP_KERNEL)?;
        tracker.join(self.id)?;
        parts.devices.push(tracker, GFP_KERNEL)?;
        Ok(())
    }

    fn append_storage(&self, device: Arc<OpenedBlockDevice>, ranges: &[(u64, u64)]) -> Result {
        let mut state = self.state.lock();
        match &mut *state {
            State::Created(parts) => parts.storage.append(device, ranges),
            State::Taken(taken) => taken.storage.lock().append(device, ranges),
            State::Taking => Err(EBUSY),
            State::Destroyed => Err(ESRCH),
        }
    }

    /// Gives the snapshot a whole device (`limit` sectors of it) or a file
    /// (grown up to `limit` sectors) as storage, or with `device` `None`
    /// changes the limit of the one given before.
    fn set_storage(&self, mut device: Option<NewStorage>, limit: u64) -> Result {
        let result = self.set_storage_locked(&mut device, limit);
        // A device refused is let go only now, without the state lock.
        drop(device);
        result
    }

    /// `set_storage` under the state lock; takes `device` if it keeps it.
    fn set_storage_locked(&self, device: &mut Option<NewStorage>, limit: u64) -> Result {
        let mut state = self.state.lock();
        match (&mut *state, device.as_ref()) {
            (State::Created(parts), Some(NewStorage::Device(given))) => {
                // `ELOOP` on a filtered device: see `claims`.
                parts.storage.set_device(given.io.clone(), limit)?;
                if let Some(NewStorage::Device(d)) = device.take() {
                    parts.held = Some(d.held);
                }
                Ok(())
            }
            // `ELOOP` if its file system is on a filtered device.
            (State::Created(parts), Some(NewStorage::File(file))) => {
                parts.storage.set_file(file.clone(), limit)
            }
            (State::Created(parts), None) => parts.storage.set_limit(limit),
            (State::Taken(taken), None) => taken.storage.lock().set_limit(limit),
            // A device can only be given before the take, when it is checked
            // against the originals.
            (State::Taken(_), Some(_)) | (State::Taking, _) => Err(EBUSY),
            (State::Destroyed, _) => Err(ESRCH),
        }
    }

    /// Takes the snapshot: everything that can fail is prepared first, then
    /// all devices are frozen, switched to copy-on-write together, and
    /// thawed.  On failure nothing is left changed.
    fn take(&self) -> Result {
        let mut parts = {
            let mut state = self.state.lock();
            let parts = match &mut *state {
                State::Created(parts) => parts,
                State::Taking | State::Taken(_) => return Err(EALREADY),
                State::Destroyed => return Err(ESRCH),
            };
            if parts.devices.is_empty() {
                return Err(ENODEV);
            }
            if parts.storage.capacity() == 0 {
                return Err(ENOSPC);
            }
            if !parts.devices.iter().all(|t| t.is_attached()) {
                return Err(ENODEV);
            }
            // The stack under the storage may have changed since it was
            // given; nothing is frozen yet, and nothing stores.
            parts.storage.check_stack()?;
            match core::mem::replace(&mut *state, State::Taking) {
                State::Created(parts) => parts,
                _ => return Err(EINVAL),
            }
        };

        // Room in a storage file now, while nothing waits for it.
        parts.storage.grow_before_take();
        // Devices are frozen in list order: make it the global order.
        parts
            .devices
            .sort_unstable_by_key(|tracker| tracker.freeze_order());
        let result = Self::switch_on(&mut parts, &self.events, &self.areas);
        let mut state = self.state.lock();
        let destroyed = matches!(*state, State::Destroyed);
        match result {
            Ok((images, storage)) if !destroyed => {
                let devices = core::mem::take(&mut parts.devices);
                *state = State::Taken(TakenParts {
                    devices,
                    storage,
                    held: parts.held.take(),
                    images,
                });
                drop(state);
                pr_info!("snapshot {} taken\n", self.id);
                Ok(())
            }
            Err(e) if !destroyed => {
                *state = State::Created(parts);
                Err(e)
            }
            result => {
                // Destroyed while being taken: finish the destruction here.
                drop(state);
                if let Ok((images, storage)) = result {
                    Self::switch_off(&parts.devices, images);
                    drop(storage);
                }
                self.release(&parts.devices);
                Err(ESRCH)
            }
        }
    }

    /// Prepares everything, then freezes all devices and switches them to
    /// copy-on-write together.  On failure `parts` is as it was.
    fn switch_on(
        parts: &mut Parts,
        events: &Arc<EventQueue>,
        live: &Arc<LiveAreas>,
    ) -> Result<(KVec<Image>, Arc<SharedStorage>)> {
        // Made empty first: without memory, the storage stays in `parts`.
        let storage = SharedStorage::new(Default::default())?;
        core::mem::swap(&mut *storage.lock(), &mut parts.storage);
        let areas = match Self::prepare(&parts.devices, &storage, events, live) {
            Ok(prepared) => prepared,
            Err(e) => {
                parts.storage = core::mem::take(&mut *storage.lock());
                return Err(e);
            }
        };

        // Freeze every device before switching any, so that the point in
        // time is the same for all of them.  `take` sorted the devices by
        // `Tracker::freeze_order`, so two takes never freeze in opposite
        // orders.  The devices thaw, in the same order, when `frozen` is
        // dropped: after the switch, and before the images exist.
        let mut result = Self::freeze_all(&areas).and_then(|frozen| {
            let switched = Self::switch_devices(&parts.devices, &areas);
            drop(frozen);
            switched
        });
        // Images only now: a reader who opens one the moment it appears, or
        // a partition scan, must not see the original before the switch.
        let mut images = KVec::new();
        if result.is_ok() {
            result = Self::create_images(&parts.devices, &areas, &mut images);
        }
        match result {
            Ok(()) => Ok((images, storage)),
            Err(e) => {
                Self::switch_off(&parts.devices, images);
                // The storage goes back to the snapshot for the next take:
                // nothing may store into it any more.
                drop(areas);
                live.wait_all_gone();
                parts.storage = core::mem::take(&mut *storage.lock());
                Err(e)
            }
        }
    }

    /// Ends copy-on-write: images first, see `destroy`.
    fn switch_off(devices: &[Arc<Tracker>], images: KVec<Image>) {
        for tracker in devices {
            if let Some(area) = tracker.diff_area() {
                area.retire();
            }
        }
        drop(images);
        for tracker in devices {
            tracker.stop_cow();
        }
    }

    /// Freezes the originals of `areas`, in order; on failure those already
    /// frozen thaw.
    fn freeze_all(areas: &[Arc<DiffArea>]) -> Result<KVec<Frozen<'_>>> {
        // Room first, so that no freeze is undone for want of memory.
        let mut frozen = KVec::with_capacity(areas.len(), GFP_KERNEL)?;
        for area in areas {
            // Room was reserved: the guard never comes back.
            frozen
                .push_within_capacity(area.original().freeze()?)
                .map_err(|_| ENOMEM)?;
        }
        Ok(frozen)
    }

    /// Switches the devices to copy-on-write with all their queues frozen:
    /// every write then lies wholly before the point in time or wholly after
    /// it, even one in flight on a device without a file system.
    fn switch_devices(devices: &[Arc<Tracker>], areas: &[Arc<DiffArea>]) -> Result {
        let mut queues = KVec::with_capacity(areas.len(), GFP_KERNEL)?;
        for area in areas {
            // Room was reserved: the guard never comes back.
            queues
                .push_within_capacity(area.original().freeze_queue())
                .map_err(|_| ENOMEM)?;
        }
        for (tracker, area) in devices.iter().zip(areas.iter()) {
            wait_dispatched(tracker, area.original().bdev());
        }
        let mut result = Ok(());
        for (tracker, area) in devices.iter().zip(areas.iter()) {
            if let Err(e) = tracker.start_cow(area.clone()) {
                result = Err(e);
                break;
            }
        }
        drop(queues);
        result
    }

    /// Creates the images of `devices`, switched to copy-on-write into
    /// `areas`.
    fn create_images(
        devices: &[Arc<Tracker>],
        areas: &[Arc<DiffArea>],
        images: &mut KVec<Image>,
    ) -> Result {
        images.reserve(devices.len(), GFP_KERNEL)?;
        for (tracker, area) in devices.iter().zip(areas.iter()) {
            images.push(image::create(tracker.clone(), area.clone())?, GFP_KERNEL)?;
        }
        Ok(())
    }

    /// Opens the originals and creates the difference areas.
    fn prepare(
        devices: &[Arc<Tracker>],
        storage: &Arc<SharedStorage>,
        events: &Arc<EventQueue>,
        live: &Arc<LiveAreas>,
    ) -> Result<KVec<Arc<DiffArea>>> {
        let mut areas = KVec::with_capacity(devices.len(), GFP_KERNEL)?;
        for tracker in devices {
            // Read only: the module never writes to an original, and a
            // mounted one refuses writers with bdev_allow_write_mounted=0.
            let original = OpenedBlockDevice::open_by_devt(tracker.devt(), Mode::Read, None)?;
            tracker.resize_if_needed(original.bdev().nr_sectors())?;
            let area = DiffArea::new(original, storage.clone(), events.clone(), live.enter())?;
            areas.push(area, GFP_KERNEL)?;
        }
        Ok(areas)
    }

    /// Releases the devices; they keep being tracked.  Images go first:
    /// deleting a disk waits for the bios being submitted to it, and every
    /// bio the images queued holds its difference area, so nothing is freed
    /// under a mounted image.
    fn destroy(&self) {
        self.events.close();
        let old = core::mem::replace(&mut *self.state.lock(), State::Destroyed);
        let (devices, held) = match old {
            State::Created(parts) => (parts.devices, parts.held),
            State::Taken(taken) => {
                Self::switch_off(&taken.devices, taken.images);
                (taken.devices, taken.held)
            }
            // The task taking it finishes the destruction.
            State::Taking | State::Destroyed => return,
        };
        self.release(&devices);
        // Only now: nothing stores into it any more, and no lock is held.
        drop(held);
    }

    /// Lets the devices go once the retired difference areas are gone: until
    /// then they may still release writes they held and store chunks, so no
    /// device may be in a new snapshot and no storage given to one before.
    fn release(&self, devices: &[Arc<Tracker>]) {
        self.areas.wait_all_gone();
        for tracker in devices {
            tracker.leave(self.id);
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

/// Waits, with the queue of `bdev` frozen, for the writes its driver took
/// in before the freeze.  The freeze waits for every bio of a blk-mq disk; a
/// bio-based driver (device mapper, md) holds the queue only while it takes
/// a bio in, so what it took may still be held in it (dm-crypt, dm-delay,
/// dm-thin count a bio in flight only once they send it down) or be on its
/// way below: the tracker counts the writes it let pass until they end.  At
/// most five seconds: a lower device frozen by the same take (a snapshot of
/// a device and of one under it) holds such writes until the thaw, and so
/// does this queue hold the rest of a write its driver split, which comes
/// back through it (the write then lies across the point in time, as a
/// write in flight at a crash may).
fn wait_dispatched(tracker: &Tracker, bdev: &BlockDevice) {
    let start = Instant::<Monotonic>::now();
    while start.elapsed() < Delta::from_millis(5000) {
        if tracker.writes_in_flight() == 0 && bdev.bios_in_flight() == 0 {
            return;
        }
        kernel::time::delay::fsleep(Delta::from_millis(1));
    }
    pr_warn!(
        "{}:{}: I/O still in flight below the device at the take\n",
        bdev.major(),
        bdev.minor()
    );
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

/// Gives snapshot `id` a whole device or a file as storage, or with `device`
/// `None` changes the limit of the storage given before; see `DiffStorage`.
pub(crate) fn set_storage(id: Uuid, device: Option<NewStorage>, limit: u64) -> Result {
    find(id)?.set_storage(device, limit)
}

/// Takes snapshot `id`.
pub(crate) fn take(id: Uuid) -> Result {
    find(id)?.take()
}

/// Waits up to `timeout_ms` for the next event of snapshot `id`.
pub(crate) fn wait_event(id: Uuid, timeout_ms: u32) -> Result<Event> {
    let events = find(id)?.events.clone();
    events.wait(timeout_ms)
}
