// SPDX-License-Identifier: GPL-2.0

//! The change map of a tracked device: one byte per tracking block, holding
//! the number of the last snapshot after which the block was written.

use kernel::{alloc::VVec, prelude::*, uuid::Uuid};

/// log2 of the largest tracking block, whatever the parameters say: its size
/// must fit the 32-bit `block_size` of `struct blksnap_cbtinfo`.
pub(crate) const MAX_BLOCK_SHIFT: u32 = 31;

/// Geometry of a change map: how many sectors one byte covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// Size of the device in sectors.
    pub(crate) capacity: u64,
    /// log2 of the tracking block size in bytes.
    pub(crate) block_shift: u32,
    /// Number of tracking blocks (map bytes).
    pub(crate) block_count: u32,
}

impl Geometry {
    /// Picks the smallest block size from `min_shift` up to `max_shift` that
    /// keeps the map within `max_count` bytes; at `max_shift` the count may
    /// exceed `max_count`.
    pub(crate) fn for_capacity(
        capacity: u64,
        min_shift: u32,
        max_shift: u32,
        max_count: u64,
    ) -> Result<Self> {
        // `blksnap_cbtinfo.block_size` is a `__u32`: 2 GiB blocks at most.
        let max_shift = max_shift.clamp(kernel::block::SECTOR_SHIFT, MAX_BLOCK_SHIFT);
        let mut shift = min_shift.clamp(kernel::block::SECTOR_SHIFT, max_shift);
        let count = |shift: u32| capacity.div_ceil(1u64 << (shift - kernel::block::SECTOR_SHIFT));
        while count(shift) > max_count && shift < max_shift {
            shift += 1;
        }
        Ok(Self {
            capacity,
            block_shift: shift,
            block_count: u32::try_from(count(shift)).map_err(|_| EFBIG)?,
        })
    }

    /// Returns the range of map bytes covering `count` sectors from `sector`,
    /// or `EINVAL` if the range is empty or ends beyond the device.
    pub(crate) fn blocks(&self, sector: u64, count: u64) -> Result<core::ops::Range<usize>> {
        let end = sector.checked_add(count).ok_or(EINVAL)?;
        if count == 0 || end > self.capacity {
            return Err(EINVAL);
        }
        let shift = self.block_shift - kernel::block::SECTOR_SHIFT;
        // Both fit: they are below `block_count`, a `u32`.
        Ok((sector >> shift) as usize..((end - 1) >> shift) as usize + 1)
    }

    /// Like [`Geometry::blocks`], but clips I/O that ends beyond the device
    /// (the block layer fails it anyway) instead of refusing it.
    pub(crate) fn blocks_clipped(&self, sector: u64, count: u64) -> core::ops::Range<usize> {
        let end = sector.saturating_add(count).min(self.capacity);
        if end <= sector {
            return 0..0;
        }
        let shift = self.block_shift - kernel::block::SECTOR_SHIFT;
        (sector >> shift) as usize..((end - 1) >> shift) as usize + 1
    }
}

/// Raises each byte in `range` of `map` to at least `number`.
fn mark(map: &mut [u8], range: core::ops::Range<usize>, number: u8) {
    for byte in &mut map[range] {
        if *byte < number {
            *byte = number;
        }
    }
}

/// The map written by I/O as it happens.
pub(crate) struct ActiveMap {
    pub(crate) geometry: Geometry,
    /// Written into the map for every change: one more than the number of
    /// the last snapshot taken.
    pub(crate) number: u8,
    pub(crate) generation: Uuid,
    map: VVec<u8>,
}

impl ActiveMap {
    pub(crate) fn new(geometry: Geometry) -> Result<Self> {
        let mut map = VVec::with_capacity(geometry.block_count as usize, GFP_KERNEL)?;
        map.resize(geometry.block_count as usize, 0, GFP_KERNEL)?;
        Ok(Self {
            geometry,
            number: 1,
            generation: Uuid::new_random(),
            map,
        })
    }

    /// Marks blocks written by I/O.
    pub(crate) fn mark_io(&mut self, sector: u64, count: u64) {
        let range = self.geometry.blocks_clipped(sector, count);
        mark(&mut self.map, range, self.number);
    }

    /// Marks map bytes `range`, which came from this map's geometry.
    pub(crate) fn mark_blocks(&mut self, range: core::ops::Range<usize>) {
        mark(&mut self.map, range, self.number);
    }
}

impl ActiveMap {
    /// Takes a snapshot of the map: `read` becomes a copy of it, numbered
    /// with the current change number, and later changes get the next one.
    ///
    /// Once number 255 has been handed to a snapshot the numbers are used
    /// up: the active map starts over, empty, in a new generation.  The
    /// snapshot just taken still reports the old generation, so it can be
    /// compared with earlier ones; the next one cannot.
    pub(crate) fn switch_into(&mut self, read: &mut ReadMap) {
        read.map.copy_from_slice(&self.map);
        read.number = self.number;
        read.generation = self.generation;
        if self.number == u8::MAX {
            self.map.fill(0);
            self.generation = Uuid::new_random();
            self.number = 1;
        } else {
            self.number += 1;
        }
    }
}

/// Which read map user space sees: the generation of the change maps, and
/// the number of the last snapshot taken in it.  A map read in pieces is
/// one map only if its version stays the same.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct MapVersion {
    pub(crate) number: u8,
    pub(crate) generation: Uuid,
}

/// The map as it was when the last snapshot was taken, for user space.
pub(crate) struct ReadMap {
    /// Number of the last snapshot taken in this generation (0: none).
    pub(crate) number: u8,
    pub(crate) generation: Uuid,
    pub(crate) map: VVec<u8>,
}

impl ReadMap {
    pub(crate) fn version(&self) -> MapVersion {
        MapVersion {
            number: self.number,
            generation: self.generation,
        }
    }

    pub(crate) fn new(active: &ActiveMap) -> Result<Self> {
        let mut map = VVec::with_capacity(active.map.len(), GFP_KERNEL)?;
        map.resize(active.map.len(), 0, GFP_KERNEL)?;
        Ok(Self {
            number: 0,
            generation: active.generation,
            map,
        })
    }

    /// Marks map bytes `range` with the number of the last snapshot taken.
    pub(crate) fn mark_blocks(&mut self, range: core::ops::Range<usize>) {
        // Nothing was taken yet: there is no snapshot number to record.
        if self.number != 0 {
            mark(&mut self.map, range, self.number);
        }
    }
}

#[kunit_tests(blksnap_cbt_map)]
mod tests {
    use super::*;

    #[test]
    fn geometry_grows_block_size_for_large_devices() -> Result {
        // 1 TiB with 64 KiB minimum blocks and at most 2 Mi blocks: 512 KiB.
        let g = Geometry::for_capacity(1 << 31, 16, 26, 2 << 20)?;
        assert_eq!(g.block_shift, 19);
        assert_eq!(g.block_count, 2 << 20);
        // A small device keeps the minimum; a partial block counts.
        let g = Geometry::for_capacity(129, 16, 26, 2 << 20)?;
        assert_eq!((g.block_shift, g.block_count), (16, 2));
        // The maximum shift wins over the maximum count.
        let g = Geometry::for_capacity(1 << 40, 16, 26, 16)?;
        assert_eq!(g.block_shift, 26);
        // Never beyond what `blksnap_cbtinfo.block_size` can hold.
        let g = Geometry::for_capacity(1 << 15, 32, 40, 16)?;
        assert_eq!((g.block_shift, g.block_count), (MAX_BLOCK_SHIFT, 1));
        Ok(())
    }

    #[test]
    fn ranges_are_checked() -> Result {
        let g = Geometry::for_capacity(1024, 16, 26, 1 << 20)?;
        assert_eq!(g.blocks(0, 1)?, 0..1);
        assert_eq!(g.blocks(127, 2)?, 0..2);
        assert_eq!(g.blocks(1023, 1)?, 7..8);
        assert!(g.blocks(0, 0).is_err());
        assert!(g.blocks(1023, 2).is_err());
        assert!(g.blocks(u64::MAX, 2).is_err());
        assert_eq!(g.blocks_clipped(1000, 100), 7..8);
        assert_eq!(g.blocks_clipped(2000, 8), 0..0);
        Ok(())
    }

    #[test]
    fn switch_numbers_and_generations() -> Result {
        let mut a = ActiveMap::new(Geometry::for_capacity(1024, 16, 26, 1 << 20)?)?;
        let mut r = ReadMap::new(&a)?;
        let first = a.generation;
        a.mark_io(0, 1);
        a.switch_into(&mut r);
        assert_eq!((r.number, r.map[0], r.map[1]), (1, 1, 0));
        assert!(r.generation == first);
        a.mark_io(128, 1);
        a.switch_into(&mut r);
        assert_eq!((r.number, r.map[0], r.map[1]), (2, 1, 2));

        // Up to the 255th snapshot the generation stays...
        for _ in 3..=255 {
            a.switch_into(&mut r);
        }
        assert_eq!(r.number, 255);
        assert!(r.generation == first);
        assert_eq!(r.map[1], 2);
        // ...and the map starts over after it.
        assert!(a.generation != first);
        assert_eq!((a.number, a.map[0], a.map[1]), (1, 0, 0));
        a.switch_into(&mut r);
        assert_eq!((r.number, r.map[1]), (1, 0));
        assert!(r.generation != first);
        Ok(())
    }

    #[test]
    fn marking_keeps_the_highest_number() -> Result {
        let mut a = ActiveMap::new(Geometry::for_capacity(1024, 16, 26, 1 << 20)?)?;
        a.number = 3;
        a.mark_io(128, 8);
        a.number = 2;
        a.mark_io(128, 256);
        assert_eq!(&a.map[..4], &[0, 3, 2, 0]);
        Ok(())
    }
}
