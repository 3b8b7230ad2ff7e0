// SPDX-License-Identifier: GPL-2.0
//! The Rust structures and request numbers against the C header: a small C
//! program, compiled by gcc against the repository's include/uapi, prints
//! sizeof, offsetof and the numbers; the Rust side must print the same.
//! (BLKSNAP_UAPI_INCLUDE points elsewhere, e.g. installed headers.)

use blksnap::uapi;
use core::mem::{offset_of, size_of};
use std::path::PathBuf;
use std::process::Command;

struct Layout {
    name: &'static str,
    size: usize,
    fields: Vec<(&'static str, usize)>,
}

macro_rules! layouts {
    ($($ty:ident { $($field:ident),* $(,)? })*) => {
        vec![$(Layout {
            name: stringify!($ty),
            size: size_of::<uapi::$ty>(),
            fields: vec![$((stringify!($field), offset_of!(uapi::$ty, $field))),*],
        }),*]
    };
}

fn rust_layouts() -> Vec<Layout> {
    layouts! {
        blksnap_uuid { b }
        blksnap_cbtinfo { device_capacity, block_size, block_count, generation_id, changes_number }
        blksnap_cbtmap { offset, length, buffer }
        blksnap_sectors { offset, count }
        blksnap_cbtdirty { count, dirty_sectors }
        blksnap_snapshotadd { id }
        blksnap_snapshotinfo { error_code, image }
        blksnap_version { major, minor, revision, build }
        blksnap_snapshot_append_storage { id, bdev_path, bdev_path_size, count, ranges }
        blksnap_snapshot_collect { count, ids }
        blksnap_snapshot_event { id, timeout_ms, code, time_label, data }
        blksnap_event_low_free_space { requested_nr_sect }
        blksnap_event_corrupted { dev_id_mj, dev_id_mn, err_code }
        blksnap_snapshot_storage { id, path, path_size, flags, limit_sect }
        blksnap_event_no_space { requested_nr_sect }
        blkfilter_name { name }
        blkfilter_ctl { name, cmd, optlen, opt }
        fiemap { fm_start, fm_length, fm_flags, fm_mapped_extents, fm_extent_count, fm_reserved }
        fiemap_extent { fe_logical, fe_physical, fe_length, fe_reserved64, fe_flags, fe_reserved }
    }
}

/// Request numbers, enum values and flags, by their C names.
fn rust_numbers() -> Vec<(&'static str, u64)> {
    use uapi::*;
    vec![
        ("BLKFILTER_ATTACH", BLKFILTER_ATTACH.into()),
        ("BLKFILTER_DETACH", BLKFILTER_DETACH.into()),
        ("BLKFILTER_CTL", BLKFILTER_CTL.into()),
        ("IOCTL_BLKSNAP_VERSION", IOCTL_BLKSNAP_VERSION.into()),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_CREATE",
            IOCTL_BLKSNAP_SNAPSHOT_CREATE.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_DESTROY",
            IOCTL_BLKSNAP_SNAPSHOT_DESTROY.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE",
            IOCTL_BLKSNAP_SNAPSHOT_APPEND_STORAGE.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_TAKE",
            IOCTL_BLKSNAP_SNAPSHOT_TAKE.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_COLLECT",
            IOCTL_BLKSNAP_SNAPSHOT_COLLECT.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT",
            IOCTL_BLKSNAP_SNAPSHOT_WAIT_EVENT.into(),
        ),
        (
            "IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE",
            IOCTL_BLKSNAP_SNAPSHOT_SET_STORAGE.into(),
        ),
        ("FS_IOC_FIEMAP", FS_IOC_FIEMAP.into()),
        (
            "blkfilter_ctl_blksnap_cbtinfo",
            BLKFILTER_CTL_BLKSNAP_CBTINFO.into(),
        ),
        (
            "blkfilter_ctl_blksnap_cbtmap",
            BLKFILTER_CTL_BLKSNAP_CBTMAP.into(),
        ),
        (
            "blkfilter_ctl_blksnap_cbtdirty",
            BLKFILTER_CTL_BLKSNAP_CBTDIRTY.into(),
        ),
        (
            "blkfilter_ctl_blksnap_snapshotadd",
            BLKFILTER_CTL_BLKSNAP_SNAPSHOTADD.into(),
        ),
        (
            "blkfilter_ctl_blksnap_snapshotinfo",
            BLKFILTER_CTL_BLKSNAP_SNAPSHOTINFO.into(),
        ),
        (
            "blksnap_event_code_low_free_space",
            BLKSNAP_EVENT_CODE_LOW_FREE_SPACE.into(),
        ),
        (
            "blksnap_event_code_corrupted",
            BLKSNAP_EVENT_CODE_CORRUPTED.into(),
        ),
        (
            "blksnap_event_code_no_space",
            BLKSNAP_EVENT_CODE_NO_SPACE.into(),
        ),
        ("UUID_SIZE", UUID_SIZE as u64),
        ("IMAGE_DISK_NAME_LEN", IMAGE_DISK_NAME_LEN as u64),
        ("BLKFILTER_NAME_LENGTH", BLKFILTER_NAME_LENGTH as u64),
        ("FIEMAP_FLAG_SYNC", FIEMAP_FLAG_SYNC.into()),
        ("FIEMAP_EXTENT_LAST", FIEMAP_EXTENT_LAST.into()),
        ("FIEMAP_EXTENT_UNKNOWN", FIEMAP_EXTENT_UNKNOWN.into()),
        ("FIEMAP_EXTENT_DELALLOC", FIEMAP_EXTENT_DELALLOC.into()),
        ("FIEMAP_EXTENT_ENCODED", FIEMAP_EXTENT_ENCODED.into()),
        (
            "FIEMAP_EXTENT_DATA_ENCRYPTED",
            FIEMAP_EXTENT_DATA_ENCRYPTED.into(),
        ),
        (
            "FIEMAP_EXTENT_NOT_ALIGNED",
            FIEMAP_EXTENT_NOT_ALIGNED.into(),
        ),
        (
            "FIEMAP_EXTENT_DATA_INLINE",
            FIEMAP_EXTENT_DATA_INLINE.into(),
        ),
        ("FIEMAP_EXTENT_DATA_TAIL", FIEMAP_EXTENT_DATA_TAIL.into()),
        ("FIEMAP_EXTENT_UNWRITTEN", FIEMAP_EXTENT_UNWRITTEN.into()),
        ("FIEMAP_EXTENT_MERGED", FIEMAP_EXTENT_MERGED.into()),
        ("FIEMAP_EXTENT_SHARED", FIEMAP_EXTENT_SHARED.into()),
    ]
}

fn uapi_include() -> PathBuf {
    // Cargo names the package's directory when it runs the test too: a
    // test binary reused from a build cache may come from another checkout.
    let package = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    match std::env::var_os("BLKSNAP_UAPI_INCLUDE") {
        Some(dir) => dir.into(),
        None => package.join("../../include/uapi"),
    }
}

fn c_program(layouts: &[Layout], numbers: &[(&str, u64)]) -> String {
    let mut c = String::from(
        "#include <stddef.h>\n#include <stdio.h>\n#include <linux/fiemap.h>\n\
         #include <linux/fs.h>\n#include <linux/blk-filter.h>\n#include <linux/blksnap.h>\n\
         int main(void)\n{\n",
    );
    for l in layouts {
        c += &format!("\tprintf(\"{0} %zu\\n\", sizeof(struct {0}));\n", l.name);
        for (f, _) in &l.fields {
            c += &format!(
                "\tprintf(\"{0}.{1} %zu\\n\", offsetof(struct {0}, {1}));\n",
                l.name, f
            );
        }
    }
    for (name, _) in numbers {
        c += &format!("\tprintf(\"{name} %llu\\n\", (unsigned long long){name});\n");
    }
    c + "\treturn 0;\n}\n"
}

fn rust_lines(layouts: &[Layout], numbers: &[(&str, u64)]) -> Vec<String> {
    let mut out = Vec::new();
    for l in layouts {
        out.push(format!("{} {}", l.name, l.size));
        for (f, off) in &l.fields {
            out.push(format!("{}.{} {}", l.name, f, off));
        }
    }
    for (name, v) in numbers {
        out.push(format!("{name} {v}"));
    }
    out
}

#[test]
fn structures_and_numbers_match_the_c_header() {
    let layouts = rust_layouts();
    let numbers = rust_numbers();
    let dir = std::env::temp_dir().join(format!("blksnap-layout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("layout.c");
    let exe = dir.join("layout");
    std::fs::write(&src, c_program(&layouts, &numbers)).unwrap();
    let cc = Command::new("gcc")
        .arg("-Wall")
        .arg("-Werror")
        .arg("-I")
        .arg(uapi_include())
        .arg("-o")
        .arg(&exe)
        .arg(&src)
        .output()
        .expect("gcc runs");
    assert!(
        cc.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    let c_lines: Vec<String> = String::from_utf8(run.stdout)
        .unwrap()
        .lines()
        .map(String::from)
        .collect();
    std::fs::remove_dir_all(&dir).ok();
    let rust = rust_lines(&layouts, &numbers);
    let differ: Vec<String> = c_lines
        .iter()
        .zip(&rust)
        .filter(|(c, r)| c != r)
        .map(|(c, r)| format!("C {c} / Rust {r}"))
        .collect();
    assert!(differ.is_empty(), "layouts differ:\n{}", differ.join("\n"));
    assert_eq!(c_lines.len(), rust.len());
}

/// Every structure of the blksnap headers has its Rust twin in the table.
#[test]
fn every_header_structure_is_checked() {
    let known: Vec<&str> = rust_layouts().iter().map(|l| l.name).collect();
    for header in ["linux/blksnap.h", "linux/blk-filter.h"] {
        let text = std::fs::read_to_string(uapi_include().join(header)).unwrap();
        for line in text.lines() {
            if let Some(name) = line
                .strip_prefix("struct ")
                .and_then(|l| l.strip_suffix(" {"))
            {
                assert!(
                    known.contains(&name),
                    "struct {name} of {header} is not checked"
                );
            }
        }
    }
}
