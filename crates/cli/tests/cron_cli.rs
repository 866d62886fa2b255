//! `sundial cron next|check|explain`: output format, zones, DST, exit statuses.

use assert_cmd::Command;
use predicates::prelude::*;

/// `sundial cron …` with a clean environment: no SUNDIAL_* variable leaks in.
fn cron() -> Command {
    let mut cmd = Command::cargo_bin("sundial").expect("binary built");
    for (key, _) in std::env::vars() {
        if key.starts_with("SUNDIAL_") {
            cmd.env_remove(key);
        }
    }
    cmd.arg("cron");
    cmd
}

#[test]
fn next_prints_rfc3339_in_the_zone() {
    cron()
        .args(["next", "30 2 * * *", "--tz", "America/New_York"])
        .args(["--from", "2024-03-09T12:00:00-05:00", "--count", "3"])
        .assert()
        .success()
        .stdout("2024-03-10T03:00:00-04:00\n2024-03-11T02:30:00-04:00\n2024-03-12T02:30:00-04:00\n")
        .stderr("");
}

#[test]
fn next_defaults_to_utc_and_fall_back_fires_once() {
    cron()
        .args([
            "next",
            "0 0 1 * *",
            "--from",
            "2024-01-15T00:00:00Z",
            "-n",
            "2",
        ])
        .assert()
        .success()
        .stdout("2024-02-01T00:00:00+00:00\n2024-03-01T00:00:00+00:00\n");
    cron()
        .args(["next", "30 1 * * *", "--tz", "America/New_York"])
        .args(["--from", "2024-11-03T00:00:00-04:00", "--count", "2"])
        .assert()
        .success()
        .stdout("2024-11-03T01:30:00-04:00\n2024-11-04T01:30:00-05:00\n");
}

#[test]
fn cron_tz_prefix_is_the_default_output_zone() {
    cron()
        .args(["next", "CRON_TZ=Europe/Berlin 0 9 * * *"])
        .args(["--from", "2024-07-01T00:00:00Z", "--count", "1"])
        .assert()
        .success()
        .stdout("2024-07-01T09:00:00+02:00\n");
    cron()
        .args(["next", "CRON_TZ=Europe/Berlin 0 9 * * *", "--tz", "UTC"])
        .args(["--from", "2024-07-01T00:00:00Z", "--count", "1"])
        .assert()
        .success()
        .stdout("2024-07-01T07:00:00+00:00\n");
}

#[test]
fn invalid_expression_exits_2_with_caret_and_no_stdout() {
    cron()
        .args(["next", "0 0 32 * *"])
        .assert()
        .code(2)
        .stdout("")
        .stderr("error: invalid day-of-month `32`: must be 1–31\n  0 0 32 * *\n      ^^\n");
    cron()
        .args(["check", "0 22-2 * * *"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("22-23,0-2"));
    cron()
        .args(["explain", "@reboot"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("start-up hook"));
}

#[test]
fn never_firing_exits_1() {
    cron()
        .args(["next", "0 0 30 2 *", "--from", "2024-01-01T00:00:00Z"])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::contains("never fires"));
}

#[test]
fn bad_zone_or_start_exits_2() {
    cron()
        .args(["next", "@daily", "--tz", "Mars/Olympus"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--tz"));
    cron()
        .args(["next", "@daily", "--from", "yesterday"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--from"));
}

#[test]
fn every_is_explained_as_an_interval() {
    cron()
        .args([
            "next",
            "@every 90m",
            "--from",
            "2024-01-01T00:00:00Z",
            "-n",
            "2",
        ])
        .assert()
        .success()
        .stdout("2024-01-01T01:30:00+00:00\n2024-01-01T03:00:00+00:00\n")
        .stderr(predicate::str::contains("interval trigger"));
}

#[test]
fn check_prints_the_normal_form() {
    cron()
        .args(["check", "0 12 * * mon-fri"])
        .assert()
        .success()
        .stdout("valid: 0 12 * * 1-5\n");
}

#[test]
fn explain_in_english_and_chinese() {
    cron()
        .args(["explain", "30 2 * * MON-FRI"])
        .assert()
        .success()
        .stdout("At 02:30, Monday through Friday\n");
    cron()
        .args(["explain", "30 2 * * MON-FRI", "--lang", "zh"])
        .assert()
        .success()
        .stdout("周一至周五 02:30\n");
}

#[test]
fn seed_spreads_hashed_values() {
    let out = |seed: &str| {
        cron()
            .args(["check", "H H * * *", "--seed", seed])
            .output()
            .expect("runs")
            .stdout
    };
    assert_eq!(out("job-a"), out("job-a"));
    assert_ne!(out("1"), out("2"));
}

#[test]
fn seed_is_hashed_like_the_scheduler_hashes_job_ids() {
    // A numeric job id is still an id: `--seed 42` must show what job `42` gets.
    for job_id in ["42", "nightly-backup"] {
        let expected =
            sundial_cron::Schedule::parse_with_seed("H H * * *", sundial_cron::hash_seed(job_id))
                .expect("valid")
                .to_string();
        cron()
            .args(["check", "H H * * *", "--seed", job_id])
            .assert()
            .success()
            .stdout(format!("valid: {expected}\n"));
    }
}
