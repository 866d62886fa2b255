//! The aggregator against the real store, on SQLite and PostgreSQL: exactly-once
//! commits, first-seen moving back, de-duplication, set compaction, time zones.

mod common;

use std::collections::BTreeMap;

use sundial_analytics::aggregate::{
    AggregateStore, Aggregator, COMPACT_AFTER_DELTAS, SET_ACTIVE, SET_NEW, day_and_hour,
};
use sundial_analytics::bus::BusMessage;
use sundial_analytics::record::EventRecord;
use sundial_analytics::{Dimensions, Event, EventKind, NewApp, Store};
use sundial_storage_sql::SqlStore;

fn ts(rfc3339: &str) -> i64 {
    rfc3339
        .parse::<jiff::Timestamp>()
        .expect("timestamp")
        .as_millisecond()
}

fn launch(device: &str, ts_ms: i64) -> Event {
    Event {
        kind: EventKind::OpenApp,
        ts_ms,
        device_id: device.to_owned(),
        user_id: None,
        dims: Dimensions::default(),
        event_id: None,
        incremental_session: false,
    }
}

fn message(position: u64, app_id: i64, events: Vec<Event>) -> BusMessage {
    BusMessage {
        position,
        payload: EventRecord::new(app_id, 0, events).encode(),
    }
}

async fn app(store: &SqlStore, tz: &str) -> (i64, jiff::tz::TimeZone) {
    let app = store
        .create_app(NewApp {
            name: "t".into(),
            timezone: tz.into(),
        })
        .await
        .expect("app");
    (app.id, jiff::tz::TimeZone::get(tz).expect("zone"))
}

#[tokio::test]
async fn replayed_batches_count_once_and_positions_commit_with_them() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "Asia/Shanghai").await;
        let at = ts("2024-11-24T08:00:00+08:00");
        let day = day_and_hour(at, &tz).0;
        let batch = vec![
            message(0, id, vec![launch("a", at), launch("b", at)]),
            message(1, id, vec![launch("a", at)]),
        ];
        let mut agg = Aggregator::new("agg");
        let report = agg.apply(store, &batch).await.expect("apply");
        assert_eq!((report.messages, report.events), (2, 3));
        assert_eq!(store.consumer_position("agg").await.expect("pos"), 2);
        // The same messages again (a replay after a crash before the bus learnt of the
        // commit), with a fresh aggregator as after a restart: nothing changes.
        let mut again = Aggregator::new("agg");
        let report = again.apply(store, &batch).await.expect("replay");
        assert_eq!(report.events, 0);
        // A batch that straddles the committed position applies only the new part.
        let straddle = vec![
            message(1, id, vec![launch("a", at)]),
            message(2, id, vec![launch("c", at)]),
        ];
        let report = again.apply(store, &straddle).await.expect("straddle");
        assert_eq!((report.messages, report.events), (1, 1));
        let totals = store.day_totals(id, day, day).await.expect("totals")[0];
        assert_eq!(
            (totals.launches, totals.active_users, totals.new_users),
            (4, 3, 3)
        );
        assert_eq!(store.consumer_position("agg").await.expect("pos"), 3);
    }
}

#[tokio::test]
async fn json_records_of_earlier_builds_count_like_binary_ones() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "UTC").await;
        let later = ts("2024-11-24T10:00:00Z");
        let earlier = ts("2024-11-23T10:00:00Z");
        let (d_later, d_earlier) = (day_and_hour(later, &tz).0, day_and_hour(earlier, &tz).0);
        let mut ios = launch("x", later);
        ios.dims.platform = Some("ios".into());
        // A version 1 (JSON) record, as a log written before the binary form holds it,
        // then a binary one in the same batch that moves `x` to an earlier first day.
        let json = BusMessage {
            position: 0,
            payload: EventRecord::new(id, 0, vec![ios, launch("y", later)]).encode_json(),
        };
        assert_eq!(json.payload.first(), Some(&b'{'));
        let batch = vec![json, message(1, id, vec![launch("x", earlier)])];
        let mut agg = Aggregator::new("agg");
        let report = agg.apply(store, &batch).await.expect("apply");
        assert_eq!((report.messages, report.events), (2, 3));
        let set = |day, kind, dim, value| store.day_set(id, day, kind, dim, value);
        let new_later = set(d_later, SET_NEW, "", "").await.expect("set");
        let new_earlier = set(d_earlier, SET_NEW, "", "").await.expect("set");
        assert_eq!((new_later.len(), new_earlier.len()), (1, 1));
        let ios = set(d_later, SET_ACTIVE, "platform", "ios")
            .await
            .expect("set");
        assert_eq!(ios.len(), 1);
        let totals = store
            .day_totals(id, d_later, d_later)
            .await
            .expect("totals")[0];
        assert_eq!((totals.launches, totals.active_users), (2, 2));
    }
}

#[tokio::test]
async fn a_late_earlier_event_moves_the_device_to_its_true_first_day() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "America/New_York").await;
        let later = ts("2024-03-12T15:00:00Z");
        let earlier = ts("2024-03-10T07:30:00Z"); // 03:30 EDT on the spring-forward day
        let (d_later, h_later) = day_and_hour(later, &tz);
        let (d_earlier, h_earlier) = day_and_hour(earlier, &tz);
        assert_eq!(d_later - d_earlier, 2);
        assert_eq!(h_earlier, 3);
        let mut agg = Aggregator::new("agg");
        agg.apply(store, &[message(0, id, vec![launch("x", later)])])
            .await
            .expect("first");
        assert_eq!(
            store
                .day_set(id, d_later, SET_NEW, "", "")
                .await
                .expect("set")
                .len(),
            1
        );
        // In a later batch, and again after a restart of the aggregator.
        agg.reset();
        agg.apply(store, &[message(1, id, vec![launch("x", earlier)])])
            .await
            .expect("late");
        assert!(
            store
                .day_set(id, d_later, SET_NEW, "", "")
                .await
                .expect("set")
                .is_empty()
        );
        assert_eq!(
            store
                .day_set(id, d_earlier, SET_NEW, "", "")
                .await
                .expect("set")
                .len(),
            1
        );
        let devices = store.load_devices(id).await.expect("devices");
        assert_eq!(
            (devices[0].first_ts_ms, devices[0].first_day),
            (earlier, d_earlier)
        );
        // Active on both days, new on the earlier one only.
        let totals = store
            .day_totals(id, d_earlier, d_later)
            .await
            .expect("totals");
        let active: Vec<u64> = totals.iter().map(|t| t.active_users).collect();
        let new: Vec<u64> = totals.iter().map(|t| t.new_users).collect();
        assert_eq!(active, vec![1, 0, 1]);
        assert_eq!(new, vec![1, 0, 0]);
        let _ = h_later;
    }
}

#[tokio::test]
async fn event_ids_deduplicate_within_and_across_batches() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "UTC").await;
        let at = ts("2024-11-24T10:00:00Z");
        let day = day_and_hour(at, &tz).0;
        let with_id = |device: &str, event_id: &str| Event {
            event_id: Some(event_id.to_owned()),
            ..launch(device, at)
        };
        let mut agg = Aggregator::new("agg");
        let report = agg
            .apply(
                store,
                &[message(
                    0,
                    id,
                    vec![with_id("a", "e1"), with_id("a", "e1"), with_id("b", "e2")],
                )],
            )
            .await
            .expect("apply");
        assert_eq!((report.events, report.duplicates), (2, 1));
        agg.reset();
        let report = agg
            .apply(
                store,
                &[message(1, id, vec![with_id("a", "e1"), with_id("c", "e3")])],
            )
            .await
            .expect("apply");
        assert_eq!((report.events, report.duplicates), (1, 1));
        let totals = store.day_totals(id, day, day).await.expect("totals")[0];
        assert_eq!(totals.launches, 3);
    }
}

#[tokio::test]
async fn sets_compact_and_read_back_the_same() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "Europe/Berlin").await;
        let at = ts("2024-10-27T01:30:00Z"); // fall-back day in Berlin
        let day = day_and_hour(at, &tz).0;
        let mut agg = Aggregator::new("agg");
        let batches = COMPACT_AFTER_DELTAS as u64 + 10;
        for i in 0..batches {
            agg.apply(store, &[message(i, id, vec![launch(&format!("d{i}"), at)])])
                .await
                .expect("apply");
        }
        let active = store
            .day_set(id, day, SET_ACTIVE, "", "")
            .await
            .expect("set");
        assert_eq!(active.len(), batches);
        assert_eq!(active.min(), Some(0));
        assert_eq!(
            active.max(),
            Some(u32::try_from(batches - 1).expect("fits"))
        );
        // A fresh aggregator continues from the compacted rows.
        let mut fresh = Aggregator::new("agg");
        fresh
            .apply(
                store,
                &[message(
                    batches,
                    id,
                    vec![launch("d0", at), launch("new", at)],
                )],
            )
            .await
            .expect("apply");
        let active = store
            .day_set(id, day, SET_ACTIVE, "", "")
            .await
            .expect("set");
        assert_eq!(active.len(), batches + 1);
    }
}

#[tokio::test]
async fn counters_by_dimension_hour_and_custom_event() {
    for t in common::both().await {
        let store = &t.store;
        let (id, tz) = app(store, "Asia/Shanghai").await;
        let at = ts("2024-11-24T23:30:00+08:00");
        let (day, hour) = day_and_hour(at, &tz);
        assert_eq!(hour, 23);
        let mut ios = launch("a", at);
        ios.dims.platform = Some("ios".into());
        ios.dims.app_version = Some("1.0".into());
        let usage = Event {
            kind: EventKind::UsageTime {
                duration_secs: 12.5,
                ends_session: true,
            },
            ..ios.clone()
        };
        let buy = Event {
            kind: EventKind::Custom {
                name: "buy".into(),
                count: 3,
                sum: 2.5,
                dur_secs: 1.0,
                segments: BTreeMap::from([("sku".to_owned(), "gold".to_owned())]),
            },
            ..launch("b", at)
        };
        let mut agg = Aggregator::new("agg");
        agg.apply(store, &[message(0, id, vec![ios, usage, buy])])
            .await
            .expect("apply");
        let totals = store.day_totals(id, day, day).await.expect("totals")[0];
        assert_eq!((totals.launches, totals.usage_reports), (1, 1));
        assert!((totals.usage_secs - 12.5).abs() < 1e-9);
        assert_eq!(
            store
                .day_set(id, day, SET_ACTIVE, "platform", "ios")
                .await
                .expect("set")
                .len(),
            1
        );
        // `b` reported no platform: it is under the empty value, so the values add up.
        assert_eq!(
            store
                .day_set(id, day, SET_ACTIVE, "platform", "")
                .await
                .expect("set")
                .len(),
            1
        );
        assert_eq!(
            store
                .day_set(id, day, SET_ACTIVE, "hour", "23")
                .await
                .expect("set")
                .len(),
            2
        );
        let events = store.event_totals(id, day, day).await.expect("events");
        assert_eq!(events.len(), 2);
        assert!(
            events
                .iter()
                .all(|e| e.count == 3 && (e.sum - 2.5).abs() < 1e-9)
        );
    }
}

#[tokio::test]
async fn events_of_a_deleted_app_are_skipped_not_fatal() {
    let t = common::sqlite().await;
    let store = &t.store;
    let mut agg = Aggregator::new("agg");
    let report = agg
        .apply(
            store,
            &[message(
                0,
                999,
                vec![launch("a", ts("2024-11-24T10:00:00Z"))],
            )],
        )
        .await
        .expect("apply");
    assert_eq!((report.events, report.orphaned), (0, 1));
    assert_eq!(store.consumer_position("agg").await.expect("pos"), 1);
}
