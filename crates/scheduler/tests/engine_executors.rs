//! Command and HTTP jobs through the engine, with real processes and a real local
//! HTTP server (127.0.0.1, port 0).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sundial_scheduler::engine::{Scheduler, SchedulerEvent};
use sundial_scheduler::executor::command::CommandSpec;
use sundial_scheduler::job::{ActionSpec, JobId, JobSpec, RunRecord, RunState, TriggerSpec};
use sundial_scheduler::jobs_file::{HttpSpec, Policies};
use sundial_scheduler::policy::RetryPolicy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A job that only runs when triggered (its cron fires on 1 January).
fn manual(id: &str, action: ActionSpec, timeout: Option<Duration>) -> JobSpec {
    JobSpec::new(id, TriggerSpec::cron("0 0 1 1 *", "UTC"), action).with_policies(Policies {
        retry: RetryPolicy {
            attempt_timeout: timeout,
            ..RetryPolicy::default()
        },
        ..Policies::default()
    })
}

/// Triggers the job and waits for its run to end (an outer bound keeps a broken
/// engine from hanging the suite).
async fn run_once(s: &Scheduler, id: &str) -> RunRecord {
    let mut events = s.subscribe();
    s.trigger_now(&JobId::new(id), None).expect("job");
    let wait = async {
        loop {
            match events.recv().await.expect("events") {
                SchedulerEvent::Finished { run } | SchedulerEvent::Failed { run }
                    if run.job_id.as_str() == id =>
                {
                    return run;
                }
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(60), wait)
        .await
        .expect("the run ends")
}

fn sh(script: &str) -> ActionSpec {
    let mut spec = CommandSpec::new(vec!["sh".into(), "-c".into(), script.into()]);
    spec.kill_grace = Duration::from_millis(200);
    ActionSpec::Command(spec)
}

#[tokio::test]
async fn commands_see_their_run_and_hung_ones_are_killed_with_children() {
    let s = Scheduler::builder().node_id("node-7").build();
    s.start().await.expect("start");
    s.add(manual(
        "env",
        sh("echo $SUNDIAL_JOB_ID $SUNDIAL_ATTEMPT $SUNDIAL_NODE_ID $SUNDIAL_RUN_ID $SUNDIAL_FENCING_TOKEN $SUNDIAL_FIRE_TIME"),
        None,
    ))
    .await
    .expect("add");
    let run = run_once(&s, "env").await;
    assert_eq!((run.state, run.exit_code), (RunState::Succeeded, Some(0)));
    let words: Vec<&str> = run.output.split_whitespace().collect();
    assert_eq!(&words[..3], ["env", "1", "node-7"]);
    assert_eq!(words[3], run.run_id.to_string());
    assert_eq!(words[4], run.fencing_token.0.to_string());
    assert_eq!(words[5], run.nominal.to_string());

    s.add(manual("fails", sh("echo oops >&2; exit 3"), None))
        .await
        .expect("add");
    let run = run_once(&s, "fails").await;
    assert_eq!((run.state, run.exit_code), (RunState::Failed, Some(3)));
    assert_eq!(run.output.trim(), "oops");

    // A command that hangs, with a child of its own: both go at the timeout.
    s.add(manual(
        "hangs",
        sh("sleep 600 & echo $!; wait"),
        Some(Duration::from_millis(500)),
    ))
    .await
    .expect("add");
    let run = run_once(&s, "hangs").await;
    assert_eq!(run.state, RunState::TimedOut);
    let child: i32 = run.output.trim().parse().expect("the child's pid");
    let gone = async {
        while std::path::Path::new(&format!("/proc/{child}")).exists() {
            // A zombie of an exited group is reaped by init; check its state too.
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
            if stat.split_whitespace().nth(2) == Some("Z") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), gone)
        .await
        .expect("the child was killed with its group");
    assert_eq!(s.metrics().runs_timed_out, 1);
    s.shutdown(Duration::from_secs(5)).await;
}

type Seen = Arc<Mutex<Vec<(String, String, BTreeMap<String, String>, String)>>>;

/// Serves: `/ok` 200 "fine", `/teapot` 418, `/slow` after 30 s; records requests.
async fn server() -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let log = log.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let head_end = loop {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        break i + 4;
                    }
                };
                let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                let mut lines = head.lines();
                let first: Vec<String> = lines
                    .next()
                    .unwrap_or_default()
                    .split(' ')
                    .map(str::to_owned)
                    .collect();
                let headers: BTreeMap<String, String> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                    .collect();
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                while buf.len() < head_end + len {
                    let n = sock.read(&mut chunk).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let body = String::from_utf8_lossy(&buf[head_end..]).into_owned();
                let (method, path) = (first[0].clone(), first.get(1).cloned().unwrap_or_default());
                log.lock()
                    .expect("lock")
                    .push((method, path.clone(), headers, body));
                let (status, text) = match path.as_str() {
                    "/ok" => ("200 OK", "fine"),
                    "/teapot" => ("418 I'm a teapot", "short and stout"),
                    _ => {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                        ("200 OK", "late")
                    }
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                    text.len()
                );
                let _ = sock.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://{addr}"), seen)
}

fn http(method: &str, url: String, expect: Vec<u16>, body: Option<&str>) -> ActionSpec {
    ActionSpec::Http(HttpSpec {
        method: method.into(),
        url,
        headers: BTreeMap::from([("x-team".to_owned(), "ops".to_owned())]),
        body: body.map(str::to_owned),
        expect_status: expect,
    })
}

#[tokio::test]
async fn http_jobs_check_the_status_and_time_out() {
    let (base, seen) = server().await;
    let s = Scheduler::builder().node_id("n-http").build();
    s.start().await.expect("start");
    s.add(manual(
        "ok",
        http("GET", format!("{base}/ok"), vec![], None),
        None,
    ))
    .await
    .expect("add");
    let run = run_once(&s, "ok").await;
    assert_eq!(
        (run.state, run.http_status),
        (RunState::Succeeded, Some(200))
    );
    assert_eq!(run.output, "fine");
    {
        let seen = seen.lock().expect("lock");
        let (method, path, headers, _) = &seen[0];
        assert_eq!((method.as_str(), path.as_str()), ("GET", "/ok"));
        assert_eq!(headers.get("x-team").map(String::as_str), Some("ops"));
        assert_eq!(
            headers.get("x-sundial-job-id").map(String::as_str),
            Some("ok")
        );
        assert_eq!(
            headers.get("x-sundial-run-id"),
            Some(&run.run_id.to_string())
        );
    }
    s.add(manual(
        "tea",
        http(
            "POST",
            format!("{base}/teapot"),
            vec![418],
            Some("{\"brew\":1}"),
        ),
        None,
    ))
    .await
    .expect("add");
    let run = run_once(&s, "tea").await;
    assert_eq!(
        (run.state, run.http_status),
        (RunState::Succeeded, Some(418))
    );
    assert_eq!(seen.lock().expect("lock")[1].3, "{\"brew\":1}");

    s.add(manual(
        "picky",
        http("GET", format!("{base}/ok"), vec![201], None),
        None,
    ))
    .await
    .expect("add");
    let run = run_once(&s, "picky").await;
    assert_eq!((run.state, run.http_status), (RunState::Failed, Some(200)));
    assert_eq!(run.error.as_deref(), Some("unexpected HTTP status 200"));

    s.add(manual(
        "slow",
        http("GET", format!("{base}/slow"), vec![], None),
        Some(Duration::from_millis(300)),
    ))
    .await
    .expect("add");
    let run = run_once(&s, "slow").await;
    assert_eq!((run.state, run.http_status), (RunState::TimedOut, None));

    s.add(manual(
        "refused",
        http("GET", "http://127.0.0.1:9/".into(), vec![], None),
        None,
    ))
    .await
    .expect("add");
    let run = run_once(&s, "refused").await;
    assert_eq!(run.state, RunState::Failed);
    assert!(
        run.error.as_deref().unwrap_or("").contains("127.0.0.1:9"),
        "{run:?}"
    );
    s.shutdown(Duration::from_secs(1)).await;
}
