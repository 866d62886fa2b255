//! Differential test against Python's `cronsim` (tested against Debian cron).
//!
//! Thousands of random expressions from the subset where both implementations define
//! the same semantics are evaluated by both, and the first fire times must agree.
//!
//! The common subset (documented in docs/cron.md):
//! - 5-field expressions in UTC, America/New_York and Europe/Berlin (whole-hour DST
//!   shifts; cronsim steps hours by 3600 s, which does not model 30-minute shifts), and
//!   6-field expressions (seconds first) in UTC only — cronsim deliberately applies the
//!   Debian DST rules to 5-field expressions only, while sundial applies them to all;
//! - values, names, lists, ranges, `*/n`, `a-b/n`, `a/n`, `L` and `LW` in day-of-month,
//!   `nL` and `n#k` in day-of-week; no `?`, `L-n`, `nW`, `H`, years or aliases (cronsim
//!   lacks them); no one-value range with a step (`5-5/2`): cronsim reads it as `5/2`
//!   (5 to the maximum), sundial as the range it is (just 5);
//! - start instants at noon UTC (never inside a repeated hour: from the second copy of
//!   a fold cronsim restarts its naive wall-clock walk and can return a time before the
//!   start);
//! - expressions cronsim rejects as never firing are skipped; where cronsim gives up
//!   (it stops after 50 years without a match) sundial must find nothing in those 50
//!   years either.
//!
//! Needs `python3` with `pip install cronsim`. Without them the test is skipped, unless
//! the `CI` environment variable is set, in which case it fails.

use std::io::Write;
use std::process::{Command, Stdio};

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sundial_cron::Schedule;

const SCRIPT: &str = r#"
import sys
from datetime import datetime, timezone
from zoneinfo import ZoneInfo
from cronsim import CronSim, CronSimError
for line in sys.stdin:
    expr, zone, start, n = line.rstrip("\n").split("\t")
    tz = timezone.utc if zone == "UTC" else ZoneInfo(zone)
    dt = datetime.fromisoformat(start).astimezone(tz)
    out = []
    try:
        it = CronSim(expr, dt)
        for _ in range(int(n)):
            out.append(next(it).isoformat())
    except CronSimError:
        out = ["ERR"]
    except StopIteration:
        out.append("STOP")
    print(" ".join(out), flush=True)
"#;

const CASES: usize = 3000;
const FIRES: usize = 5;

/// SplitMix64: a tiny deterministic generator, so failures are reproducible.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u32) -> u32 {
        (self.next() % u64::from(n)) as u32
    }

    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(hi - lo + 1)
    }
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const DAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

fn value(r: &mut Rng, lo: u32, hi: u32, names: &[&str]) -> String {
    let v = r.range(lo, hi);
    let first = if names.len() == 12 { 1 } else { 0 };
    match names.get((v - first) as usize) {
        Some(name) if r.below(3) == 0 => (*name).to_owned(),
        _ => v.to_string(),
    }
}

fn item(r: &mut Rng, lo: u32, hi: u32, names: &[&str]) -> String {
    match r.below(7) {
        0 | 1 => value(r, lo, hi, names),
        2 => {
            let (a, b) = (r.range(lo, hi), r.range(lo, hi));
            format!("{}-{}", a.min(b), a.max(b))
        }
        3 => {
            // Never `a-a/n`: cronsim reads a one-value range with a step as `a/n`.
            let a = r.range(lo, hi - 1);
            let b = r.range(a + 1, hi);
            format!("{a}-{b}/{}", r.range(1, 10))
        }
        4 => format!("{}/{}", r.range(lo, hi), r.range(1, 15)),
        _ => format!("{},{}", value(r, lo, hi, names), value(r, lo, hi, names)),
    }
}

fn field(r: &mut Rng, lo: u32, hi: u32, names: &[&str]) -> String {
    match r.below(10) {
        0..=2 => "*".to_owned(),
        3 => format!("*/{}", r.range(1, hi.max(2))),
        _ => item(r, lo, hi, names),
    }
}

fn expression(r: &mut Rng, six: bool) -> String {
    let seconds = if six {
        format!("{} ", field(r, 0, 59, &[]))
    } else {
        String::new()
    };
    let minute = field(r, 0, 59, &[]);
    let hour = field(r, 0, 23, &[]);
    let dom = match r.below(12) {
        0 => "L".to_owned(),
        1 => "LW".to_owned(),
        _ => field(r, 1, 31, &[]),
    };
    let month = field(r, 1, 12, &MONTHS);
    let dow = match r.below(12) {
        0 => format!("{}L", r.range(0, 7)),
        1 => format!("{}#{}", r.range(0, 7), r.range(1, 5)),
        _ => field(r, 0, 7, &DAYS),
    };
    format!("{seconds}{minute} {hour} {dom} {month} {dow}")
}

fn start(r: &mut Rng) -> String {
    let year = r.range(1971, 2037);
    // Bias towards months with DST transitions.
    let month = match r.below(3) {
        0 => [3, 4, 10, 11][r.below(4) as usize],
        _ => r.range(1, 12),
    };
    format!("{year}-{month:02}-{:02}T12:00:00+00:00", r.range(1, 28))
}

fn python_available() -> bool {
    Command::new("python3")
        .args(["-c", "import cronsim"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn agrees_with_cronsim() {
    if !python_available() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI is set but python3 with cronsim is missing: run `pip install cronsim`"
        );
        eprintln!("skipping: python3 with cronsim not found (pip install cronsim)");
        return;
    }
    let mut rng = Rng(0x5eed_c0de);
    let zones = ["UTC", "America/New_York", "Europe/Berlin"];
    let cases: Vec<(String, &str, String)> = (0..CASES)
        .map(|i| {
            let six = i % 5 == 4;
            let zone = if six {
                "UTC"
            } else {
                zones[rng.below(3) as usize]
            };
            (expression(&mut rng, six), zone, start(&mut rng))
        })
        .collect();
    let input: String = cases
        .iter()
        .map(|(e, z, s)| format!("{e}\t{z}\t{s}\t{FIRES}\n"))
        .collect();
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut stdin = child.stdin.take().expect("stdin");
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("python3 runs");
    writer
        .join()
        .expect("writer thread")
        .expect("write to python3");
    assert!(output.status.success(), "cronsim script failed");
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), cases.len());

    let mut compared = 0;
    let mut mismatches = Vec::new();
    for ((expr, zone, from), line) in cases.iter().zip(&lines) {
        if *line == "ERR" {
            continue;
        }
        let schedule = Schedule::parse(expr)
            .unwrap_or_else(|e| panic!("cronsim accepts `{expr}` but sundial does not:\n{e}"));
        let tz = TimeZone::get(zone).expect("zone");
        let t0: Timestamp = from.parse().expect("start");
        let ours: Vec<String> = schedule
            .iter_after(t0, &tz)
            .take(FIRES)
            .map(|t| {
                t.to_zoned_datetime(tz.clone())
                    .strftime("%Y-%m-%dT%H:%M:%S%:z")
                    .to_string()
            })
            .collect();
        let theirs: Vec<&str> = line.split(' ').filter(|s| !s.is_empty()).collect();
        let (theirs, stopped) = match theirs.split_last() {
            Some((&"STOP", init)) => (init.to_vec(), true),
            _ => (theirs, false),
        };
        let agree = if stopped {
            // cronsim gave up 50 years after its last result; we may only have found
            // fires after that horizon.
            ours.len() >= theirs.len()
                && ours.iter().zip(&theirs).all(|(a, b)| a == b)
                && ours.get(theirs.len()).is_none_or(|extra| {
                    let year: i32 = extra[..4].parse().unwrap_or(0);
                    let base: i32 = theirs
                        .last()
                        .map_or(&from[..4], |l| &l[..4])
                        .parse()
                        .unwrap_or(0);
                    year > base + 49
                })
        } else {
            ours.iter().map(String::as_str).eq(theirs.iter().copied())
        };
        compared += 1;
        if !agree {
            mismatches.push(format!(
                "`{expr}` in {zone} from {from}:\n  sundial: {ours:?}\n  cronsim: {theirs:?}{}",
                if stopped { " (gave up)" } else { "" }
            ));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} of {compared} disagree:\n{}",
        mismatches.len(),
        mismatches
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    assert!(compared > CASES * 8 / 10, "only {compared} cases compared");
}
