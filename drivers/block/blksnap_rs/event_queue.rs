// SPDX-License-Identifier: GPL-2.0

//! The events of a snapshot, waited for with IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT.

use crate::abi::{EventCorrupted, EventLowFreeSpace, EventNoSpace};
use kernel::{
    new_condvar, new_mutex,
    prelude::*,
    sync::{Arc, CondVar, CondVarTimeoutResult, Mutex},
    time::{msecs_to_jiffies, ClockSource, Monotonic},
    transmute::AsBytes,
    uapi,
};

/// Bytes of event data we ever send; the ABI allows up to 4064.
pub(crate) const DATA_MAX: usize = 16;

pub(crate) struct Event {
    pub(crate) code: u32,
    /// When it was queued: `ktime_get()`, nanoseconds of the monotonic
    /// clock, as in v3.
    pub(crate) time: i64,
    pub(crate) data: [u8; DATA_MAX],
}

struct Queue {
    events: KVec<Event>,
    /// Set when the snapshot is destroyed: waiters give up.
    closed: bool,
}

#[pin_data]
pub(crate) struct EventQueue {
    #[pin]
    queue: Mutex<Queue>,
    #[pin]
    cond: CondVar,
}

impl EventQueue {
    pub(crate) fn new() -> Result<Arc<Self>> {
        Arc::pin_init(
            try_pin_init!(Self {
                queue <- new_mutex!(Queue { events: KVec::new(), closed: false }, "blksnap_events"),
                cond <- new_condvar!("blksnap_events_cond"),
            }),
            GFP_KERNEL,
        )
    }

    /// Queues an event.  Losing one to a failed allocation is better than
    /// failing the I/O that caused it.
    pub(crate) fn push(&self, code: u32, data: &[u8]) {
        let mut event = Event {
            code,
            time: Monotonic::ktime_get(),
            data: [0; DATA_MAX],
        };
        let n = data.len().min(DATA_MAX);
        event.data[..n].copy_from_slice(&data[..n]);
        let mut q = self.queue.lock();
        if q.events.push(event, GFP_NOIO).is_ok() {
            self.cond.notify_all();
        }
    }

    pub(crate) fn low_free_space(&self, sectors: u64) {
        let data = EventLowFreeSpace(uapi::blksnap_event_low_free_space {
            requested_nr_sect: sectors,
        });
        self.push(
            uapi::blksnap_event_codes_blksnap_event_code_low_free_space,
            data.as_bytes(),
        );
    }

    /// Asks for `sectors` more storage within the limit of storage the module
    /// opened itself (`SET_STORAGE`).
    pub(crate) fn no_space(&self, sectors: u64) {
        let data = EventNoSpace(uapi::blksnap_event_no_space {
            requested_nr_sect: sectors,
        });
        self.push(
            uapi::blksnap_event_codes_blksnap_event_code_no_space,
            data.as_bytes(),
        );
    }

    /// Reports a broken snapshot of device `major:minor`.  The event carries
    /// the errno as a positive number, as in v3 (`snapshotinfo` keeps it
    /// negative).
    pub(crate) fn corrupted(&self, major: u32, minor: u32, err: Error) {
        let data = EventCorrupted(uapi::blksnap_event_corrupted {
            dev_id_mj: major,
            dev_id_mn: minor,
            err_code: -err.to_errno(),
        });
        self.push(
            uapi::blksnap_event_codes_blksnap_event_code_corrupted,
            data.as_bytes(),
        );
    }

    /// Wakes and turns away all waiters, for good.
    pub(crate) fn close(&self) {
        self.queue.lock().closed = true;
        self.cond.notify_all();
    }

    /// Takes the oldest event, waiting up to `timeout_ms` for one: `ENOENT`
    /// on timeout, `EINTR` on a signal, `ESRCH` if the snapshot goes away.
    pub(crate) fn wait(&self, timeout_ms: u32) -> Result<Event> {
        let mut left = msecs_to_jiffies(timeout_ms);
        let mut q = self.queue.lock();
        loop {
            if !q.events.is_empty() {
                return q.events.remove(0).map_err(|_| EINVAL);
            }
            if q.closed {
                return Err(ESRCH);
            }
            if left == 0 {
                return Err(ENOENT);
            }
            match self.cond.wait_interruptible_timeout(&mut q, left) {
                CondVarTimeoutResult::Timeout => left = 0,
                CondVarTimeoutResult::Woken { jiffies } => left = jiffies,
                CondVarTimeoutResult::Signal { .. } => return Err(EINTR),
            }
        }
    }
}
