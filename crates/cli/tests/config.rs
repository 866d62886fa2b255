//! The configuration layers of the `sundial` binary: file, environment, flags, and the
//! errors each gives for an unknown key, a wrong type or a bad value.

use assert_cmd::Command;
use predicates::prelude::*;
use std::io::Write;

/// `sundial` with a clean environment: no SUNDIAL_* variable leaks in from the caller.
fn sundial() -> Command {
    let mut cmd = Command::cargo_bin("sundial").expect("binary built");
    for (key, _) in std::env::vars() {
        if key.starts_with("SUNDIAL_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn config_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::Builder::new()
        .suffix(".toml")
        .tempfile()
        .expect("temp file");
    file.write_all(text.as_bytes()).expect("write config");
    file
}

#[test]
fn defaults_without_a_file() {
    sundial()
        .args(["config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("level = \"info\""))
        .stdout(predicate::str::contains("format = \"pretty\""));
}

#[test]
fn the_example_file_is_valid_and_documents_the_defaults() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sundial.example.toml");
    let shown = sundial()
        .args(["--config", example, "config", "show", "--format", "json"])
        .output()
        .expect("run");
    assert!(shown.status.success());
    let defaults = sundial()
        .args(["config", "show", "--format", "json"])
        .output()
        .expect("run");
    assert_eq!(
        shown.stdout, defaults.stdout,
        "the example must show the defaults"
    );
}

#[test]
fn file_then_environment_then_flags() {
    let file = config_file("[log]\nlevel = \"debug\"\nformat = \"json\"\n");
    let path = file.path().to_str().expect("utf-8 path");
    sundial()
        .args(["--config", path, "config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("level = \"debug\""))
        .stdout(predicate::str::contains("format = \"json\""));
    sundial()
        .env("SUNDIAL_LOG_LEVEL", "warn")
        .args(["--config", path, "config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("level = \"warn\""))
        .stdout(predicate::str::contains("format = \"json\""));
    sundial()
        .env("SUNDIAL_LOG__LEVEL", "warn")
        .env("SUNDIAL_LOG_FORMAT", "pretty")
        .args(["--config", path, "--log-level", "error", "config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("level = \"error\""))
        .stdout(predicate::str::contains("format = \"pretty\""));
}

#[test]
fn data_dir_and_store_layers() {
    sundial()
        .env("SUNDIAL_DATA_DIR", "/srv/sundial")
        .env("SUNDIAL_STORE_URL", "postgres://u@db/sundial")
        .args(["config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("data_dir = \"/srv/sundial\""))
        .stdout(predicate::str::contains(
            "url = \"postgres://u@db/sundial\"",
        ));
    sundial()
        .env("SUNDIAL_STORE_URL", "mysql://db")
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value for `store.url`"))
        .stderr(predicate::str::contains("SUNDIAL_"));
}

#[test]
fn config_file_from_environment() {
    let file = config_file("[log]\nlevel = \"trace\"\n");
    sundial()
        .env("SUNDIAL_CONFIG", file.path())
        .args(["config", "show"])
        .assert()
        .success()
        .stdout(predicate::str::contains("level = \"trace\""));
}

#[test]
fn unknown_key_in_file_names_key_file_and_line() {
    let file = config_file("[log]\nlevel = \"debug\"\nformt = \"json\"\n");
    sundial()
        .args([
            "--config",
            file.path().to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .assert()
        .code(2)
        .stdout(predicate::str::is_empty())
        .stderr(predicate::str::contains("unknown field `formt`"))
        .stderr(predicate::str::contains("line 3"))
        .stderr(predicate::str::contains(
            file.path().to_str().expect("utf-8"),
        ));
}

#[test]
fn unknown_section_in_file() {
    let file = config_file("[logging]\nlevel = \"debug\"\n");
    sundial()
        .args([
            "--config",
            file.path().to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown field `logging`"))
        .stderr(predicate::str::contains("line 1"));
}

#[test]
fn wrong_type_in_file() {
    let file = config_file("[log]\nlevel = 5\n");
    sundial()
        .args([
            "--config",
            file.path().to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("line 2"))
        .stderr(predicate::str::contains("invalid type: integer `5`"));
}

#[test]
fn bad_enum_value_in_file() {
    let file = config_file("[log]\nformat = \"xml\"\n");
    sundial()
        .args([
            "--config",
            file.path().to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("unknown variant `xml`"))
        .stderr(predicate::str::contains("line 2, column 10"));
}

#[test]
fn bad_value_names_key_and_source() {
    let file = config_file("[log]\nlevel = \"loud\"\n");
    sundial()
        .args([
            "--config",
            file.path().to_str().expect("utf-8"),
            "config",
            "check",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value for `log.level`"))
        .stderr(predicate::str::contains(
            file.path().to_str().expect("utf-8"),
        ))
        .stderr(predicate::str::contains("`loud` is not a log filter"));
}

#[test]
fn unreadable_file() {
    sundial()
        .args(["--config", "/nonexistent/sundial.toml", "config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "cannot read config file /nonexistent/sundial.toml",
        ));
}

#[test]
fn bad_environment_value_names_the_variable() {
    sundial()
        .env("SUNDIAL_LOG_FORMAT", "xml")
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("SUNDIAL_LOG_FORMAT"))
        .stderr(predicate::str::contains("xml"));
}

#[test]
fn unknown_environment_variable_is_an_error() {
    sundial()
        .env("SUNDIAL_LOG_COLOUR", "always")
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("SUNDIAL_LOG_COLOUR"))
        .stderr(predicate::str::contains("unknown field"));
}

#[test]
fn job_environment_is_not_configuration() {
    // Jobs that the scheduler runs see these; a job calling `sundial` must still work.
    sundial()
        .env("SUNDIAL_JOB_ID", "backup")
        .env("SUNDIAL_FENCING_TOKEN", "42")
        .args(["config", "check"])
        .assert()
        .success()
        .stdout("configuration is valid\n");
}

#[test]
fn bad_flag_value_is_a_usage_error() {
    sundial()
        .args(["--log-format", "xml", "config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value 'xml'"));
    sundial()
        .args(["--log-level", "loud", "config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid value for `log.level`"))
        .stderr(predicate::str::contains("command-line flags"));
}

#[test]
fn json_logs_are_json_on_stderr() {
    let output = sundial()
        .args([
            "--log-format",
            "json",
            "--log-level",
            "debug",
            "config",
            "show",
        ])
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("[log]"));
    let stderr = String::from_utf8(output.stderr).expect("utf-8 logs");
    let line = stderr
        .lines()
        .find(|l| l.contains("configuration loaded"))
        .expect("a debug line about the configuration");
    let value: serde_json::Value = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(value["level"], "DEBUG");
    assert_eq!(value["message"], "configuration loaded");
}

#[test]
fn logs_are_quiet_at_the_default_level() {
    sundial()
        .args(["config", "show"])
        .assert()
        .success()
        .stderr(predicate::str::is_empty());
}

#[test]
fn help_and_version() {
    sundial()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("config"));
    sundial()
        .arg("--version")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("sundial "));
}
