//! A failing write (here: the file size limit, `ulimit -f`, which makes `write` fail with
//! `EFBIG` like a full disk fails with `ENOSPC`) fails the whole group commit, leaves no
//! partial record behind, keeps offsets dense, and the log goes on working.
//!
//! The test re-runs itself in a child process under `sh -c 'trap "" XFSZ; ulimit -f …'`
//! (an ignored signal stays ignored across `exec`, so the write returns an error instead
//! of killing the process).

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use sundial_bus::{Error, LocalLog};

const CHILD: &str = "SUNDIAL_BUS_WRITE_ERROR_CHILD";
/// The limit in 512-byte blocks: 32 KiB.
const LIMIT_BLOCKS: u64 = 64;

#[test]
fn a_failed_write_is_cut_off_and_the_log_continues() {
    if std::env::var_os(CHILD).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {LIMIT_BLOCKS} && exec \"$0\" --exact a_failed_write_is_cut_off_and_the_log_continues --nocapture --test-threads 1"
        ))
        .arg(exe)
        .env(CHILD, "1")
        .status()
        .unwrap();
    assert!(status.success(), "child test failed: {status}");
}

fn child() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log = LocalLog::open(dir.path(), small_segments(1 << 20)).unwrap();
    let limit = LIMIT_BLOCKS * 512;

    let mut acknowledged = Vec::new();
    let err = loop {
        let i = acknowledged.len() as u64;
        let batch = vec![vec![b'a' + (i % 26) as u8; 1000]];
        match rt.block_on(log.append(batch.clone())) {
            Ok(range) => {
                assert_eq!(range, i..i + 1);
                acknowledged.extend(batch);
                assert!(
                    (acknowledged.len() as u64) * 1000 < limit,
                    "the limit never hit"
                );
            }
            Err(err) => break err,
        }
    };
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().contains("write segment"), "{err}");

    // Nothing of the failed batch is visible or left in the file.
    let end = acknowledged.len() as u64;
    assert_eq!(log.durable_end(), end);
    let (_, path) = segments(dir.path()).pop().unwrap();
    let on_disk = std::fs::metadata(&path).unwrap().len();
    assert_eq!(on_disk, log.stats().bytes);
    assert_eq!(on_disk, HEADER_LEN + end * (FRAME_OVERHEAD + 1000));

    // A record that fits still goes in, right after the acknowledged ones.
    let room = limit - on_disk;
    assert!(room > FRAME_OVERHEAD, "room {room}");
    let small = vec![b'z'; (room - FRAME_OVERHEAD) as usize];
    assert_eq!(
        rt.block_on(log.append(vec![small.clone()])).unwrap(),
        end..end + 1
    );
    acknowledged.push(small);
    assert_eq!(payloads(&log), acknowledged);

    // And everything survives a reopen.
    drop(log);
    let log = LocalLog::open(dir.path(), small_segments(1 << 20)).unwrap();
    assert_eq!(log.recovery().truncated_bytes, 0);
    assert_eq!(payloads(&log), acknowledged);
}
