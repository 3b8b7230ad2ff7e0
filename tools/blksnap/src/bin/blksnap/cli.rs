// SPDX-License-Identifier: GPL-2.0
//! The command line.  Subcommand and option names are those of the
//! long-standing blksnap tool (`blksnap snapshot_create -d /dev/sda1`, ...),
//! so that scripts written for it keep working; `cbt changed` is new.

use blksnap::sectors::parse_range;
use blksnap::uapi::blksnap_sectors;
use blksnap::Uuid;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "blksnap",
    version,
    about = "Snapshots and change tracking of block devices"
)]
pub struct Cli {
    /// Print JSON instead of key=value lines.
    #[arg(short = 'j', long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug)]
pub struct DeviceArg {
    /// Block device.
    #[arg(short, long)]
    pub device: PathBuf,
}

#[derive(Args, Debug)]
pub struct IdArg {
    /// Snapshot identifier (UUID).
    #[arg(short, long)]
    pub id: Uuid,
}

/// Sector ranges of a device, or a file whose extents give them.
#[derive(Args, Debug)]
pub struct RangeSource {
    /// Block device the ranges are on.
    #[arg(short, long, requires = "ranges", conflicts_with = "file")]
    pub device: Option<PathBuf>,

    /// Sector ranges, SECTOR:COUNT (512-byte sectors), one or more.
    #[arg(short = 'r', long = "range", visible_alias = "ranges", num_args = 1..,
          value_parser = parse_range, requires = "device")]
    pub ranges: Vec<blksnap_sectors>,

    /// A file whose extents give the device and the ranges (FIEMAP).
    #[arg(short, long, required_unless_present = "device")]
    pub file: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Print the version of the blksnap module's interface.
    #[command(name = "version")]
    Version,
    /// Attach the blksnap filter to a device: start change tracking.
    #[command(name = "attach")]
    Attach(DeviceArg),
    /// Detach the filter from a device: stop change tracking.
    #[command(name = "detach")]
    Detach(DeviceArg),
    /// Print the change tracker's facts.
    #[command(name = "cbtinfo")]
    CbtInfo(DeviceArg),
    /// Save the change map of the last snapshot to a file.
    #[command(name = "readcbtmap")]
    ReadCbtMap {
        #[command(flatten)]
        device: DeviceArg,
        /// File to write the map to (one byte per tracking block).
        #[arg(short, long)]
        file: PathBuf,
    },
    /// Mark sector ranges as changed.
    #[command(name = "markdirtyblock")]
    MarkDirtyBlock(RangeSource),
    /// Create a snapshot, add devices to it, print its identifier.
    #[command(name = "snapshot_create")]
    SnapshotCreate {
        /// Devices to add (the filter is attached if need be).
        #[arg(short, long, num_args = 1..)]
        device: Vec<PathBuf>,
    },
    /// Add a device to a snapshot not yet taken.
    #[command(name = "snapshot_add")]
    SnapshotAdd {
        #[command(flatten)]
        id: IdArg,
        #[command(flatten)]
        device: DeviceArg,
    },
    /// Destroy a snapshot: its images and difference storage go.
    #[command(name = "snapshot_destroy")]
    SnapshotDestroy(IdArg),
    /// Give a snapshot difference storage: ranges of a device, or a file.
    #[command(name = "snapshot_appendstorage")]
    SnapshotAppendStorage {
        #[command(flatten)]
        id: IdArg,
        #[command(flatten)]
        source: RangeSource,
    },
    /// Give a snapshot storage the module opens itself (a whole block device,
    /// held exclusively; an unnamed file it creates in a directory and grows;
    /// or a regular file), or with no --path a new limit for it.
    #[command(name = "snapshot_setstorage")]
    SnapshotSetStorage {
        #[command(flatten)]
        id: IdArg,
        /// The block device, directory or file.
        #[arg(short, long)]
        path: Option<PathBuf>,
        /// The most sectors of it the snapshot may use; 0 for all of a
        /// device (a file needs a limit).
        #[arg(short, long, default_value_t = 0)]
        limit: u64,
    },
    /// Take a snapshot: its images appear.
    #[command(name = "snapshot_take")]
    SnapshotTake(IdArg),
    /// Print the state and image of a device's snapshot.
    #[command(name = "snapshot_info")]
    SnapshotInfo(DeviceArg),
    /// Wait for the next event of a snapshot.
    #[command(name = "snapshot_waitevent")]
    SnapshotWaitEvent {
        #[command(flatten)]
        id: IdArg,
        /// How long to wait, in milliseconds.
        #[arg(short, long)]
        timeout: u32,
    },
    /// List the identifiers of all snapshots.
    #[command(name = "snapshot_collect")]
    SnapshotCollect,
    /// Answer a snapshot's low-space (or, for storage the module opens,
    /// no-space) events with more storage, up to a limit.
    #[command(name = "stretch_snapshot")]
    StretchSnapshot(StretchArgs),
    /// Change tracking queries.
    #[command(name = "cbt", subcommand)]
    Cbt(CbtCommand),
}

#[derive(Args, Debug)]
pub struct StretchArgs {
    #[command(flatten)]
    pub id: IdArg,
    /// Directory to create storage files in (written, then given by extent).
    #[arg(
        short,
        long,
        required_unless_present_any = ["device", "setstorage"],
        conflicts_with_all = ["device", "setstorage"]
    )]
    pub path: Option<PathBuf>,
    /// Storage the module opens (device, directory or file), as with
    /// snapshot_setstorage: given at the first request with a limit of what
    /// it asks for, the limit raised at each no-space event.
    #[arg(short, long, conflicts_with = "device")]
    pub setstorage: Option<PathBuf>,
    /// Block device whose --range list is handed out as needed.
    #[arg(short, long, requires = "ranges")]
    pub device: Option<PathBuf>,
    /// Sector ranges of --device to hand out, SECTOR:COUNT.
    #[arg(short = 'r', long = "range", visible_alias = "ranges", num_args = 1..,
          value_parser = parse_range, requires = "device")]
    pub ranges: Vec<blksnap_sectors>,
    /// Most storage to add, in MiB (default: no limit but the source's).
    #[arg(short, long)]
    pub limit: Option<u64>,
    /// Milliseconds per wait for an event.
    #[arg(short, long, default_value_t = 1000)]
    pub timeout: u32,
}

#[derive(Subcommand, Debug)]
pub enum CbtCommand {
    /// Print the extents changed after snapshot number N of the tracker.
    #[command(name = "changed")]
    Changed {
        #[command(flatten)]
        device: DeviceArg,
        /// Snapshot number N (cbtinfo's changes_number at that snapshot);
        /// 0 lists every block written in this generation.
        #[arg(short, long)]
        since: u8,
        /// The generation the number belongs to; a different one fails.
        #[arg(short, long)]
        generation: Option<Uuid>,
        /// Offsets and lengths in 512-byte sectors instead of bytes.
        #[arg(long)]
        sectors: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("blksnap").chain(args.iter().copied()))
    }

    const ID: &str = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0";

    #[test]
    fn definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn takes_the_long_standing_forms() {
        let cli = parse(&["snapshot_create", "-d", "/dev/sda1", "/dev/sdb"]).unwrap();
        match cli.command {
            Command::SnapshotCreate { device } => assert_eq!(device.len(), 2),
            c => panic!("{c:?}"),
        }
        let cli = parse(&[
            "snapshot_appendstorage",
            "-i",
            ID,
            "-d",
            "/dev/sdc",
            "-r",
            "0:2048",
            "4096:8",
        ])
        .unwrap();
        match cli.command {
            Command::SnapshotAppendStorage { source, .. } => {
                assert_eq!(
                    source.ranges,
                    [
                        blksnap_sectors {
                            offset: 0,
                            count: 2048
                        },
                        blksnap_sectors {
                            offset: 4096,
                            count: 8
                        }
                    ]
                );
            }
            c => panic!("{c:?}"),
        }
        assert!(parse(&["snapshot_appendstorage", "--id", ID, "--file", "/var/diff"]).is_ok());
        assert!(
            parse(&["snapshot_waitevent", "-i", ID, "-t", "100", "-j"])
                .unwrap()
                .json
        );
        assert!(
            parse(&["--json", "cbtinfo", "--device", "/dev/sda"])
                .unwrap()
                .json
        );
        assert!(parse(&["stretch_snapshot", "-i", ID, "-p", "/var/tmp", "-l", "64"]).is_ok());
        assert!(parse(&["stretch_snapshot", "-i", ID, "-s", "/var/tmp", "-l", "64"]).is_ok());
        assert!(parse(&[
            "snapshot_setstorage",
            "-i",
            ID,
            "-p",
            "/dev/sdc",
            "-l",
            "64"
        ])
        .is_ok());
        assert!(parse(&["snapshot_setstorage", "-i", ID, "--limit", "4096"]).is_ok());
        assert!(parse(&[
            "cbt",
            "changed",
            "-d",
            "/dev/sda",
            "--since",
            "3",
            "--sectors"
        ])
        .is_ok());
        assert!(parse(&["readcbtmap", "-d", "/dev/sda", "-f", "/tmp/map"]).is_ok());
        assert!(parse(&["markdirtyblock", "-d", "/dev/sda", "-r", "0:8"]).is_ok());
    }

    #[test]
    fn refuses_bad_arguments() {
        for args in [
            &["snapshot_take", "-i", "not-a-uuid"][..],
            &["snapshot_take"],
            &["attach"],
            &["snapshot_appendstorage", "-i", ID],
            &["snapshot_appendstorage", "-i", ID, "-d", "/dev/sdc"],
            &[
                "snapshot_appendstorage",
                "-i",
                ID,
                "-d",
                "/dev/sdc",
                "-r",
                "5:0",
            ],
            &[
                "snapshot_appendstorage",
                "-i",
                ID,
                "-f",
                "x",
                "-d",
                "/dev/sdc",
                "-r",
                "0:8",
            ],
            &["stretch_snapshot", "-i", ID],
            &[
                "stretch_snapshot",
                "-i",
                ID,
                "-s",
                "/var/tmp",
                "-p",
                "/var/tmp",
            ],
            &["cbt", "changed", "-d", "/dev/sda", "--since", "256"],
            &["no_such_command"],
        ] {
            assert!(parse(args).is_err(), "{args:?} accepted");
        }
    }
}
