// SPDX-License-Identifier: GPL-2.0

//! The state of each chunk of the original in a taken snapshot.
//!
//! A chunk with no entry was never copied: the original still holds its
//! data as at the take.  From there a chunk goes one way:
//!
//! ```text
//!   (none) --start_load--> Loading --loaded--> InMemory --stored--> Stored
//!                             |                   |
//!                             +------- fail ------+----> Failed
//! ```
//!
//! - `Loading`: its old data is being read from the original.  The
//!   original still holds it, unchanged: writes to the chunk wait, parked
//!   on the chunk, and go on when it leaves this state.
//! - `InMemory`: its old data is in memory, on its way to its place in
//!   difference storage.  Writes to the chunk go straight on; image reads
//!   of it wait until it is stored.
//! - `Stored`: its old data is in difference storage: image reads go there.
//! - `Failed`: copying it failed, and with it the snapshot of the device.
//!
//! Each transition is a method of [`ChunkTable`] and takes the table's
//! lock (the xarray's spinlock).  Only the copy worker of the area adds
//! entries, so `start_load` cannot race with itself.  `loaded` also needs
//! image reads forwarded to the original paused (the [`Paused`] token):
//! once it returns, writes to the chunk go on, and no image read may still
//! be reading the chunk from the original.  A transition from any other
//! state changes nothing and fails with `EINVAL`.

use kernel::{
    block::{
        bio::{BioList, Filtered, FilteredBio},
        forward::Paused,
    },
    prelude::*,
    xarray::{AllocKind, Guard, XArray},
};

/// What waits on a loading chunk: the writes parked on it, in the order
/// they came.  Parking must not allocate: it happens under the table's
/// lock, a spinlock.
pub(crate) trait Waiters: Default {
    type Waiter;
    fn push(&mut self, waiter: Self::Waiter);
}

impl Waiters for BioList<Filtered> {
    type Waiter = FilteredBio;

    fn push(&mut self, write: FilteredBio) {
        BioList::push(self, write);
    }
}

/// Where one chunk stands; see the module documentation.  `L` is where a
/// copied chunk lives in difference storage, `W` what waits for its load.
pub(crate) enum Chunk<L, W = BioList<Filtered>> {
    /// With the writes that wait for the load.
    Loading(W),
    InMemory(L),
    Stored(L),
    Failed,
}

/// The states of all chunks of one device; a chunk with no entry was never
/// copied.
#[pin_data]
pub(crate) struct ChunkTable<L: 'static, W: Waiters + 'static = BioList<Filtered>> {
    #[pin]
    entries: XArray<KBox<Chunk<L, W>>>,
}

/// The table, locked: for looking at several chunks at one moment.
pub(crate) struct Locked<'a, L: 'static, W: 'static>(Guard<'a, KBox<Chunk<L, W>>>);

impl<L: 'static, W: Waiters + 'static> Locked<'_, L, W> {
    /// The state of chunk `chunk`; `None` if it was never copied.
    pub(crate) fn get(&self, chunk: usize) -> Option<&Chunk<L, W>> {
        self.0.get(chunk)
    }

    /// Whether writes to chunk `chunk` may go on: its old data is safe.
    pub(crate) fn is_copied(&self, chunk: usize) -> bool {
        matches!(self.get(chunk), Some(Chunk::InMemory(_) | Chunk::Stored(_)))
    }

    /// Whether the image reads chunk `chunk` from the original.
    pub(crate) fn is_on_original(&self, chunk: usize) -> bool {
        matches!(self.get(chunk), None | Some(Chunk::Loading(_)))
    }

    /// Whether chunk `chunk` is being loaded.
    pub(crate) fn is_loading(&self, chunk: usize) -> bool {
        matches!(self.get(chunk), Some(Chunk::Loading(_)))
    }

    /// Whether chunk `chunk` is on its way from the original to difference
    /// storage: loading or in memory.
    pub(crate) fn is_moving(&self, chunk: usize) -> bool {
        matches!(
            self.get(chunk),
            Some(Chunk::Loading(_) | Chunk::InMemory(_))
        )
    }

    /// Parks `write` on chunk `chunk` until the chunk is loaded, or gives
    /// it back if the chunk is not loading.
    pub(crate) fn park(&mut self, chunk: usize, write: W::Waiter) -> Result<(), W::Waiter> {
        match self.0.get_mut(chunk) {
            Some(Chunk::Loading(parked)) => {
                parked.push(write);
                Ok(())
            }
            _ => Err(write),
        }
    }

    /// Where chunk `chunk` lives in difference storage, once stored.
    pub(crate) fn stored_at(&self, chunk: usize) -> Option<&L> {
        match self.get(chunk) {
            Some(Chunk::Stored(at)) => Some(at),
            _ => None,
        }
    }

    /// Changes the state of chunk `chunk` with `change`, which returns the
    /// new state, or `None` if the transition is not allowed from there.
    /// Returns the old state.
    fn change(
        &mut self,
        chunk: usize,
        change: impl FnOnce(&mut Chunk<L, W>) -> Option<Chunk<L, W>>,
    ) -> Result<Chunk<L, W>> {
        let state = self.0.get_mut(chunk).ok_or(EINVAL)?;
        let new = change(state).ok_or(EINVAL)?;
        Ok(core::mem::replace(state, new))
    }
}

impl<L: 'static, W: Waiters + 'static> ChunkTable<L, W> {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Self {
            entries <- XArray::new(AllocKind::Alloc),
        })
    }

    pub(crate) fn lock(&self) -> Locked<'_, L, W> {
        Locked(self.entries.lock())
    }

    /// Never copied -> `Loading`.
    pub(crate) fn start_load(&self, chunk: usize) -> Result {
        let entry = KBox::new(Chunk::Loading(W::default()), GFP_NOIO)?;
        let mut locked = self.lock();
        if locked.get(chunk).is_some() {
            return Err(EINVAL);
        }
        // Only the copy worker adds entries: nothing else can store here
        // while `store` drops the lock to allocate.
        locked.0.store(chunk, entry, GFP_NOIO)?;
        Ok(())
    }

    /// `Loading` -> `InMemory`: the old data is read, and goes to `at`.
    /// Returns the writes parked on the chunk.
    pub(crate) fn loaded(&self, chunk: usize, at: L, _paused: &Paused<'_>) -> Result<W> {
        let mut at = Some(at);
        let old = self.lock().change(chunk, |state| match state {
            Chunk::Loading(_) => at.take().map(Chunk::InMemory),
            _ => None,
        })?;
        Ok(parked(old))
    }

    /// `InMemory` -> `Stored`: the old data is in difference storage.
    pub(crate) fn stored(&self, chunk: usize) -> Result {
        self.lock().change(chunk, |state| {
            match core::mem::replace(state, Chunk::Failed) {
                Chunk::InMemory(at) => Some(Chunk::Stored(at)),
                old => {
                    *state = old;
                    None
                }
            }
        })?;
        Ok(())
    }

    /// `Loading` or `InMemory` -> `Failed`: the copy did not make it.
    /// Returns the writes that were parked on the chunk.
    pub(crate) fn fail(&self, chunk: usize) -> Result<W> {
        let old = self.lock().change(chunk, |state| match state {
            Chunk::Loading(_) | Chunk::InMemory(_) => Some(Chunk::Failed),
            _ => None,
        })?;
        Ok(parked(old))
    }
}

/// The writes parked on a chunk that was in state `old`.
fn parked<L, W: Waiters>(old: Chunk<L, W>) -> W {
    match old {
        Chunk::Loading(parked) => parked,
        _ => W::default(),
    }
}

#[kunit_tests(blksnap_chunks)]
mod tests {
    use super::*;
    use kernel::block::forward::Forwarder;

    #[test]
    fn a_chunk_goes_one_way() -> Result {
        let table = KBox::pin_init(ChunkTable::<u64>::new(), GFP_KERNEL)?;
        let reads = KBox::pin_init(Forwarder::new(()), GFP_KERNEL)?;
        assert!(table.lock().is_on_original(3));
        table.start_load(3)?;
        assert!(table.lock().is_on_original(3));
        assert!(!table.lock().is_copied(3));
        assert!(table.lock().is_loading(3) && table.lock().is_moving(3));
        table.loaded(3, 4096, &reads.pause())?;
        assert!(table.lock().is_copied(3));
        assert!(matches!(table.lock().get(3), Some(Chunk::InMemory(_))));
        assert!(!table.lock().is_loading(3) && table.lock().is_moving(3));
        assert!(table.lock().stored_at(3).is_none());
        table.stored(3)?;
        assert_eq!(table.lock().stored_at(3), Some(&4096));
        assert!(matches!(table.lock().get(3), Some(Chunk::Stored(_))));
        assert!(!table.lock().is_moving(3));
        // Its neighbours are untouched.
        assert!(table.lock().get(2).is_none() && table.lock().get(4).is_none());
        Ok(())
    }

    #[test]
    fn illegal_transitions_change_nothing() -> Result {
        let table = KBox::pin_init(ChunkTable::<u64>::new(), GFP_KERNEL)?;
        let reads = KBox::pin_init(Forwarder::new(()), GFP_KERNEL)?;
        // Nothing but a load starts from a chunk never copied.
        assert_eq!(table.loaded(0, 8, &reads.pause()).err(), Some(EINVAL));
        assert_eq!(table.stored(0), Err(EINVAL));
        assert_eq!(table.fail(0).err(), Some(EINVAL));
        assert!(table.lock().get(0).is_none());
        // A chunk is loaded once, and stored only from memory.
        table.start_load(0)?;
        assert_eq!(table.start_load(0), Err(EINVAL));
        assert_eq!(table.stored(0), Err(EINVAL));
        assert!(matches!(table.lock().get(0), Some(Chunk::Loading(_))));
        table.loaded(0, 8, &reads.pause())?;
        assert_eq!(table.loaded(0, 16, &reads.pause()).err(), Some(EINVAL));
        table.stored(0)?;
        // A stored chunk stays where it is.
        assert_eq!(table.stored(0), Err(EINVAL));
        assert_eq!(table.fail(0).err(), Some(EINVAL));
        assert_eq!(table.start_load(0), Err(EINVAL));
        assert_eq!(table.lock().stored_at(0), Some(&8));
        Ok(())
    }

    #[test]
    fn failed_copies_end_in_failed() -> Result {
        let table = KBox::pin_init(ChunkTable::<u64>::new(), GFP_KERNEL)?;
        let reads = KBox::pin_init(Forwarder::new(()), GFP_KERNEL)?;
        table.start_load(1)?;
        table.fail(1)?;
        table.start_load(2)?;
        table.loaded(2, 0, &reads.pause())?;
        table.fail(2)?;
        for chunk in [1, 2] {
            let locked = table.lock();
            assert!(matches!(locked.get(chunk), Some(Chunk::Failed)));
            assert!(!locked.is_copied(chunk) && !locked.is_on_original(chunk));
        }
        assert_eq!(table.fail(1).err(), Some(EINVAL));
        assert_eq!(table.loaded(1, 0, &reads.pause()).err(), Some(EINVAL));
        // A failed chunk is never loaded again.
        assert_eq!(table.start_load(1), Err(EINVAL));
        assert_eq!(table.start_load(2), Err(EINVAL));
        Ok(())
    }

    /// Stands for the writes parked on a chunk: their numbers, in order.
    struct Writes(KVec<u32>);

    impl Default for Writes {
        /// Made before the table's lock is taken, with room for the test's
        /// writes: parking must not allocate.  Without the room, the
        /// writes are lost and the test fails.
        fn default() -> Self {
            Self(KVec::with_capacity(4, GFP_KERNEL).unwrap_or_default())
        }
    }

    impl Waiters for Writes {
        type Waiter = u32;

        fn push(&mut self, write: u32) {
            let _ = self.0.push_within_capacity(write);
        }
    }

    #[test]
    fn writes_park_only_on_a_loading_chunk() -> Result {
        let table = KBox::pin_init(ChunkTable::<u64, Writes>::new(), GFP_KERNEL)?;
        let reads = KBox::pin_init(Forwarder::new(()), GFP_KERNEL)?;
        // Never copied: the write is given back.
        assert_eq!(table.lock().park(0, 1), Err(1));
        table.start_load(0)?;
        table.start_load(1)?;
        for write in [1, 2, 3] {
            assert_eq!(table.lock().park(0, write), Ok(()));
        }
        assert_eq!(table.lock().park(1, 9), Ok(()));
        // The load hands back the writes of its chunk, oldest first.
        let parked = table.loaded(0, 64, &reads.pause())?;
        assert_eq!(&parked.0[..], &[1, 2, 3]);
        // In memory, stored or failed: the write goes straight on.
        assert_eq!(table.lock().park(0, 4), Err(4));
        // A failed load hands back its writes too.
        assert_eq!(&table.fail(1)?.0[..], &[9]);
        assert_eq!(table.lock().park(1, 5), Err(5));
        table.stored(0)?;
        assert_eq!(table.lock().park(0, 6), Err(6));
        Ok(())
    }
}
