// SPDX-License-Identifier: GPL-2.0
//! The extents changed since a snapshot, from a change map: what a backup
//! program reads next.  A map byte holds the number of the first snapshot
//! that saw its block written (0: not written in this generation), so the
//! blocks changed after snapshot N are those whose byte is above N.

/// A byte range of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub offset: u64,
    pub length: u64,
}

/// Extents (in bytes) of the blocks whose map byte is greater than
/// `since`, adjacent blocks merged; the last block is cut at the device's
/// end, which need not be a whole block.
pub fn changed_extents(map: &[u8], since: u8, block_size: u32, capacity: u64) -> Vec<Extent> {
    let block = u64::from(block_size);
    let mut out: Vec<Extent> = Vec::new();
    for (i, _) in map.iter().enumerate().filter(|&(_, &g)| g > since) {
        let offset = i as u64 * block;
        if offset >= capacity {
            break;
        }
        let length = block.min(capacity - offset);
        match out.last_mut() {
            Some(last) if last.offset + last.length == offset => last.length += length,
            _ => out.push(Extent { offset, length }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_runs_and_skips_older_blocks() {
        // Blocks 1-2 changed after #2, block 3 before it, 5 after.
        let map = [0, 3, 3, 2, 0, 3];
        assert_eq!(
            changed_extents(&map, 2, 4096, 6 * 4096),
            [
                Extent {
                    offset: 4096,
                    length: 8192
                },
                Extent {
                    offset: 5 * 4096,
                    length: 4096
                }
            ]
        );
        assert_eq!(
            changed_extents(&map, 1, 4096, 6 * 4096),
            [
                Extent {
                    offset: 4096,
                    length: 3 * 4096
                },
                Extent {
                    offset: 5 * 4096,
                    length: 4096
                }
            ]
        );
        assert!(changed_extents(&map, 3, 4096, 6 * 4096).is_empty());
    }

    #[test]
    fn since_zero_is_every_written_block() {
        assert_eq!(changed_extents(&[1, 0, 1], 0, 512, 1536).len(), 2);
    }

    #[test]
    fn cuts_the_last_block_at_the_device_end() {
        assert_eq!(
            changed_extents(&[0, 1], 0, 4096, 4096 + 1024),
            [Extent {
                offset: 4096,
                length: 1024
            }]
        );
    }
}
