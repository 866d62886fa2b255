//! Validation of the ingest contract (`POST /api/v1/ingest`, `/api/v1/open_app`,
//! `/api/v1/usage_time`): bytes in, valid [`Event`]s and per-event rejections out.
//!
//! The split is the contract's: an envelope that cannot be read (not JSON, not an object,
//! no usable `app_key`, no `events` array) is an [`EnvelopeError`] and nothing in it is
//! accepted; an envelope with too many events is [`EnvelopeError::TooManyEvents`]
//! (HTTP 413); otherwise every event is judged on its own and a bad one becomes a
//! [`Rejection`] naming its index, field and reason while the others are accepted. A bad
//! batch-level default (say a 200-byte `device_id`) rejects only the events that would
//! inherit it. Unknown envelope fields are ignored and reported in [`Batch::warnings`],
//! so that SDKs can add fields without losing data.
//!
//! Validation is pure: the server's clock is passed in, so the same input and `now`
//! always give the same outcome.

use std::collections::BTreeMap;
use std::fmt;

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;
use serde_json::{Map, Value};

use crate::event::{
    Dimensions, Event, EventKind, MAX_DURATION_SECS, MAX_ID_BYTES, MAX_SEGMENT_VALUE_BYTES,
    MAX_SEGMENTS,
};

/// Limits applied while validating.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Most events in one batch (HTTP 413 beyond).
    pub max_events: usize,
    /// A timestamp further than this in the future is clamped to `now`.
    pub max_future: SignedDuration,
    /// A timestamp older than this is rejected (SDK offline queues hold days of data).
    pub max_age: SignedDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_events: 1_000,
            max_future: SignedDuration::from_mins(10),
            max_age: SignedDuration::from_hours(24 * 30),
        }
    }
}

/// Why a whole request was refused; nothing in it was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The body is not JSON; `line`/`column` locate the fault.
    #[error("body is not valid JSON: {message} at line {line}, column {column}")]
    Json {
        /// serde_json's description.
        message: String,
        /// 1-based line of the fault.
        line: usize,
        /// 1-based column of the fault.
        column: usize,
    },
    /// The envelope is JSON but not of the contract's shape.
    #[error("invalid envelope: field `{field}` {reason}")]
    Field {
        /// The top-level field at fault.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// More events than [`Limits::max_events`].
    #[error("too many events: {count} in one request, at most {max}")]
    TooManyEvents {
        /// Events sent.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// One event that was not accepted, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Rejection {
    /// Its position in the request's `events` (0 for the single-event endpoints).
    pub index: usize,
    /// The field at fault (`event` when the event as a whole is).
    pub field: String,
    /// What is wrong, in words.
    pub reason: String,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "event {}: `{}` {}", self.index, self.field, self.reason)
    }
}

/// A request that was read: its app key and the verdict on every event.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// The app key the request was sent with (checked by the caller).
    pub app_key: String,
    /// Valid events, in request order.
    pub accepted: Vec<Event>,
    /// Events that were not accepted.
    pub rejected: Vec<Rejection>,
    /// How many accepted events had a future timestamp clamped to `now`.
    pub clamped: usize,
    /// Things the request did that were ignored, in words (an unknown envelope field).
    pub warnings: Vec<String>,
}

/// The event types the single-event endpoints stand for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SingleKind {
    /// `POST /api/v1/open_app`.
    OpenApp,
    /// `POST /api/v1/usage_time`.
    UsageTime,
}

const BATCH_FIELDS: &[&str] = &[
    "app_key",
    "device_id",
    "user_id",
    "events",
    "platform",
    "app_version",
    "channel",
    "os_version",
    "device_model",
    "locale",
    "country",
];

/// Reads a `POST /api/v1/ingest` body.
pub fn parse_batch(body: &[u8], now: Timestamp, limits: &Limits) -> Result<Batch, EnvelopeError> {
    let mut envelope = parse_object(body)?;
    let app_key = take_app_key(&mut envelope)?;
    let events = match envelope.remove("events") {
        Some(Value::Array(events)) => events,
        Some(other) => {
            return Err(field_error(
                "events",
                format!("must be an array, found {}", kind_of(&other)),
            ));
        }
        None => return Err(field_error("events", "is missing")),
    };
    if events.len() > limits.max_events {
        return Err(EnvelopeError::TooManyEvents {
            count: events.len(),
            max: limits.max_events,
        });
    }
    let defaults = batch_defaults(&envelope);
    let mut batch = Batch {
        app_key,
        accepted: Vec::with_capacity(events.len()),
        rejected: Vec::new(),
        clamped: 0,
        warnings: Vec::new(),
    };
    for key in envelope.keys() {
        if !BATCH_FIELDS.contains(&key.as_str()) {
            batch.warnings.push(format!(
                "envelope field `{key}` is not part of the contract and was ignored"
            ));
        }
    }
    for (index, value) in events.into_iter().enumerate() {
        let Value::Object(fields) = value else {
            batch.rejected.push(Rejection {
                index,
                field: "event".into(),
                reason: format!("must be a JSON object, found {}", kind_of(&value)),
            });
            continue;
        };
        match parse_event(fields, None, &defaults, now, limits) {
            Ok((event, clamped)) => {
                batch.clamped += usize::from(clamped);
                batch.accepted.push(event);
            }
            Err((field, reason)) => batch.rejected.push(Rejection {
                index,
                field,
                reason,
            }),
        }
    }
    Ok(batch)
}

/// Reads a `POST /api/v1/open_app` or `/api/v1/usage_time` body: one event whose fields
/// (and `app_key`) stand at the top level, its type given by the endpoint.
pub fn parse_single(
    body: &[u8],
    kind: SingleKind,
    now: Timestamp,
    limits: &Limits,
) -> Result<Batch, EnvelopeError> {
    let mut fields = parse_object(body)?;
    let app_key = take_app_key(&mut fields)?;
    let implied = match kind {
        SingleKind::OpenApp => "open_app",
        SingleKind::UsageTime => "usage_time",
    };
    let mut batch = Batch {
        app_key,
        accepted: Vec::new(),
        rejected: Vec::new(),
        clamped: 0,
        warnings: Vec::new(),
    };
    match parse_event(fields, Some(implied), &Defaults::default(), now, limits) {
        Ok((event, clamped)) => {
            batch.clamped = usize::from(clamped);
            batch.accepted.push(event);
        }
        Err((field, reason)) => batch.rejected.push(Rejection {
            index: 0,
            field,
            reason,
        }),
    }
    Ok(batch)
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, EnvelopeError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| EnvelopeError::Json {
        message: json_message(&e),
        line: e.line(),
        column: e.column(),
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(field_error(
            "$",
            format!("the body must be a JSON object, found {}", kind_of(&other)),
        )),
    }
}

/// serde_json appends " at line L column C" to its messages; we report those apart.
fn json_message(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

fn take_app_key(map: &mut Map<String, Value>) -> Result<String, EnvelopeError> {
    match map.remove("app_key") {
        Some(Value::String(key)) if !key.is_empty() => {
            if key.len() > MAX_ID_BYTES {
                Err(field_error(
                    "app_key",
                    format!("is longer than {MAX_ID_BYTES} bytes"),
                ))
            } else {
                Ok(key)
            }
        }
        Some(Value::String(_)) => Err(field_error("app_key", "is empty")),
        Some(other) => Err(field_error(
            "app_key",
            format!("must be a string, found {}", kind_of(&other)),
        )),
        None => Err(field_error("app_key", "is missing")),
    }
}

fn field_error(field: &str, reason: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

/// Batch-level values that events inherit when they lack their own.
#[derive(Debug, Default)]
struct Defaults {
    device_id: Option<String>,
    user_id: Option<String>,
    dims: Dimensions,
    /// Batch-level fields whose value is not acceptable, with the reason: an event that
    /// would inherit one is rejected on that field; events with their own value are not
    /// affected.
    invalid: Vec<(&'static str, String)>,
}

impl Defaults {
    /// The fault for an event that lacks its own `field` and would inherit a bad one.
    fn inherited_fault(&self, field: &str) -> Option<FieldFault> {
        self.invalid
            .iter()
            .find(|(name, _)| *name == field)
            .map(|(name, reason)| fault(name, format!("(batch-level value) {reason}")))
    }
}

fn batch_defaults(envelope: &Map<String, Value>) -> Defaults {
    let mut defaults = Defaults::default();
    for (name, value) in envelope {
        let Some(field) = BATCH_FIELDS
            .iter()
            .copied()
            .find(|f| *f == name && !matches!(*f, "app_key" | "events"))
        else {
            continue;
        };
        let parsed = match optional_id(value) {
            Ok(parsed) => parsed,
            Err(reason) => {
                defaults.invalid.push((field, reason));
                continue;
            }
        };
        match name.as_str() {
            "device_id" => defaults.device_id = parsed,
            "user_id" => defaults.user_id = parsed,
            other => {
                if let Some(slot) = defaults.dims.slot_mut(other) {
                    *slot = parsed;
                }
            }
        }
    }
    defaults
}

type FieldFault = (String, String);

fn fault(field: &str, reason: impl Into<String>) -> FieldFault {
    (field.to_owned(), reason.into())
}

/// Validates one event object. Returns the event and whether its timestamp was clamped.
fn parse_event(
    mut fields: Map<String, Value>,
    implied_type: Option<&str>,
    defaults: &Defaults,
    now: Timestamp,
    limits: &Limits,
) -> Result<(Event, bool), FieldFault> {
    let type_name = match (fields.remove("type"), implied_type) {
        (None, Some(implied)) => implied.to_owned(),
        (Some(Value::String(t)), Some(implied)) if t == implied => t,
        (Some(_), Some(implied)) => {
            return Err(fault(
                "type",
                format!("must be `{implied}` on this endpoint"),
            ));
        }
        (Some(Value::String(t)), None) => t,
        (Some(other), None) => {
            return Err(fault(
                "type",
                format!("must be a string, found {}", kind_of(&other)),
            ));
        }
        (None, None) => return Err(fault("type", "is missing")),
    };
    let allowed: &[&str] = match type_name.as_str() {
        "open_app" => &[],
        "usage_time" => &["duration_secs"],
        "custom" => &["name", "count", "sum", "dur", "segments"],
        other => {
            return Err(fault(
                "type",
                format!("`{other}` is not an event type (open_app, usage_time or custom)"),
            ));
        }
    };

    let (ts_ms, clamped) = parse_ts(fields.remove("ts"), now, limits)?;
    let own_device = match fields.remove("device_id") {
        Some(value) => optional_id(&value).map_err(|r| fault("device_id", r))?,
        None => None,
    };
    if own_device.is_none()
        && let Some(f) = defaults.inherited_fault("device_id")
    {
        return Err(f);
    }
    let device_id = own_device
        .or_else(|| defaults.device_id.clone())
        .ok_or_else(|| {
            fault(
                "device_id",
                "is missing (give it per event or for the batch)",
            )
        })?;
    let own_user = match fields.remove("user_id") {
        Some(value) => optional_id(&value).map_err(|r| fault("user_id", r))?,
        None => None,
    };
    if own_user.is_none()
        && let Some(f) = defaults.inherited_fault("user_id")
    {
        return Err(f);
    }
    let user_id = own_user.or_else(|| defaults.user_id.clone());
    let event_id = match fields.remove("event_id") {
        Some(value) => optional_id(&value).map_err(|r| fault("event_id", r))?,
        None => None,
    };
    let mut dims = Dimensions::default();
    for name in crate::event::DIMENSION_NAMES {
        if let Some(value) = fields.remove(name) {
            let parsed = optional_id(&value).map_err(|r| fault(name, r))?;
            if let Some(slot) = dims.slot_mut(name) {
                *slot = parsed;
            }
        }
    }
    for (name, value) in dims.iter() {
        if value.is_none()
            && let Some(f) = defaults.inherited_fault(name)
        {
            return Err(f);
        }
    }
    dims.fill_from(&defaults.dims);

    if let Some(unknown) = fields.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(fault(
            unknown,
            format!("is not a field of a `{type_name}` event"),
        ));
    }

    let kind = match type_name.as_str() {
        "open_app" => EventKind::OpenApp,
        "usage_time" => EventKind::UsageTime {
            duration_secs: parse_duration(fields.get("duration_secs"), "duration_secs", true)?,
            ends_session: true,
        },
        _ => parse_custom(&fields)?,
    };
    Ok((
        Event {
            kind,
            ts_ms,
            device_id,
            user_id,
            dims,
            event_id,
            incremental_session: false,
        },
        clamped,
    ))
}

fn parse_custom(fields: &Map<String, Value>) -> Result<EventKind, FieldFault> {
    let name = match fields.get("name") {
        Some(value) => optional_id(value).map_err(|r| fault("name", r))?,
        None => None,
    }
    .ok_or_else(|| fault("name", "is missing"))?;
    let count = match fields.get("count") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c) if (1..=1_000_000).contains(&c) => c as u32,
            _ => return Err(fault("count", "must be a whole number from 1 to 1000000")),
        },
        Some(other) => {
            return Err(fault(
                "count",
                format!("must be a number, found {}", kind_of(other)),
            ));
        }
    };
    let sum = match fields.get("sum") {
        None | Some(Value::Null) => 0.0,
        Some(Value::Number(n)) => match n.as_f64() {
            Some(s) if s.is_finite() && s.abs() <= 1e15 => s,
            _ => return Err(fault("sum", "must be a finite number of at most 1e15")),
        },
        Some(other) => {
            return Err(fault(
                "sum",
                format!("must be a number, found {}", kind_of(other)),
            ));
        }
    };
    let dur_secs = match fields.get("dur") {
        None | Some(Value::Null) => 0.0,
        value => parse_duration(value, "dur", true)?,
    };
    let mut segments = BTreeMap::new();
    match fields.get("segments") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            if map.len() > MAX_SEGMENTS {
                return Err(fault(
                    "segments",
                    format!("has {} keys, at most {MAX_SEGMENTS}", map.len()),
                ));
            }
            for (key, value) in map {
                let field = format!("segments.{key}");
                if key.is_empty() || key.len() > MAX_ID_BYTES {
                    return Err(fault(
                        &field,
                        format!("key must be 1 to {MAX_ID_BYTES} bytes"),
                    ));
                }
                let text = match value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    other => {
                        return Err(fault(
                            &field,
                            format!(
                                "must be a string, number or boolean, found {}",
                                kind_of(other)
                            ),
                        ));
                    }
                };
                if text.len() > MAX_SEGMENT_VALUE_BYTES {
                    return Err(fault(
                        &field,
                        format!("is longer than {MAX_SEGMENT_VALUE_BYTES} bytes"),
                    ));
                }
                segments.insert(key.clone(), text);
            }
        }
        Some(other) => {
            return Err(fault(
                "segments",
                format!("must be an object, found {}", kind_of(other)),
            ));
        }
    }
    Ok(EventKind::Custom {
        name,
        count,
        sum,
        dur_secs,
        segments,
    })
}

fn parse_duration(value: Option<&Value>, field: &str, required: bool) -> Result<f64, FieldFault> {
    match value {
        None if required => Err(fault(field, "is missing")),
        None => Ok(0.0),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(d) if (0.0..=MAX_DURATION_SECS).contains(&d) => Ok(d),
            _ => Err(fault(
                field,
                format!("must be a number of seconds from 0 to {MAX_DURATION_SECS}"),
            )),
        },
        Some(other) => Err(fault(
            field,
            format!("must be a number of seconds, found {}", kind_of(other)),
        )),
    }
}

/// Reads `ts` (epoch milliseconds or RFC 3339 with an offset), clamps the future and
/// rejects what is older than the window.
fn parse_ts(
    value: Option<Value>,
    now: Timestamp,
    limits: &Limits,
) -> Result<(i64, bool), FieldFault> {
    let ts = match value {
        None => return Err(fault("ts", "is missing")),
        Some(Value::Number(n)) => {
            // Whole milliseconds, or a fraction of one (floored: sub-millisecond
            // precision is not kept).
            let ms = match n.as_i64() {
                Some(ms) => ms,
                None => match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 9.0e15 => f.floor() as i64,
                    _ => return Err(fault("ts", "must be epoch milliseconds")),
                },
            };
            Timestamp::from_millisecond(ms)
                .map_err(|_| fault("ts", format!("{ms} is out of range")))?
        }
        Some(Value::String(s)) => s.parse::<Timestamp>().map_err(|_| {
            fault(
                "ts",
                format!("`{s}` is not an RFC 3339 timestamp with an offset (e.g. 2024-11-24T08:00:00+08:00)"),
            )
        })?,
        Some(other) => {
            return Err(fault(
                "ts",
                format!(
                    "must be epoch milliseconds or an RFC 3339 string, found {}",
                    kind_of(&other)
                ),
            ));
        }
    };
    let age = now.duration_since(ts);
    if age > limits.max_age {
        let hint = if ts.as_millisecond() < 100_000_000_000 && ts.as_millisecond() > 0 {
            " (it looks like seconds: ts is epoch milliseconds)"
        } else {
            ""
        };
        return Err(fault(
            "ts",
            format!(
                "{ts} is older than the accepted window of {} days{hint}",
                limits.max_age.as_secs() / 86_400
            ),
        ));
    }
    if -age > limits.max_future {
        return Ok((now.as_millisecond(), true));
    }
    Ok((ts.as_millisecond(), false))
}

/// A string field that may be absent: JSON null or "" is absent; a string must fit
/// [`MAX_ID_BYTES`].
fn optional_id(value: &Value) -> Result<Option<String>, String> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.len() > MAX_ID_BYTES => {
            Err(format!("is {} bytes long, at most {MAX_ID_BYTES}", s.len()))
        }
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(format!("must be a string, found {}", kind_of(other))),
    }
}

/// "a string", "an array", …: what a JSON value is, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}
