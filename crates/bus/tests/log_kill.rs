//! A real crash: a child process appends from many tasks and prints each acknowledged
//! range; the parent kills it with SIGKILL mid-stream, reopens the log and checks that
//! every acknowledged record is there, intact and in its place.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use common::*;
use sundial_bus::LocalLog;

const CHILD_DIR: &str = "SUNDIAL_BUS_KILL_CHILD_DIR";

/// The payload of record `i` of batch `seq` of appender `task`.
fn record(task: u64, seq: u64, i: u64) -> Vec<u8> {
    let mut p = format!("{task}/{seq}/{i}|").into_bytes();
    p.resize(p.len() + ((seq * 7 + i) % 50) as usize, b'#');
    p
}

fn batch(task: u64, seq: u64) -> Vec<Vec<u8>> {
    (0..1 + (task + seq) % 10)
        .map(|i| record(task, seq, i))
        .collect()
}

#[test]
fn every_acknowledged_record_survives_kill_9() {
    if let Some(dir) = std::env::var_os(CHILD_DIR) {
        child(dir.into());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "every_acknowledged_record_survives_kill_9",
            "--nocapture",
        ])
        .env(CHILD_DIR, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut acks = Vec::new();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acks.len() < 400 {
        let line = lines.next().expect("the child stopped early").unwrap();
        // "ack task seq start end"; the test harness prints other lines too.
        let Some(rest) = line.strip_prefix("ack ") else {
            continue;
        };
        let f: Vec<u64> = rest.split(' ').map(|x| x.parse().unwrap()).collect();
        acks.push((f[0], f[1], f[2], f[3]));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    let log = LocalLog::open(dir.path(), small_segments(8 << 10)).unwrap();
    let stored = read_all(&log);
    for (task, seq, start, end) in acks {
        let expected = batch(task, seq);
        assert_eq!(end - start, expected.len() as u64);
        for (i, payload) in (start..end).zip(expected) {
            assert!(i < log.durable_end(), "acknowledged offset {i} lost");
            assert_eq!(stored[i as usize].payload, payload, "offset {i}");
        }
    }
    log.verify().unwrap();
}

fn child(dir: std::path::PathBuf) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    rt.block_on(async move {
        let log = LocalLog::open(&dir, small_segments(8 << 10)).unwrap();
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let log = log.clone();
            tasks.push(tokio::spawn(async move {
                // Runs until killed.
                for seq in 0.. {
                    let range = log.append(batch(task, seq)).await.unwrap();
                    println!("ack {task} {seq} {} {}", range.start, range.end);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}
