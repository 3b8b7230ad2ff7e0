// SPDX-License-Identifier: GPL-2.0
//! Safe access to the blksnap user interface (`include/uapi/linux/blksnap.h`
//! and `include/uapi/linux/blk-filter.h`): change tracking and point-in-time
//! snapshots of block devices.  The `blksnap` command-line tool is built on it.
//!
//! [`Device`] carries the commands sent through a block device's filter,
//! [`Control`] those of `/dev/blksnap-control`.

pub mod changed;
pub mod control;
pub mod device;
pub mod error;
pub mod fiemap;
pub mod ioctl_number;
pub mod sectors;
mod sys;
pub mod uapi;
pub mod uuid;

pub use control::{Control, Event};
pub use device::{CbtInfo, Device, SnapshotInfo};
pub use error::{Error, Result};
pub use uuid::Uuid;

/// Bytes in a sector, the unit of every range the interface takes.
pub const SECTOR_SIZE: u64 = 512;
