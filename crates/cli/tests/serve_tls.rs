//! `sundial serve --tls-cert --tls-key`: HTTPS with rustls, checked with a real TLS
//! client against a self-signed certificate made for the test; and the flag errors.

mod common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::process::Stdio;

use common::sundial;

#[test]
fn serve_answers_over_https_with_the_given_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let cert_pem = certified.cert.pem();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    std::fs::write(&cert, &cert_pem).expect("write cert");
    std::fs::write(&key, certified.key_pair.serialize_pem()).expect("write key");
    let data = dir.path().join("data");
    let log = std::fs::File::create(dir.path().join("serve.log")).expect("log");
    let mut child = sundial()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .expect("spawn");
    let stdout = child.stdout.take().expect("stdout");
    let line = BufReader::new(stdout)
        .lines()
        .next()
        .and_then(Result::ok)
        .unwrap_or_default();
    let addr: SocketAddr = match line.strip_prefix("listening on https://") {
        Some(a) => a.parse().expect("address"),
        None => {
            let _ = child.kill();
            panic!(
                "no https listening line ({line:?}): {}",
                std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
            );
        }
    };
    let client = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert_pem.as_bytes()).expect("pem"))
        .resolve("localhost", addr)
        .build()
        .expect("client");
    let base = format!("https://localhost:{}", addr.port());
    let health = client
        .get(format!("{base}/healthz"))
        .send()
        .expect("https GET");
    assert_eq!(health.status(), 200);
    assert_eq!(health.headers()["x-frame-options"], "DENY");
    let login = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&serde_json::json!({"username": "nobody", "password": "not-a-password"}))
        .send()
        .expect("https POST");
    assert_eq!(login.status(), 401);
    assert_eq!(
        client
            .get(format!("{base}/api/v1/apps"))
            .send()
            .expect("https GET")
            .status(),
        401
    );
    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::blocking::Client::builder()
        .resolve("localhost", addr)
        .build()
        .expect("client");
    assert!(untrusting.get(format!("{base}/healthz")).send().is_err());
    // SIGTERM shuts the HTTPS server down cleanly.
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
    let status = child.wait().expect("wait");
    assert!(
        status.success(),
        "{status}: {}",
        std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default()
    );
}

#[test]
fn tls_flags_need_each_other_and_readable_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = sundial()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent.pem",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-key"));
    let out = sundial()
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--tls-cert",
            "/nonexistent-cert.pem",
            "--tls-key",
            "/nonexistent-key.pem",
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("/nonexistent-cert.pem"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
