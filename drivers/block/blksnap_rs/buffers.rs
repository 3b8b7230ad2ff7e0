// SPDX-License-Identifier: GPL-2.0

//! Chunk buffers kept for reuse, so that copying a chunk does not allocate
//! its pages each time, and can go on when memory is short: a pool starts
//! with one buffer, keeps up to `free_diff_buffer_pool_size` of those that
//! come back from the store worker, and frees the rest.

use crate::params;
use kernel::{page::Page, prelude::*};

/// The free buffers of one difference area, each `pages` pages: a chunk.
pub(crate) struct BufferPool {
    free: KVec<KVec<Page>>,
    pages: usize,
}

impl BufferPool {
    /// A pool of `pages`-page buffers holding one already.
    pub(crate) fn new(pages: usize) -> Result<Self> {
        let mut free = KVec::with_capacity(1, GFP_KERNEL)?;
        free.push(alloc(pages, GFP_KERNEL)?, GFP_KERNEL)?;
        Ok(Self { free, pages })
    }

    pub(crate) fn take(&mut self) -> Option<KVec<Page>> {
        self.free.pop()
    }

    /// Keeps `buffer` if the pool has room for it; frees it otherwise.
    pub(crate) fn give(&mut self, buffer: KVec<Page>) {
        let limit = (params::free_diff_buffer_pool_size() as usize).max(1);
        if buffer.len() == self.pages && self.free.len() < limit {
            // Without memory for the list the buffer is freed: a smaller pool.
            let _ = self.free.push(buffer, GFP_NOIO);
        }
    }

    pub(crate) fn pages(&self) -> usize {
        self.pages
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.free.is_empty()
    }
}

/// A new buffer of `pages` pages.
pub(crate) fn alloc(pages: usize, flags: kernel::alloc::Flags) -> Result<KVec<Page>> {
    let mut buffer = KVec::with_capacity(pages, flags)?;
    for _ in 0..pages {
        buffer.push(Page::alloc_page(flags)?, flags)?;
    }
    Ok(buffer)
}
