//! The event model: what an SDK reports, after validation.
//!
//! An [`Event`] is always valid: it has a device, a timestamp inside the accepted window
//! (already clamped when it was in the future), strings within their length limits and a
//! kind-specific payload within range. Only [`crate::ingest`] builds events from input;
//! everything downstream (bus, aggregator, store) may rely on these invariants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Longest `device_id`, `user_id`, `event_id`, event name or dimension value, in bytes.
pub const MAX_ID_BYTES: usize = 128;

/// Longest custom-event segment value, in bytes.
pub const MAX_SEGMENT_VALUE_BYTES: usize = 256;

/// Most segments on one custom event.
pub const MAX_SEGMENTS: usize = 32;

/// Longest session report, in seconds (one day).
pub const MAX_DURATION_SECS: f64 = 86_400.0;

/// One validated event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
    /// The client's timestamp, epoch milliseconds (clamped to the server's clock when it
    /// was more than the allowed skew in the future).
    pub ts_ms: i64,
    /// The device, unique within the app.
    pub device_id: String,
    /// The signed-in user, when the app knows one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Platform, version, channel and the other breakdown dimensions.
    #[serde(default, skip_serializing_if = "Dimensions::is_empty")]
    pub dims: Dimensions,
    /// The SDK's id for this event, for de-duplication of retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    /// True when the event is part of a session reported in increments (a Countly
    /// `begin_session`, `session_duration` or `end_session`): such a session's
    /// `usage_time` reports add up to one session in the session-length distribution,
    /// where a native `usage_time` is a whole session by itself.
    #[serde(default, skip_serializing_if = "is_false")]
    pub incremental_session: bool,
}

/// The kinds of event and their payloads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// An app launch; every launch begins a session.
    OpenApp,
    /// Time spent in the app: a whole session (native SDKs) or an increment of one
    /// (Countly's `session_duration` and `end_session`).
    UsageTime {
        /// Seconds, in `[0, 86400]`.
        duration_secs: f64,
        /// Whether this report closes the session (Countly `end_session`); a native
        /// `usage_time` is a whole session and always closes it.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        ends_session: bool,
    },
    /// A custom event counted per day and name.
    Custom {
        /// The event's name (e.g. `purchase`).
        name: String,
        /// How many times it happened (at least 1).
        count: u32,
        /// A value summed over events (e.g. revenue); 0 when not given.
        sum: f64,
        /// Duration, seconds, when the SDK measured one; 0 when not given.
        #[serde(default, skip_serializing_if = "is_zero")]
        dur_secs: f64,
        /// Segment key → value, for breakdowns of one custom event.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        segments: BTreeMap<String, String>,
    },
}

fn yes() -> bool {
    true
}

fn is_false(value: &bool) -> bool {
    !*value
}

fn is_true(value: &bool) -> bool {
    *value
}

fn is_zero(value: &f64) -> bool {
    *value == 0.0
}

impl EventKind {
    /// The `type` name used on the wire.
    pub fn type_name(&self) -> &'static str {
        match self {
            EventKind::OpenApp => "open_app",
            EventKind::UsageTime { .. } => "usage_time",
            EventKind::Custom { .. } => "custom",
        }
    }
}

/// The dimensions events are broken down by. Absent (or empty on the wire) is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Dimensions {
    /// `ios`, `android`, `web`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// The app's version string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_version: Option<String>,
    /// The distribution channel (`appstore`, `googleplay`, a campaign, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The operating system's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os_version: Option<String>,
    /// The device model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_model: Option<String>,
    /// The device's locale (`zh_CN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    /// The country (ISO 3166-1 alpha-2 when the SDK sends one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
}

/// The wire names of the dimensions, in [`Dimensions`] field order.
pub const DIMENSION_NAMES: [&str; 7] = [
    "platform",
    "app_version",
    "channel",
    "os_version",
    "device_model",
    "locale",
    "country",
];

impl Dimensions {
    /// True when no dimension is set.
    pub fn is_empty(&self) -> bool {
        self.iter().all(|(_, v)| v.is_none())
    }

    /// The dimensions as (wire name, value) pairs, in a fixed order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, Option<&str>)> {
        [
            &self.platform,
            &self.app_version,
            &self.channel,
            &self.os_version,
            &self.device_model,
            &self.locale,
            &self.country,
        ]
        .into_iter()
        .zip(DIMENSION_NAMES)
        .map(|(value, name)| (name, value.as_deref()))
    }

    /// The slot of the dimension called `name`, if it is one.
    pub fn slot_mut(&mut self, name: &str) -> Option<&mut Option<String>> {
        Some(match name {
            "platform" => &mut self.platform,
            "app_version" => &mut self.app_version,
            "channel" => &mut self.channel,
            "os_version" => &mut self.os_version,
            "device_model" => &mut self.device_model,
            "locale" => &mut self.locale,
            "country" => &mut self.country,
            _ => return None,
        })
    }

    /// Fills every dimension this one lacks from `defaults` (batch-level values).
    pub fn fill_from(&mut self, defaults: &Dimensions) {
        let pairs = [
            (&mut self.platform, &defaults.platform),
            (&mut self.app_version, &defaults.app_version),
            (&mut self.channel, &defaults.channel),
            (&mut self.os_version, &defaults.os_version),
            (&mut self.device_model, &defaults.device_model),
            (&mut self.locale, &defaults.locale),
            (&mut self.country, &defaults.country),
        ];
        for (mine, default) in pairs {
            if mine.is_none() {
                mine.clone_from(default);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips() {
        let event = Event {
            kind: EventKind::Custom {
                name: "purchase".into(),
                count: 2,
                sum: 9.99,
                dur_secs: 0.0,
                segments: [("sku".to_owned(), "gold".to_owned())].into(),
            },
            ts_ms: 1_732_406_400_999,
            device_id: "d1".into(),
            user_id: None,
            dims: Dimensions {
                platform: Some("ios".into()),
                ..Dimensions::default()
            },
            event_id: Some("e1".into()),
            incremental_session: false,
        };
        let json = serde_json::to_string(&event).expect("serialise");
        assert!(json.contains(r#""type":"custom""#), "{json}");
        let back: Event = serde_json::from_str(&json).expect("deserialise");
        assert_eq!(back, event);
    }

    #[test]
    fn fill_from_keeps_own_values() {
        let mut dims = Dimensions {
            platform: Some("android".into()),
            ..Dimensions::default()
        };
        let batch = Dimensions {
            platform: Some("ios".into()),
            channel: Some("appstore".into()),
            ..Dimensions::default()
        };
        dims.fill_from(&batch);
        assert_eq!(dims.platform.as_deref(), Some("android"));
        assert_eq!(dims.channel.as_deref(), Some("appstore"));
        assert!(!dims.is_empty());
        assert!(Dimensions::default().is_empty());
    }
}
