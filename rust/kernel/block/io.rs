// SPDX-License-Identifier: GPL-2.0

//! A driver's own I/O with bios: a pool of bios, and I/O made from it that
//! skips the device's filter once, so that a filter's own I/O does not come
//! back to it.
//!
//! - [`transfer_pages`] reads or writes pages and waits;
//! - [`batch::Batch`] sends stretches of bios at once and returns when all
//!   ended, each part with its tag and its own result;
//! - [`page_io`] sends I/O of pages that an object owns without waiting, and
//!   hands the object back when it ended.
//!
//! C header: [`include/linux/bio.h`](srctree/include/linux/bio.h)

pub mod batch;
pub mod page_io;
mod set;

pub use set::{transfer_pages, BioSet, PageIo};
