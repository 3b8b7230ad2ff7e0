// SPDX-License-Identifier: GPL-2.0

//! The `blksnap` block device filter: what the block layer calls on a
//! device blksnap is attached to.  Each call goes to the device's tracker,
//! and commands to `blkfilter_ctl`.

use crate::tracker::Tracker;
use kernel::{
    block::{bdev::BlockDevice, bio::FilteredBio, filter},
    prelude::*,
    sync::Arc,
    uaccess::UserPtr,
};

/// The `blksnap` block device filter.
pub(crate) struct TrackerFilter;

#[vtable]
impl filter::Operations for TrackerFilter {
    type Attachment = Arc<Tracker>;

    fn attach(bdev: &BlockDevice) -> Result<Arc<Tracker>> {
        // An image is the module's own device: its writes are tracked on
        // the original, and copying them would store into itself.
        if crate::claims::is_image(bdev.diskseq()) {
            return Err(EINVAL);
        }
        let tracker = Tracker::new(bdev)?;
        // Not on a device given whole as storage: storing skips the filter.
        crate::claims::add_filtered(tracker.sectors())?;
        let (major, minor) = tracker.numbers();
        pr_debug!("tracking {}:{}\n", major, minor);
        Ok(tracker)
    }

    fn detach(tracker: Arc<Tracker>) {
        crate::claims::remove_filtered(&tracker.sectors());
        tracker.detach();
    }

    fn ctl(tracker: &Arc<Tracker>, cmd: u32, buf: UserPtr, len: u32) -> Result<i32> {
        crate::blkfilter_ctl::execute(tracker, cmd, buf, len)
    }

    fn submit_bio(tracker: &Arc<Tracker>, bio: FilteredBio) -> Option<FilteredBio> {
        tracker.submit_bio(bio)
    }
}
