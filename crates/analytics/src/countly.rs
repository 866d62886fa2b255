//! The Countly SDK protocol: what Countly's SDKs (web, Node.js, iOS, Android, Flutter, …)
//! send to `/i`, `/i/bulk` and `/o/sdk`, decoded into our [`Event`]s, and the answers that
//! keep those SDKs happy.
//!
//! This module is pure: no HTTP framework, no clock, no store. The server hands it the
//! request as received ([`CountlyRequest`]: endpoint, method, raw query string, raw body,
//! `Content-Type`) and the server's clock; [`decode`] gives back, per Countly request, the
//! app key, the device and the validated events, plus every part that was dropped or
//! altered ([`CountlyRejection`]) and the JSON body to answer with.
//!
//! # Ground rules
//!
//! - **Never an error status for content.** Countly SDKs keep a request in their queue and
//!   resend it until the server answers 2xx with a JSON object whose `result` is truthy.
//!   Anything else (4xx, 5xx, a body that is not such an object) makes them retry forever
//!   and block the queue behind it. So every answer built here is meant to be sent with
//!   HTTP 200 ([`REPLY_STATUS`]), including for requests that were deliberately dropped,
//!   which say why in `info` (as the Countly server itself does:
//!   `{"result":"Success","info":"Request ignored: …"}`).
//! - **Parameters come from the query string and the body**; on a name given in both, the
//!   body wins (the Countly server does the same). Form bodies, JSON bodies and bodies
//!   without a `Content-Type` are read; the value of a parameter such as `metrics` or
//!   `events` may be a JSON-encoded string (what the SDKs send) or, in a JSON body, the
//!   JSON value itself.
//! - **Same validation as the native contract** ([`crate::ingest`]): ids and names at most
//!   [`MAX_ID_BYTES`], durations in `[0, 86400]`, timestamps older than
//!   [`Limits::max_age`] rejected, more than [`Limits::max_future`] ahead clamped to `now`,
//!   at most [`Limits::max_events`] events per HTTP request (the rest dropped and
//!   reported). Every [`Event`] produced here satisfies the invariants of
//!   [`crate::event`].
//! - **Lenient where Countly SDKs legitimately differ from our limits**: a segment value
//!   that is too long is truncated, a segment of an unsupported type or beyond
//!   [`MAX_SEGMENTS`] is dropped, unreadable `metrics` lose only the dimensions. The event
//!   itself is kept; the alteration is reported with `dropped: false`.
//!
//! # Mapping
//!
//! - `begin_session=1` → [`EventKind::OpenApp`] at the request's `timestamp`.
//! - `session_duration=N` without `end_session` → [`EventKind::UsageTime`] with
//!   `ends_session: false`; `end_session=1` (with its `session_duration`, 0 when absent) →
//!   `UsageTime` with `ends_session: true`. Both at the request's `timestamp`.
//! - `events=[…]` → [`EventKind::Custom`] each at its own `timestamp` (falling back to the
//!   request's): `key` → name, `count`, `sum`, `dur` → `dur_secs`, `segmentation` →
//!   segments, `id` → `event_id` (de-duplication of retries).
//! - `metrics` (`_os` → platform, normalised; `_os_version`; `_app_version`, else `av`;
//!   `_device` → device model; `_locale`; `_store` → channel) and `country_code` → the
//!   dimensions of every event of that request.
//! - `old_device_id` → [`DecodedRequest::old_device_id`]: the device changed its id and
//!   asked for its history to be merged into the new one; the aggregator may alias the two.
//!   The request's own events belong to the new `device_id`.
//! - A request without `timestamp` is dated `now`. Timestamps are epoch milliseconds, or
//!   seconds when below 10^11 (the bulk SDK accepts both).
//! - Resends: an SDK resends a request until it gets a success, so the same request may
//!   arrive twice. Every event of a request with a `timestamp` gets an `event_id` derived
//!   from the request's content (`cly-<digest>-o` for the launch, `-u` for the usage
//!   report, `-e<i>` for the i-th custom event without its own `id`), so the native
//!   de-duplication counts a resent request once — as the Countly server's
//!   duplicate-request check does.
//!
//! Within one request the events come out in this order: the launch, the custom events,
//! then the usage report, so that a request that both begins and ends a session reads in
//! the order it happened.
//!
//! # How the server uses it
//!
//! 1. [`Endpoint::from_path`], then [`decode`] with the request as received.
//! 2. Look up the app of [`CountlyOutcome::app_key`] (and of each
//!    [`DecodedRequest::app_key`] when a bulk mixes apps). Unknown → answer
//!    [`CountlyOutcome::ignored_reply`].
//! 3. If the app has a salt: [`CountlyRequest::verify_checksum`]; unless
//!    [`ChecksumVerdict::Valid`], answer `ignored_reply(verdict.reason())`.
//! 4. Make the events durable, then answer [`CountlyOutcome::reply`] with
//!    [`REPLY_STATUS`]. Only a failure to make them durable deserves an error status
//!    (503): then nothing was acknowledged and the SDK's resend is what is wanted.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use jiff::Timestamp;
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::event::{
    Dimensions, Event, EventKind, MAX_DURATION_SECS, MAX_ID_BYTES, MAX_SEGMENT_VALUE_BYTES,
    MAX_SEGMENTS,
};
use crate::ingest::{Limits, kind_of};

/// The HTTP status every Countly answer is sent with.
pub const REPLY_STATUS: u16 = 200;

/// The `info` of an answer is cut to about this many bytes.
const MAX_INFO_BYTES: usize = 512;

/// Most rejections listed in an answer's `info` (all of them are in the outcome).
const MAX_INFO_ITEMS: usize = 3;

/// Largest custom-event count accepted (as in the native contract).
const MAX_COUNT: u32 = 1_000_000;

/// Largest absolute `sum` accepted (as in the native contract).
const MAX_SUM: f64 = 1e15;

/// Timestamps below this are taken as epoch seconds, above as milliseconds (10^11 ms is
/// March 1973, 10^11 s is the year 5138).
const SECONDS_BELOW: f64 = 1e11;

/// The Countly endpoints Sundial serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/i`: one write request.
    Write,
    /// `/i/bulk`: many write requests in one `requests` parameter.
    Bulk,
    /// `/o/sdk`: the SDK's read API (server configuration, remote config, …).
    Sdk,
}

impl Endpoint {
    /// The endpoint served at `path` (a trailing slash is allowed), if any.
    pub fn from_path(path: &str) -> Option<Self> {
        let trimmed = path.strip_suffix('/').unwrap_or(path);
        match trimmed {
            "/i" => Some(Self::Write),
            "/i/bulk" => Some(Self::Bulk),
            "/o/sdk" => Some(Self::Sdk),
            _ => None,
        }
    }

    /// The path of the endpoint.
    pub fn path(self) -> &'static str {
        match self {
            Self::Write => "/i",
            Self::Bulk => "/i/bulk",
            Self::Sdk => "/o/sdk",
        }
    }
}

/// The HTTP method, as far as the protocol cares: only a POST's body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// GET (and anything else that carries no body worth reading).
    Get,
    /// POST: the body holds parameters too.
    Post,
}

/// One HTTP request to a Countly endpoint, as received.
#[derive(Debug, Clone, Copy)]
pub struct CountlyRequest<'a> {
    /// Which endpoint was called.
    pub endpoint: Endpoint,
    /// The HTTP method.
    pub method: Method,
    /// The raw query string, without the `?` (empty when there is none).
    pub query: &'a str,
    /// The raw body bytes (after any `Content-Encoding` was undone).
    pub body: &'a [u8],
    /// The `Content-Type` header, if any.
    pub content_type: Option<&'a str>,
}

impl CountlyRequest<'_> {
    /// Checks this request's `checksum256` against the app's salt; see
    /// [`verify_checksum`].
    pub fn verify_checksum(&self, salt: &str) -> ChecksumVerdict {
        let body = match self.method {
            Method::Post => self.body,
            Method::Get => &[],
        };
        verify_checksum(self.query, body, self.content_type, salt)
    }
}

/// A part of a request that was dropped, or not taken exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CountlyRejection {
    /// The Countly request's position in `/i/bulk`'s `requests` (0 for `/i`); `None` when
    /// the fault is in the HTTP request as a whole (an unreadable body, no `requests`).
    pub request: Option<usize>,
    /// The event's position in that request's `events`, when the fault is in one.
    pub event: Option<usize>,
    /// The parameter or field at fault (`device_id`, `metrics`, `events[2].count`, …).
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
    /// True when data was discarded (a request, an event, a usage report); false when the
    /// data was kept but altered or part of it ignored (a truncated segment value, a
    /// dimension left out, the server's clock used for an unreadable timestamp).
    pub dropped: bool,
}

impl fmt::Display for CountlyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(request) = self.request {
            write!(f, "request {request}: ")?;
        }
        write!(f, "`{}` {}", self.field, self.reason)
    }
}

/// One Countly request, decoded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// Its position in `/i/bulk`'s `requests` (0 for `/i`).
    pub index: usize,
    /// The app key it was sent with (checked by the caller).
    pub app_key: String,
    /// The device it speaks for; every event in [`Self::events`] carries it.
    pub device_id: String,
    /// The device's previous id when the SDK changed ids with merging (`old_device_id`):
    /// the history of `old_device_id` belongs to `device_id` from now on.
    pub old_device_id: Option<String>,
    /// Valid events, in the order described in the module docs.
    pub events: Vec<Event>,
    /// `sdk_name`, for logs (e.g. `javascript_native_web`).
    pub sdk_name: Option<String>,
    /// `sdk_version`, for logs.
    pub sdk_version: Option<String>,
    /// Countly features present in the request that Sundial does not record (`crash`,
    /// `user_details`, …); see [`IGNORED_PARAMS`].
    pub ignored: BTreeSet<&'static str>,
}

/// Countly parameters that are understood but not recorded, with the feature they carry.
pub const IGNORED_PARAMS: &[(&str, &str)] = &[
    ("user_details", "user_details"),
    ("crash", "crash"),
    ("apm", "apm"),
    ("consent", "consent"),
    ("campaign_id", "attribution"),
    ("attribution_data", "attribution"),
    ("aid", "attribution"),
    ("location", "location"),
    ("city", "location"),
    ("ip_address", "location"),
    ("token_session", "push"),
    ("feedback", "feedback"),
];

/// Everything decoded from one HTTP request.
#[derive(Debug, Clone, PartialEq)]
pub struct CountlyOutcome {
    /// The endpoint that was called.
    pub endpoint: Endpoint,
    /// The app key of the HTTP request as a whole: the `app_key` parameter (for `/i/bulk`
    /// the outer one, which is the default of the inner requests). Use it to look up the
    /// salt for [`CountlyRequest::verify_checksum`].
    pub app_key: Option<String>,
    /// `/o/sdk`'s `method` parameter.
    pub sdk_method: Option<String>,
    /// The decoded Countly requests (`/i`: at most one; `/i/bulk`: one per readable entry;
    /// `/o/sdk`: none — reads record nothing).
    pub requests: Vec<DecodedRequest>,
    /// Everything dropped or altered, in the order found.
    pub rejections: Vec<CountlyRejection>,
    /// How many accepted events had a future timestamp clamped to `now`.
    pub clamped: usize,
    /// The JSON body to answer with, with HTTP [`REPLY_STATUS`].
    pub reply: String,
}

impl CountlyOutcome {
    /// The number of accepted events.
    pub fn accepted(&self) -> usize {
        self.requests.iter().map(|r| r.events.len()).sum()
    }

    /// Every accepted event with the app key it belongs to.
    pub fn events(&self) -> impl Iterator<Item = (&str, &Event)> {
        self.requests
            .iter()
            .flat_map(|r| r.events.iter().map(move |e| (r.app_key.as_str(), e)))
    }

    /// The answer to send instead of [`Self::reply`] when the server drops the whole
    /// request after decoding it (unknown app key, bad checksum, app paused, …): still a
    /// success for the SDK, with `reason` in `info`.
    pub fn ignored_reply(&self, reason: &str) -> String {
        match self.endpoint {
            Endpoint::Sdk => sdk_reply(self.sdk_method.as_deref()),
            Endpoint::Write | Endpoint::Bulk => {
                success_reply(Some(&format!("Request ignored: {reason}")))
            }
        }
    }
}

/// The answer to a write request: `{"result":"Success"}`, with `info` when given.
pub fn success_reply(info: Option<&str>) -> String {
    let mut object = Map::new();
    object.insert("result".into(), Value::String("Success".into()));
    if let Some(info) = info {
        object.insert("info".into(), Value::String(cut(info, MAX_INFO_BYTES)));
    }
    Value::Object(object).to_string()
}

/// The answer to `/o/sdk?method=…`.
///
/// - `sc` (server configuration), `rc` and `fetch_remote_config` (remote config): `{}`,
///   a valid empty configuration (the SDKs accept any JSON object there and keep their
///   defaults when it has no keys).
/// - `feedback` (list of feedback widgets): `{"result":[]}`, no widgets.
/// - anything else: `{"result":"Success","info":…}` saying it is not served.
pub fn sdk_reply(method: Option<&str>) -> String {
    match method {
        Some("sc" | "rc" | "fetch_remote_config") => "{}".to_owned(),
        Some("feedback") => r#"{"result":[]}"#.to_owned(),
        Some(other) => success_reply(Some(&format!(
            "method `{}` is not served by Sundial",
            cut(other, MAX_ID_BYTES)
        ))),
        None => success_reply(Some("no method given")),
    }
}

/// The verdict on a request's `checksum256`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChecksumVerdict {
    /// The checksum matches.
    Valid,
    /// A checksum was sent and does not match (or is not 64 hex digits).
    Mismatch,
    /// No `checksum256` was sent.
    Missing,
}

impl ChecksumVerdict {
    /// True for [`ChecksumVerdict::Valid`].
    pub fn is_valid(self) -> bool {
        self == Self::Valid
    }

    /// Why a request with this verdict is dropped (for `info`), if it is.
    pub fn reason(self) -> Option<&'static str> {
        match self {
            Self::Valid => None,
            Self::Mismatch => Some("request does not match checksum"),
            Self::Missing => Some("request does not have checksum"),
        }
    }
}

/// Checks `checksum256` the way the SDKs compute it: the SDK builds the parameter string
/// (`a=1&b=2`, values URI-encoded), takes `SHA-256(string + salt)` in hex (upper case in
/// the web SDK, lower case in the Node.js SDK) and appends `&checksum256=…`. That string
/// is then sent as the query string (GET) or the form body (POST).
///
/// So the payload is the raw query string, or the raw form body, with its
/// `checksum256=…` pair taken out; the request is valid when either matches the
/// checksum (compared without regard to case). A JSON body cannot contain its own
/// checksum: its raw bytes are the payload and the checksum comes in the query string.
/// Call it with an empty `body` for GET. Pure and constant-time in the digest comparison.
pub fn verify_checksum(
    query: &str,
    body: &[u8],
    content_type: Option<&str>,
    salt: &str,
) -> ChecksumVerdict {
    let body_kind = body_kind(body, content_type);
    let mut claimed = find_pair(query.as_bytes(), b"checksum256");
    let body_payload: Option<Vec<u8>> = match body_kind {
        BodyKind::Empty | BodyKind::Multipart => None,
        BodyKind::Form => {
            if let Some(found) = find_pair(body, b"checksum256") {
                claimed = Some(found);
            }
            Some(without_pair(body, b"checksum256"))
        }
        BodyKind::Json => {
            if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body)
                && let Some(Value::String(found)) = map.get("checksum256")
            {
                claimed = Some(found.clone());
            }
            Some(body.to_vec())
        }
    };
    let Some(claimed) = claimed else {
        return ChecksumVerdict::Missing;
    };
    let Some(expected) = decode_hex32(claimed.trim()) else {
        return ChecksumVerdict::Mismatch;
    };
    let query_payload = without_pair(query.as_bytes(), b"checksum256");
    let candidates = std::iter::once(query_payload).chain(body_payload);
    let mut valid = false;
    for payload in candidates {
        let mut hasher = Sha256::new();
        hasher.update(&payload);
        hasher.update(salt.as_bytes());
        let digest: [u8; 32] = hasher.finalize().into();
        valid |= constant_time_eq(&digest, &expected);
    }
    if valid {
        ChecksumVerdict::Valid
    } else {
        ChecksumVerdict::Mismatch
    }
}

/// The decoded value of the last `name=value` pair of a form-encoded string.
fn find_pair(raw: &[u8], name: &[u8]) -> Option<String> {
    raw.rsplit(|&b| b == b'&')
        .find(|segment| key_is(segment, name))
        .and_then(|segment| form_urlencoded::parse(segment).next())
        .map(|(_, value)| value.into_owned())
}

/// `raw` with every `name=…` pair removed, the other pairs joined by `&` as they were.
fn without_pair(raw: &[u8], name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut first = true;
    for segment in raw.split(|&b| b == b'&').filter(|s| !key_is(s, name)) {
        if !first {
            out.push(b'&');
        }
        out.extend_from_slice(segment);
        first = false;
    }
    out
}

/// Whether the `key=value` segment's key is `name` (decoded only when it is encoded).
fn key_is(segment: &[u8], name: &[u8]) -> bool {
    let key = segment.split(|&b| b == b'=').next().unwrap_or(segment);
    if key == name {
        return true;
    }
    key.iter().any(|&b| b == b'%' || b == b'+')
        && form_urlencoded::parse(key)
            .next()
            .is_some_and(|(k, _)| k.as_bytes() == name)
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0_u8; 32];
    for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let high = hex_digit(pair[0])?;
        let low = hex_digit(pair[1])?;
        *slot = (high << 4) | low;
    }
    Some(out)
}

fn hex_digit(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// How a body is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Empty,
    Form,
    Json,
    Multipart,
}

/// JSON when declared so, form when declared so, multipart (not read) when declared so;
/// otherwise (no or another `Content-Type`, e.g. `text/plain` from `sendBeacon`) JSON
/// when the body starts with `{`, else form.
fn body_kind(body: &[u8], content_type: Option<&str>) -> BodyKind {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let Some(&first) = first else {
        return BodyKind::Empty;
    };
    let declared = content_type
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if declared.contains("json") {
        BodyKind::Json
    } else if declared.contains("x-www-form-urlencoded") {
        BodyKind::Form
    } else if declared.contains("multipart/") {
        BodyKind::Multipart
    } else if first == b'{' {
        BodyKind::Json
    } else {
        BodyKind::Form
    }
}

type Params = BTreeMap<String, Value>;

/// Reads the query string and (for POST) the body into one parameter map, the body
/// winning on names given in both. Faults in the body are reported and the body skipped.
fn read_params(request: &CountlyRequest<'_>, rejections: &mut Vec<CountlyRejection>) -> Params {
    let mut params = Params::new();
    read_form(request.query.as_bytes(), &mut params);
    if request.method == Method::Post {
        match body_kind(request.body, request.content_type) {
            BodyKind::Empty => {}
            BodyKind::Form => read_form(request.body, &mut params),
            BodyKind::Multipart => rejections.push(http_fault(
                "body",
                "multipart bodies are not read (only the query string was)",
                false,
            )),
            BodyKind::Json => match serde_json::from_slice::<Value>(request.body) {
                Ok(Value::Object(map)) => params.extend(map),
                Ok(other) => rejections.push(http_fault(
                    "body",
                    format!("must be a JSON object, found {}", kind_of(&other)),
                    false,
                )),
                Err(e) => rejections.push(http_fault(
                    "body",
                    format!("is not valid JSON ({e}); only the query string was read"),
                    false,
                )),
            },
        }
    }
    params
}

fn read_form(raw: &[u8], params: &mut Params) {
    for (key, value) in form_urlencoded::parse(raw) {
        params.insert(key.into_owned(), Value::String(value.into_owned()));
    }
}

fn http_fault(field: &str, reason: impl Into<String>, dropped: bool) -> CountlyRejection {
    CountlyRejection {
        request: None,
        event: None,
        field: field.to_owned(),
        reason: reason.into(),
        dropped,
    }
}

/// Decodes one HTTP request to a Countly endpoint. Never fails: whatever cannot be read
/// is reported in [`CountlyOutcome::rejections`] and the answer is still a success.
pub fn decode(request: &CountlyRequest<'_>, now: Timestamp, limits: &Limits) -> CountlyOutcome {
    let mut rejections = Vec::new();
    let params = read_params(request, &mut rejections);
    let app_key = params
        .get("app_key")
        .and_then(text)
        .filter(|k| !k.is_empty());
    let mut outcome = CountlyOutcome {
        endpoint: request.endpoint,
        app_key: app_key.filter(|k| k.len() <= MAX_ID_BYTES),
        sdk_method: None,
        requests: Vec::new(),
        rejections: Vec::new(),
        clamped: 0,
        reply: String::new(),
    };
    let mut budget = Budget {
        left: limits.max_events,
        max: limits.max_events,
    };
    match request.endpoint {
        Endpoint::Sdk => {
            outcome.sdk_method = params.get("method").and_then(text);
            outcome.reply = sdk_reply(outcome.sdk_method.as_deref());
            outcome.rejections = rejections;
            return outcome;
        }
        Endpoint::Write => {
            let mut ctx = Context {
                now,
                limits,
                rejections: &mut rejections,
                clamped: &mut outcome.clamped,
                budget: &mut budget,
            };
            if let Some(decoded) = decode_one(0, &params, None, &mut ctx) {
                outcome.requests.push(decoded);
            }
        }
        Endpoint::Bulk => {
            let outer_app_key = outcome.app_key.clone();
            decode_bulk(
                &params,
                outer_app_key.as_deref(),
                now,
                limits,
                &mut budget,
                &mut outcome,
                &mut rejections,
            );
        }
    }
    outcome.rejections = rejections;
    outcome.reply = write_reply(&outcome);
    outcome
}

fn decode_bulk(
    params: &Params,
    outer_app_key: Option<&str>,
    now: Timestamp,
    limits: &Limits,
    budget: &mut Budget,
    outcome: &mut CountlyOutcome,
    rejections: &mut Vec<CountlyRejection>,
) {
    let list = match params.get("requests").map(json_param) {
        None => {
            rejections.push(http_fault("requests", "is missing", true));
            return;
        }
        Some(Err(reason)) => {
            rejections.push(http_fault("requests", reason, true));
            return;
        }
        Some(Ok(Value::Array(list))) => list,
        Some(Ok(other)) => {
            rejections.push(http_fault(
                "requests",
                format!("must be a JSON array, found {}", kind_of(&other)),
                true,
            ));
            return;
        }
    };
    let total = list.len();
    for (index, entry) in list.into_iter().enumerate() {
        if index >= limits.max_events {
            rejections.push(http_fault(
                "requests",
                format!(
                    "holds {total} requests; those after the first {} were dropped",
                    limits.max_events
                ),
                true,
            ));
            break;
        }
        let inner = match entry {
            Value::Object(map) => map.into_iter().collect::<Params>(),
            Value::String(s) if s.trim_start().starts_with('{') => {
                match serde_json::from_str::<Value>(&s) {
                    Ok(Value::Object(map)) => map.into_iter().collect(),
                    _ => {
                        rejections.push(request_fault(
                            index,
                            "request",
                            "is a string that is not a JSON object",
                            true,
                        ));
                        continue;
                    }
                }
            }
            Value::String(s) => {
                let mut inner = Params::new();
                read_form(s.as_bytes(), &mut inner);
                inner
            }
            other => {
                rejections.push(request_fault(
                    index,
                    "request",
                    format!(
                        "must be an object or a query string, found {}",
                        kind_of(&other)
                    ),
                    true,
                ));
                continue;
            }
        };
        let mut ctx = Context {
            now,
            limits,
            rejections,
            clamped: &mut outcome.clamped,
            budget,
        };
        if let Some(decoded) = decode_one(index, &inner, outer_app_key, &mut ctx) {
            outcome.requests.push(decoded);
        }
    }
}

/// The events still allowed in this HTTP request.
#[derive(Debug)]
struct Budget {
    left: usize,
    max: usize,
}

/// What decoding one Countly request needs besides its parameters.
#[derive(Debug)]
struct Context<'a> {
    now: Timestamp,
    limits: &'a Limits,
    rejections: &'a mut Vec<CountlyRejection>,
    clamped: &'a mut usize,
    budget: &'a mut Budget,
}

fn request_fault(
    index: usize,
    field: &str,
    reason: impl Into<String>,
    dropped: bool,
) -> CountlyRejection {
    CountlyRejection {
        request: Some(index),
        event: None,
        field: field.to_owned(),
        reason: reason.into(),
        dropped,
    }
}

fn event_fault(
    index: usize,
    event: usize,
    field: &str,
    reason: impl Into<String>,
    dropped: bool,
) -> CountlyRejection {
    CountlyRejection {
        request: Some(index),
        event: Some(event),
        field: format!("events[{event}].{field}"),
        reason: reason.into(),
        dropped,
    }
}

/// Decodes one Countly request; `None` when it is dropped whole (the reason is recorded).
fn decode_one(
    index: usize,
    params: &Params,
    default_app_key: Option<&str>,
    ctx: &mut Context<'_>,
) -> Option<DecodedRequest> {
    let app_key = match params.get("app_key") {
        Some(value) => match required_id(value) {
            Ok(key) => key,
            Err(reason) => {
                ctx.rejections
                    .push(request_fault(index, "app_key", reason, true));
                return None;
            }
        },
        None => match default_app_key {
            Some(key) => key.to_owned(),
            None => {
                ctx.rejections
                    .push(request_fault(index, "app_key", "is missing", true));
                return None;
            }
        },
    };
    let device_id = match params.get("device_id").map(required_id) {
        Some(Ok(id)) => id,
        Some(Err(reason)) => {
            ctx.rejections
                .push(request_fault(index, "device_id", reason, true));
            return None;
        }
        None => {
            ctx.rejections
                .push(request_fault(index, "device_id", "is missing", true));
            return None;
        }
    };
    let old_device_id = match params.get("old_device_id").map(required_id) {
        None => None,
        Some(Ok(old)) if old == device_id => None,
        Some(Ok(old)) => Some(old),
        Some(Err(reason)) => {
            ctx.rejections.push(request_fault(
                index,
                "old_device_id",
                format!("{reason}; the device id change was ignored"),
                false,
            ));
            None
        }
    };

    // The request's own time: its events fall back to it.
    let request_ts = match params.get("timestamp") {
        None => ctx.now,
        Some(value) => match parse_timestamp(value) {
            Ok(ts) => ts,
            Err(reason) => {
                ctx.rejections.push(request_fault(
                    index,
                    "timestamp",
                    format!("{reason}; the server's clock was used"),
                    false,
                ));
                ctx.now
            }
        },
    };

    let dims = request_dimensions(index, params, ctx.rejections);
    let mut decoded = DecodedRequest {
        index,
        app_key,
        device_id,
        old_device_id,
        events: Vec::new(),
        sdk_name: params
            .get("sdk_name")
            .and_then(text)
            .map(|s| cut(&s, MAX_ID_BYTES)),
        sdk_version: params
            .get("sdk_version")
            .and_then(text)
            .map(|s| cut(&s, MAX_ID_BYTES)),
        ignored: IGNORED_PARAMS
            .iter()
            .filter(|(name, _)| params.contains_key(*name))
            .map(|(_, feature)| *feature)
            .collect(),
    };
    let digest = request_digest(params);
    let derived_id = |slot: &str| digest.as_ref().map(|d| format!("cly-{d}-{slot}"));
    // Candidates in output order: the launch, the custom events, the usage report.
    let mut candidates: Vec<Candidate> = Vec::new();
    if params.get("begin_session").is_some_and(flag) {
        candidates.push(Candidate {
            kind: EventKind::OpenApp,
            ts: request_ts,
            event_id: derived_id("o"),
            event_index: None,
        });
    }
    if let Some(value) = params.get("events") {
        let first = candidates.len();
        custom_events(index, value, request_ts, &mut candidates, ctx.rejections);
        for candidate in &mut candidates[first..] {
            if candidate.event_id.is_none() {
                let slot = format!("e{}", candidate.event_index.unwrap_or_default());
                candidate.event_id = derived_id(&slot);
            }
        }
    }
    let ends_session = params.get("end_session").is_some_and(flag);
    let reported = match params.get("session_duration") {
        None => None,
        Some(value) => match duration(value) {
            Ok(secs) => Some(secs),
            Err(reason) => {
                let reason = if ends_session {
                    format!("{reason}; the session was closed with 0 seconds")
                } else {
                    reason
                };
                ctx.rejections.push(request_fault(
                    index,
                    "session_duration",
                    reason,
                    !ends_session,
                ));
                None
            }
        },
    };
    if reported.is_some() || ends_session {
        candidates.push(Candidate {
            kind: EventKind::UsageTime {
                duration_secs: reported.unwrap_or(0.0),
                ends_session,
            },
            ts: request_ts,
            event_id: derived_id("u"),
            event_index: None,
        });
    }

    let mut over_limit = 0_usize;
    for candidate in candidates {
        let Candidate {
            kind,
            ts,
            event_id,
            event_index,
        } = candidate;
        if ctx.budget.left == 0 {
            over_limit += 1;
            continue;
        }
        let Some(ts) = judge_time(ts, ctx) else {
            let reason = too_old(ts, ctx.limits);
            ctx.rejections.push(match event_index {
                Some(e) => event_fault(index, e, "timestamp", reason, true),
                None => request_fault(
                    index,
                    "timestamp",
                    format!("{reason} ({} dropped)", kind.type_name()),
                    true,
                ),
            });
            continue;
        };
        ctx.budget.left -= 1;
        let incremental_session = matches!(kind, EventKind::OpenApp | EventKind::UsageTime { .. });
        decoded.events.push(Event {
            kind,
            ts_ms: ts.as_millisecond(),
            device_id: decoded.device_id.clone(),
            user_id: None,
            dims: dims.clone(),
            event_id,
            incremental_session,
        });
    }
    if over_limit > 0 {
        ctx.rejections.push(request_fault(
            index,
            "events",
            format!(
                "{over_limit} event{} over the limit of {} events per HTTP request were dropped",
                if over_limit == 1 { "" } else { "s" },
                ctx.budget.max
            ),
            true,
        ));
    }
    Some(decoded)
}

/// An event waiting for the window check and the budget.
#[derive(Debug)]
struct Candidate {
    kind: EventKind,
    ts: Timestamp,
    event_id: Option<String>,
    /// Its position in `events`, for custom events.
    event_index: Option<usize>,
}

/// Reads the `events` parameter into candidates, each at its own time (the request's
/// when it has none).
fn custom_events(
    index: usize,
    value: &Value,
    request_ts: Timestamp,
    candidates: &mut Vec<Candidate>,
    rejections: &mut Vec<CountlyRejection>,
) {
    let list = match json_param(value) {
        Ok(Value::Array(list)) => list,
        Ok(other) => {
            rejections.push(request_fault(
                index,
                "events",
                format!("must be a JSON array, found {}", kind_of(&other)),
                true,
            ));
            return;
        }
        Err(reason) => {
            rejections.push(request_fault(index, "events", reason, true));
            return;
        }
    };
    for (event_index, item) in list.into_iter().enumerate() {
        let Value::Object(fields) = item else {
            rejections.push(event_fault(
                index,
                event_index,
                "event",
                format!("must be a JSON object, found {}", kind_of(&item)),
                true,
            ));
            continue;
        };
        let (kind, event_id) = match custom_event(index, event_index, &fields, rejections) {
            Ok(read) => read,
            Err((field, reason)) => {
                rejections.push(event_fault(index, event_index, &field, reason, true));
                continue;
            }
        };
        let ts = match fields.get("timestamp") {
            None | Some(Value::Null) => request_ts,
            Some(value) => match parse_timestamp(value) {
                Ok(ts) => ts,
                Err(reason) => {
                    rejections.push(event_fault(
                        index,
                        event_index,
                        "timestamp",
                        format!("{reason}; the request's time was used"),
                        false,
                    ));
                    request_ts
                }
            },
        };
        candidates.push(Candidate {
            kind,
            ts,
            event_id,
            event_index: Some(event_index),
        });
    }
}

/// Parameters that change when an SDK resends the same request (as on the Countly
/// server, which leaves them out of its duplicate-request hash).
const VOLATILE_PARAMS: &[&str] = &["rr", "checksum", "checksum256"];

/// A digest of the request's content, the same for a resent request and different for
/// any other: SHA-256 over its parameters (sorted, without [`VOLATILE_PARAMS`]), first
/// 96 bits in hex. Only for requests with a `timestamp`: SDKs give every request its own
/// (the web and Node.js SDKs make them unique per millisecond), while a request without
/// one is dated by the server and two of them cannot be told apart from a resend.
fn request_digest(params: &Params) -> Option<String> {
    params.get("timestamp")?;
    let mut hasher = Sha256::new();
    for (name, value) in params {
        if VOLATILE_PARAMS.contains(&name.as_str()) {
            continue;
        }
        hasher.update(name.as_bytes());
        hasher.update(b"=");
        match value {
            Value::String(s) => hasher.update(s.as_bytes()),
            other => hasher.update(other.to_string().as_bytes()),
        }
        hasher.update(b"\n");
    }
    let digest: [u8; 32] = hasher.finalize().into();
    Some(digest[..12].iter().map(|b| format!("{b:02x}")).collect())
}

/// The timestamp after the window check: clamped when too far ahead, `None` when too old.
fn judge_time(ts: Timestamp, ctx: &mut Context<'_>) -> Option<Timestamp> {
    let age = ctx.now.duration_since(ts);
    if age > ctx.limits.max_age {
        return None;
    }
    if -age > ctx.limits.max_future {
        *ctx.clamped += 1;
        return Some(ctx.now);
    }
    Some(ts)
}

fn too_old(ts: Timestamp, limits: &Limits) -> String {
    format!(
        "{ts} is older than the accepted window of {} days",
        limits.max_age.as_secs() / 86_400
    )
}

type FieldFault = (String, String);

/// Reads one entry of `events`. Segments that do not fit are dropped or truncated (and
/// reported) rather than failing the event.
fn custom_event(
    index: usize,
    event_index: usize,
    fields: &Map<String, Value>,
    rejections: &mut Vec<CountlyRejection>,
) -> Result<(EventKind, Option<String>), FieldFault> {
    let name = match fields.get("key") {
        Some(value) => required_id(value).map_err(|r| ("key".to_owned(), r))?,
        None => return Err(("key".into(), "is missing".into())),
    };
    let count = match fields.get("count") {
        None | Some(Value::Null) => 1,
        Some(value) => match number(value) {
            Some(c) if c.fract() == 0.0 && (1.0..=f64::from(MAX_COUNT)).contains(&c) => c as u32,
            _ => {
                return Err((
                    "count".into(),
                    format!("must be a whole number from 1 to {MAX_COUNT}"),
                ));
            }
        },
    };
    let sum = match fields.get("sum") {
        None | Some(Value::Null) => 0.0,
        Some(value) => match number(value) {
            Some(s) if s.abs() <= MAX_SUM => s,
            _ => {
                return Err((
                    "sum".into(),
                    format!("must be a finite number of at most {MAX_SUM:e}"),
                ));
            }
        },
    };
    let dur_secs = match fields.get("dur") {
        None | Some(Value::Null) => 0.0,
        Some(value) => duration(value).map_err(|r| ("dur".to_owned(), r))?,
    };
    let event_id = match fields.get("id") {
        None | Some(Value::Null) => None,
        Some(value) => match required_id(value) {
            Ok(id) => Some(id),
            Err(reason) => {
                rejections.push(event_fault(
                    index,
                    event_index,
                    "id",
                    format!("{reason}; the event was kept without an id"),
                    false,
                ));
                None
            }
        },
    };
    let mut segments = BTreeMap::new();
    match fields.get("segmentation") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                let field = format!("segmentation.{key}");
                let mut note = |reason: String| {
                    rejections.push(event_fault(
                        index,
                        event_index,
                        &cut(&field, MAX_ID_BYTES + 16),
                        reason,
                        false,
                    ));
                };
                if key.is_empty() || key.len() > MAX_ID_BYTES {
                    note(format!(
                        "key must be 1 to {MAX_ID_BYTES} bytes; segment dropped"
                    ));
                    continue;
                }
                let mut value_text = match value {
                    Value::Null => continue,
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        note(format!(
                            "must be a string, number or boolean, found {}; segment dropped",
                            kind_of(other)
                        ));
                        continue;
                    }
                };
                if segments.len() == MAX_SEGMENTS {
                    note(format!(
                        "is beyond the first {MAX_SEGMENTS} segments; segment dropped"
                    ));
                    continue;
                }
                if value_text.len() > MAX_SEGMENT_VALUE_BYTES {
                    value_text = cut(&value_text, MAX_SEGMENT_VALUE_BYTES);
                    note(format!(
                        "is longer than {MAX_SEGMENT_VALUE_BYTES} bytes; value truncated"
                    ));
                }
                segments.insert(key.clone(), value_text);
            }
        }
        Some(other) => {
            rejections.push(event_fault(
                index,
                event_index,
                "segmentation",
                format!(
                    "must be an object, found {}; the event was kept without segments",
                    kind_of(other)
                ),
                false,
            ));
        }
    }
    Ok((
        EventKind::Custom {
            name,
            count,
            sum,
            dur_secs,
            segments,
        },
        event_id,
    ))
}

/// The dimensions of a request's events: from `metrics`, `av` and `country_code`.
fn request_dimensions(
    index: usize,
    params: &Params,
    rejections: &mut Vec<CountlyRejection>,
) -> Dimensions {
    let mut dims = Dimensions::default();
    let metrics = match params.get("metrics").map(json_param) {
        None => Map::new(),
        Some(Ok(Value::Object(map))) => map,
        Some(Ok(other)) => {
            rejections.push(request_fault(
                index,
                "metrics",
                format!(
                    "must be a JSON object, found {}; the events were kept without its dimensions",
                    kind_of(&other)
                ),
                false,
            ));
            Map::new()
        }
        Some(Err(reason)) => {
            rejections.push(request_fault(
                index,
                "metrics",
                format!("{reason}; the events were kept without its dimensions"),
                false,
            ));
            Map::new()
        }
    };
    let sources: [(&str, Option<&Value>, &mut Option<String>); 7] = [
        ("metrics._os", metrics.get("_os"), &mut dims.platform),
        (
            "metrics._os_version",
            metrics.get("_os_version"),
            &mut dims.os_version,
        ),
        (
            "metrics._app_version",
            metrics.get("_app_version").or_else(|| params.get("av")),
            &mut dims.app_version,
        ),
        (
            "metrics._device",
            metrics.get("_device"),
            &mut dims.device_model,
        ),
        ("metrics._locale", metrics.get("_locale"), &mut dims.locale),
        ("metrics._store", metrics.get("_store"), &mut dims.channel),
        (
            "country_code",
            params.get("country_code"),
            &mut dims.country,
        ),
    ];
    for (field, value, slot) in sources {
        let Some(value) = value else { continue };
        let Some(text) = text(value) else {
            rejections.push(request_fault(
                index,
                field,
                format!("must be a string, found {}; left out", kind_of(value)),
                false,
            ));
            continue;
        };
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        if text.len() > MAX_ID_BYTES {
            rejections.push(request_fault(
                index,
                field,
                format!(
                    "is {} bytes long, at most {MAX_ID_BYTES}; left out",
                    text.len()
                ),
                false,
            ));
            continue;
        }
        *slot = Some(text.to_owned());
    }
    dims.platform = dims.platform.as_deref().map(normalise_platform);
    dims.country = dims.country.map(|c| c.to_ascii_uppercase());
    dims
}

/// Countly's `_os` as one of our platform names: `ios`, `android`, `macos`, `windows`,
/// `linux`, `chromeos`, `tvos`, `watchos`, `web`; any other value lower-cased.
pub fn normalise_platform(os: &str) -> String {
    let lower = os.trim().to_lowercase();
    let name = match lower.as_str() {
        "ios" | "iphone os" | "ipados" | "ipad os" => "ios",
        "android" => "android",
        "macos" | "mac os" | "mac os x" | "macosx" | "os x" | "osx" | "darwin" => "macos",
        "windows" | "windows_nt" | "win32" | "windows nt" => "windows",
        "linux" | "ubuntu" | "debian" => "linux",
        "chrome os" | "chromeos" | "chromium os" | "cros" => "chromeos",
        "tvos" | "apple tv" => "tvos",
        "watchos" => "watchos",
        "web" => "web",
        _ => return lower,
    };
    name.to_owned()
}

/// A parameter that carries JSON: a string holding it, or (in a JSON body) the value.
fn json_param(value: &Value) -> Result<Value, String> {
    match value {
        Value::String(s) => serde_json::from_str(s).map_err(|e| format!("is not valid JSON ({e})")),
        other => Ok(other.clone()),
    }
}

/// A number, or a string holding one; finite only.
fn number(value: &Value) -> Option<f64> {
    let n = match value {
        Value::Number(n) => n.as_f64()?,
        Value::String(s) => s.trim().parse::<f64>().ok()?,
        _ => return None,
    };
    n.is_finite().then_some(n)
}

/// A scalar as text.
fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A flag such as `begin_session=1`: true unless absent, empty, `0`, `false` or null.
fn flag(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !matches!(s.trim(), "" | "0" | "false"),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// An id or name: non-empty text of at most [`MAX_ID_BYTES`].
fn required_id(value: &Value) -> Result<String, String> {
    let Some(text) = text(value) else {
        return Err(format!("must be a string, found {}", kind_of(value)));
    };
    if text.is_empty() {
        Err("is empty".into())
    } else if text.len() > MAX_ID_BYTES {
        Err(format!(
            "is {} bytes long, at most {MAX_ID_BYTES}",
            text.len()
        ))
    } else {
        Ok(text)
    }
}

/// Seconds in `[0, 86400]`.
fn duration(value: &Value) -> Result<f64, String> {
    match number(value) {
        Some(d) if (0.0..=MAX_DURATION_SECS).contains(&d) => Ok(d),
        Some(_) => Err(format!(
            "must be a number of seconds from 0 to {MAX_DURATION_SECS}"
        )),
        None => Err(format!(
            "must be a number of seconds, found {}",
            describe(value)
        )),
    }
}

/// A Countly timestamp: epoch milliseconds, or seconds when below 10^11; a number or a
/// string holding one, fractions allowed.
fn parse_timestamp(value: &Value) -> Result<Timestamp, String> {
    let Some(n) = number(value) else {
        return Err(format!(
            "must be epoch milliseconds or seconds, found {}",
            describe(value)
        ));
    };
    let ms = if n.abs() < SECONDS_BELOW {
        n * 1000.0
    } else {
        n
    };
    let rounded = ms.round();
    if !(-8.2e15..=8.2e15).contains(&rounded) {
        return Err(format!("{n} is out of range"));
    }
    Timestamp::from_millisecond(rounded as i64).map_err(|_| format!("{n} is out of range"))
}

fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`{}`", cut(s, 32)),
        other => kind_of(other).to_owned(),
    }
}

/// `text` cut to at most `max` bytes at a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// The answer for `/i` and `/i/bulk`: success, with `info` when something was dropped or
/// altered.
fn write_reply(outcome: &CountlyOutcome) -> String {
    if outcome.rejections.is_empty() {
        return success_reply(None);
    }
    let accepted = outcome.accepted();
    let listed: Vec<String> = outcome
        .rejections
        .iter()
        .take(MAX_INFO_ITEMS)
        .map(ToString::to_string)
        .collect();
    let more = outcome.rejections.len().saturating_sub(MAX_INFO_ITEMS);
    let mut info = if accepted == 0 && outcome.rejections.iter().any(|r| r.dropped) {
        format!("Request ignored: {}", listed.join("; "))
    } else {
        format!(
            "accepted {accepted} event{}; {}",
            if accepted == 1 { "" } else { "s" },
            listed.join("; ")
        )
    };
    if more > 0 {
        info.push_str(&format!(" (and {more} more)"));
    }
    success_reply(Some(&info))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_from_paths() {
        assert_eq!(Endpoint::from_path("/i"), Some(Endpoint::Write));
        assert_eq!(Endpoint::from_path("/i/"), Some(Endpoint::Write));
        assert_eq!(Endpoint::from_path("/i/bulk"), Some(Endpoint::Bulk));
        assert_eq!(Endpoint::from_path("/o/sdk"), Some(Endpoint::Sdk));
        assert_eq!(Endpoint::from_path("/o"), None);
        assert_eq!(Endpoint::Bulk.path(), "/i/bulk");
    }

    #[test]
    fn pairs_are_removed_exactly() {
        assert_eq!(
            without_pair(b"a=1&checksum256=AB&b=2", b"checksum256"),
            b"a=1&b=2"
        );
        assert_eq!(without_pair(b"a=1&checksum256=AB", b"checksum256"), b"a=1");
        assert_eq!(without_pair(b"checksum256=AB", b"checksum256"), b"");
        assert_eq!(without_pair(b"a=%20&b", b"checksum256"), b"a=%20&b");
        assert_eq!(
            without_pair(b"&a=1&checksum256=AB", b"checksum256"),
            b"&a=1"
        );
        assert_eq!(
            without_pair(b"a=1&checksum%32%35%36=AB", b"checksum256"),
            b"a=1"
        );
        assert_eq!(
            without_pair(b"a=1&checksum2567=AB", b"checksum256"),
            b"a=1&checksum2567=AB"
        );
        assert_eq!(
            find_pair(b"checksum256=x&checksum256=%41b", b"checksum256").as_deref(),
            Some("Ab")
        );
        assert_eq!(
            find_pair(b"a=1&checksum256=ab", b"checksum256").as_deref(),
            Some("ab")
        );
    }

    #[test]
    fn hex_decoding() {
        let text = "00ff".repeat(16);
        let bytes = decode_hex32(&text).expect("64 digits");
        assert_eq!(bytes[0], 0);
        assert_eq!(bytes[1], 0xff);
        assert!(decode_hex32("abc").is_none());
        assert!(decode_hex32(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn flags_and_numbers() {
        assert!(flag(&Value::String("1".into())));
        assert!(flag(&serde_json::json!(1)));
        assert!(flag(&serde_json::json!(true)));
        assert!(!flag(&Value::String("0".into())));
        assert!(!flag(&Value::String(String::new())));
        assert!(!flag(&serde_json::json!(0)));
        assert_eq!(number(&Value::String(" 2.5 ".into())), Some(2.5));
        assert_eq!(number(&Value::String("NaN".into())), None);
        assert_eq!(number(&Value::String("inf".into())), None);
    }

    #[test]
    fn timestamps_in_seconds_or_milliseconds() {
        let ms = parse_timestamp(&serde_json::json!(1_732_406_400_123_i64)).expect("ms");
        assert_eq!(ms.as_millisecond(), 1_732_406_400_123);
        let secs = parse_timestamp(&Value::String("1732406400".into())).expect("s");
        assert_eq!(secs.as_millisecond(), 1_732_406_400_000);
        let fraction = parse_timestamp(&serde_json::json!(1_732_406_400.5)).expect("s");
        assert_eq!(fraction.as_millisecond(), 1_732_406_400_500);
        assert!(parse_timestamp(&Value::String("yesterday".into())).is_err());
        assert!(parse_timestamp(&serde_json::json!(1e300)).is_err());
    }

    #[test]
    fn platforms_are_normalised() {
        assert_eq!(normalise_platform("iOS"), "ios");
        assert_eq!(normalise_platform("Android"), "android");
        assert_eq!(normalise_platform("Mac OS X"), "macos");
        assert_eq!(normalise_platform("Windows_NT"), "windows");
        assert_eq!(normalise_platform("Darwin"), "macos");
        assert_eq!(normalise_platform("HarmonyOS"), "harmonyos");
    }

    #[test]
    fn cut_respects_characters() {
        assert_eq!(cut("héllo", 2), "h");
        assert_eq!(cut("héllo", 3), "hé");
        assert_eq!(cut("abc", 10), "abc");
    }

    #[test]
    fn replies_are_truthy_json_objects() {
        for reply in [
            success_reply(None),
            success_reply(Some("x \"quoted\"")),
            sdk_reply(Some("ab")),
            sdk_reply(None),
            sdk_reply(Some("feedback")),
        ] {
            let value: Value = serde_json::from_str(&reply).expect("JSON");
            assert!(value.is_object(), "{reply}");
            assert!(value.get("result").is_some_and(|r| !r.is_null()), "{reply}");
        }
        assert_eq!(sdk_reply(Some("sc")), "{}");
        assert_eq!(success_reply(None), r#"{"result":"Success"}"#);
    }
}
