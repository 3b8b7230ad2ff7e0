// SPDX-License-Identifier: GPL-2.0
//! How the end of a wait for a snapshot event is shown: the event, or why
//! the wait ended without one.  Used by `snapshot_waitevent` and by
//! `stretch_snapshot`.

use crate::output::Record;
use blksnap::control::{EventKind, Wait};
use nix::errno::Errno;

/// An event, or why the wait ended without one.
pub fn wait_record(wait: &Wait) -> Record {
    match wait {
        Wait::Timeout => Record::new().str("result", "timeout"),
        Wait::Interrupted => Record::new().str("result", "interrupted"),
        Wait::Event(e) => {
            let r = Record::new().str("result", "ok").int("time", e.time_label);
            match e.kind {
                EventKind::LowFreeSpace { requested_sectors } => r
                    .str("event", "low_free_space")
                    .num("requested_nr_sect", requested_sectors),
                EventKind::NoSpace { requested_sectors } => r
                    .str("event", "no_space")
                    .num("requested_nr_sect", requested_sectors),
                EventKind::Corrupted {
                    major,
                    minor,
                    errno,
                } => r
                    .str("event", "corrupted")
                    .str("device", format!("{major}:{minor}"))
                    .int("err_code", errno)
                    .str("error", format!("{:?}", Errno::from_raw(errno))),
                EventKind::Unknown { code } => r.str("event", "unknown").num("code", code),
            }
        }
    }
}
