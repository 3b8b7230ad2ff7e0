// SPDX-License-Identifier: GPL-2.0
//! Each subcommand: the library call it makes and the record it prints.

use crate::cli::{CbtCommand, Command, RangeSource};
use crate::events::wait_record;
use crate::output::{Printer, Record};
use crate::stretch;
use blksnap::changed::changed_extents;
use blksnap::fiemap::file_extents;
use blksnap::sectors::total;
use blksnap::uapi::blksnap_sectors;
use blksnap::{Control, Device, Error, Result, SECTOR_SIZE};
use nix::errno::Errno;
use std::path::{Path, PathBuf};

/// The device and ranges named on the command line, or those of a file.
fn resolve_ranges(command: &str, source: &RangeSource) -> Result<(PathBuf, Vec<blksnap_sectors>)> {
    match (&source.file, &source.device) {
        (Some(file), _) => {
            let extents = file_extents(command, file)?;
            Ok((extents.device, extents.ranges))
        }
        (None, Some(device)) => Ok((device.clone(), source.ranges.clone())),
        // The argument parser requires one of the two.
        (None, None) => Err(Error::invalid(command, "-", "no --device or --file")),
    }
}

fn ranges_record(device: &Path, ranges: &[blksnap_sectors]) -> Record {
    let items = ranges
        .iter()
        .map(|r| Record::new().num("offset", r.offset).num("count", r.count));
    Record::new()
        .str("device", device.display())
        .num("sectors", total(ranges))
        .list("ranges", items.collect())
}

pub fn run(command: &Command, out: &Printer) -> Result<()> {
    match command {
        Command::Version => {
            let v = Control::open("version")?.version()?;
            out.record(
                &Record::new()
                    .str(
                        "version",
                        format!("{}.{}.{}.{}", v.major, v.minor, v.revision, v.build),
                    )
                    .num("major", v.major)
                    .num("minor", v.minor)
                    .num("revision", v.revision)
                    .num("build", v.build),
            );
        }
        Command::Attach(d) => Device::open("attach", &d.device)?.attach()?,
        Command::Detach(d) => Device::open("detach", &d.device)?.detach()?,
        Command::CbtInfo(d) => {
            let info = Device::open("cbtinfo", &d.device)?.cbtinfo()?;
            out.record(
                &Record::new()
                    .num("block_size", info.block_size)
                    .num("device_capacity", info.device_capacity)
                    .num("block_count", info.block_count)
                    .str("generation_id", info.generation_id)
                    .num("changes_number", info.changes_number),
            );
        }
        Command::ReadCbtMap { device, file } => {
            let (info, map) = Device::open("readcbtmap", &device.device)?.read_cbtmap()?;
            std::fs::write(file, &map).map_err(|e| Error::io("readcbtmap", file.display(), &e))?;
            out.record(
                &Record::new()
                    .str("file", file.display())
                    .num("block_count", info.block_count)
                    .num("block_size", info.block_size)
                    .str("generation_id", info.generation_id)
                    .num("changes_number", info.changes_number),
            );
        }
        Command::MarkDirtyBlock(source) => {
            let (device, ranges) = resolve_ranges("markdirtyblock", source)?;
            Device::open("markdirtyblock", &device)?.mark_dirty(&ranges)?;
            out.record(&ranges_record(&device, &ranges));
        }
        Command::SnapshotCreate { device } => {
            // Open the devices first: a typo should not leave a snapshot.
            let devices = device
                .iter()
                .map(|d| Device::open("snapshot_create", d))
                .collect::<Result<Vec<_>>>()?;
            let ctl = Control::open("snapshot_create")?;
            let id = ctl.create()?;
            for d in &devices {
                if let Err(e) = d.snapshot_add(&id) {
                    // Leave nothing half made behind.
                    let _ = ctl.destroy(&id);
                    return Err(e);
                }
            }
            // The bare identifier, as the long-standing tool prints it:
            // scripts do `id=$(blksnap snapshot_create -d ...)`.
            if out.json {
                out.record(&Record::new().str("id", id));
            } else {
                println!("{id}");
            }
        }
        Command::SnapshotAdd { id, device } => {
            Device::open("snapshot_add", &device.device)?.snapshot_add(&id.id)?
        }
        Command::SnapshotDestroy(id) => Control::open("snapshot_destroy")?.destroy(&id.id)?,
        Command::SnapshotAppendStorage { id, source } => {
            const CMD: &str = "snapshot_appendstorage";
            let (device, ranges) = resolve_ranges(CMD, source)?;
            Control::open(CMD)?.append_storage(&id.id, &device, &ranges)?;
            out.record(&ranges_record(&device, &ranges));
        }
        Command::SnapshotSetStorage { id, path, limit } => {
            Control::open("snapshot_setstorage")?.set_storage(&id.id, path.as_deref(), *limit)?
        }
        Command::SnapshotTake(id) => Control::open("snapshot_take")?.take(&id.id)?,
        Command::SnapshotInfo(d) => {
            let info = Device::open("snapshot_info", &d.device)?.snapshot_info()?;
            let image = if info.image.is_empty() {
                String::new()
            } else {
                format!("/dev/{}", info.image)
            };
            let mut r = Record::new().int("error_code", info.error_code);
            if info.error_code < 0 {
                r = r.str("error", format!("{:?}", Errno::from_raw(-info.error_code)));
            }
            out.record(&r.str("image", image));
        }
        Command::SnapshotWaitEvent { id, timeout } => {
            let wait = Control::open("snapshot_waitevent")?.wait_event(&id.id, *timeout)?;
            out.record(&wait_record(&wait));
        }
        Command::SnapshotCollect => {
            let ids = Control::open("snapshot_collect")?.collect()?;
            let items = ids.iter().map(|id| Record::new().str("id", id)).collect();
            out.record(&Record::new().list("snapshots", items));
        }
        Command::StretchSnapshot(args) => stretch::run(args, out)?,
        Command::Cbt(CbtCommand::Changed {
            device,
            since,
            generation,
            sectors,
        }) => {
            out.record(&changed(
                &device.device,
                *since,
                generation.as_ref(),
                *sectors,
            )?);
        }
    }
    Ok(())
}

fn changed(
    device: &Path,
    since: u8,
    generation: Option<&blksnap::Uuid>,
    sectors: bool,
) -> Result<Record> {
    const CMD: &str = "cbt changed";
    let dev = Device::open(CMD, device)?;
    let (info, map) = dev.read_cbtmap()?;
    let what = device.display();
    if let Some(g) = generation {
        if *g != info.generation_id {
            return Err(Error::invalid(
                CMD,
                what,
                format!(
                    "the tracker started over (generation {} now, not {g}): every block may have changed",
                    info.generation_id
                ),
            ));
        }
    }
    if since > info.changes_number {
        return Err(Error::invalid(
            CMD,
            what,
            format!(
                "no snapshot number {since} yet (the last is {})",
                info.changes_number
            ),
        ));
    }
    let unit = if sectors { SECTOR_SIZE } else { 1 };
    let extents = changed_extents(&map, since, info.block_size, info.device_capacity)
        .iter()
        .map(|e| {
            Record::new()
                .num("offset", e.offset / unit)
                .num("length", e.length / unit)
        })
        .collect();
    Ok(Record::new()
        .str("unit", if sectors { "sectors" } else { "bytes" })
        .num("since", since)
        .num("changes_number", info.changes_number)
        .str("generation_id", info.generation_id)
        .num("block_size", info.block_size)
        .list("extents", extents))
}
