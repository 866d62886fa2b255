//! Next/previous fire times in a time zone, with Debian cron's DST rules.
//!
//! The calendar is searched in civil (wall-clock) time; each civil candidate is then
//! resolved in the zone:
//!
//! - **unambiguous**: the one instant it denotes;
//! - **gap** (the wall time does not exist): a *fixed-time* job (neither minute nor hour
//!   field begins with `*`) fires at the first instant after the gap, the transition
//!   itself; other jobs skip the candidate;
//! - **fold** (the wall time occurs twice): a fixed-time job fires at the first
//!   occurrence only; other jobs fire at both.
//!
//! Civil order and instant order agree except inside a fold, where both copies of the
//! repeated wall times share one civil range. The search therefore treats "the instant
//! lies in the first copy of a fold" (forward) and "in the second copy" (backward)
//! specially: it first finishes the current copy, then restarts the civil search at the
//! other copy's boundary. Everywhere else the first civil candidate that resolves to an
//! instant on the right side of the start is the answer.
//!
//! Bounds: every loop iteration advances the civil cursor strictly (gaps and folds are
//! skipped as a whole), and the civil search itself stops at 1970/2199, so no search is
//! unbounded. Fixed-offset zones (UTC included) skip the zone machinery altogether.

use jiff::Timestamp;
use jiff::tz::{AmbiguousOffset, Offset, TimeZone};

use crate::calendar::Calendar;
use crate::civil::Civil;

/// `floor(t)` in whole seconds and whether `t` had a fractional part.
fn floor_seconds(t: Timestamp) -> (i64, bool) {
    let (s, ns) = (t.as_second(), t.subsec_nanosecond());
    if ns < 0 { (s - 1, true) } else { (s, ns != 0) }
}

fn instant(c: Civil, offset: Offset) -> Option<Timestamp> {
    Timestamp::from_second(c.to_unix() - i64::from(offset.seconds())).ok()
}

fn wall(ts: Timestamp, offset: Offset) -> Civil {
    Civil::from_unix(floor_seconds(ts).0 + i64::from(offset.seconds()))
}

/// The zone's offset if it never changes, found without building an error value for
/// the (common) zones that do change (`to_fixed_offset` allocates its error).
fn fixed_offset(tz: &TimeZone) -> Option<Offset> {
    match tz.iana_name() {
        Some("UTC" | "Etc/UTC" | "Etc/UCT" | "Etc/Universal" | "Etc/Zulu") => Some(Offset::UTC),
        // Named zones take the general path; it is correct for fixed ones too.
        Some(_) => None,
        None => tz.to_fixed_offset().ok(),
    }
}

/// The first transition strictly after `ts`.
fn transition_after(tz: &TimeZone, ts: Timestamp) -> Option<Timestamp> {
    tz.following(ts).next().map(|tr| tr.timestamp())
}

/// The first fire strictly after `t`.
pub(crate) fn next_after(cal: &Calendar, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let (secs, _) = floor_seconds(t);
    if let Some(off) = fixed_offset(tz) {
        let o = i64::from(off.seconds());
        let c = cal.next_civil(Civil::from_unix(secs + o + 1))?;
        return Timestamp::from_second(c.to_unix() - o).ok();
    }
    let off_t = tz.to_offset(t);
    let wall_secs = secs + i64::from(off_t.seconds());
    let wall_t = Civil::from_unix(wall_secs);
    let mut start = Civil::from_unix(wall_secs + 1);
    match tz.to_ambiguous_timestamp(wall_t.to_jiff()?).offset() {
        AmbiguousOffset::Fold { before, after } if before == off_t && before != after => {
            // `t` is in the first copy of a repeated range: finish that copy, then
            // continue from the start of the second copy.
            let tr = transition_after(tz, t)?;
            let fold_end = wall(tr, before);
            if let Some(c) = cal.next_civil(start)
                && c < fold_end
            {
                return instant(c, before);
            }
            start = wall(tr, after);
        }
        AmbiguousOffset::Unambiguous { .. } => {
            // Fast path: `t` is not in a repeated range, so no wall time after it lies
            // in the second copy of one. If the first candidate, read with the current
            // offset, comes before the next transition, it is that instant: it is not
            // in a gap (gaps start at a transition) and, if it is repeated later, this
            // is its first copy.
            let c = cal.next_civil(start)?;
            let ts = instant(c, off_t)?;
            match transition_after(tz, t) {
                Some(tr) if ts >= tr => start = c,
                _ => return Some(ts),
            }
        }
        // Second copy of a fold (or no ambiguity data): the general loop handles it.
        _ => {}
    }
    loop {
        let c = cal.next_civil(start)?;
        match tz.to_ambiguous_timestamp(c.to_jiff()?).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                let ts = instant(c, offset)?;
                if ts > t {
                    return Some(ts);
                }
                start = c.add_seconds(1);
            }
            AmbiguousOffset::Gap { before: _, after } => {
                let tr = transition_after(tz, instant(c, after)?)?;
                if cal.fixed_time && tr > t {
                    return Some(tr);
                }
                start = wall(tr, after).max(c.add_seconds(1));
            }
            AmbiguousOffset::Fold { before, after } => {
                let first = instant(c, before)?;
                if first > t {
                    return Some(first);
                }
                if cal.fixed_time {
                    // The first copy has passed; skip the whole second copy.
                    let tr = transition_after(tz, first)?;
                    start = wall(tr, before).max(c.add_seconds(1));
                } else {
                    let second = instant(c, after)?;
                    if second > t {
                        return Some(second);
                    }
                    start = c.add_seconds(1);
                }
            }
        }
    }
}

/// The last fire strictly before `t`.
pub(crate) fn prev_before(cal: &Calendar, t: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let (secs, frac) = floor_seconds(t);
    // The last whole second strictly before `t`.
    let last = if frac { secs } else { secs - 1 };
    if let Some(off) = fixed_offset(tz) {
        let o = i64::from(off.seconds());
        let c = cal.prev_civil(Civil::from_unix(last + o))?;
        return Timestamp::from_second(c.to_unix() - o).ok();
    }
    let off_t = tz.to_offset(t);
    let wall_t = Civil::from_unix(secs + i64::from(off_t.seconds()));
    let mut start = Civil::from_unix(last + i64::from(off_t.seconds()));
    if let AmbiguousOffset::Fold { before, after } =
        tz.to_ambiguous_timestamp(wall_t.to_jiff()?).offset()
        && after == off_t
        && before != after
    {
        // `t` is in the second copy of a repeated range: finish that copy (only jobs
        // that fire in both copies), then continue from the end of the first copy.
        let tr = transition_after(tz, instant(wall_t, before)?)?;
        if !cal.fixed_time
            && let Some(c) = cal.prev_civil(start)
            && c >= wall(tr, after)
        {
            return instant(c, after);
        }
        start = wall(tr, before).add_seconds(-1);
    }
    loop {
        let c = cal.prev_civil(start)?;
        match tz.to_ambiguous_timestamp(c.to_jiff()?).offset() {
            AmbiguousOffset::Unambiguous { offset } => {
                let ts = instant(c, offset)?;
                if ts < t {
                    return Some(ts);
                }
                start = c.add_seconds(-1);
            }
            AmbiguousOffset::Gap { before, after } => {
                let tr = transition_after(tz, instant(c, after)?)?;
                if cal.fixed_time && tr < t {
                    return Some(tr);
                }
                start = wall(tr, before).add_seconds(-1).min(c.add_seconds(-1));
            }
            AmbiguousOffset::Fold { before, after } => {
                if !cal.fixed_time {
                    let second = instant(c, after)?;
                    if second < t {
                        return Some(second);
                    }
                }
                let first = instant(c, before)?;
                if first < t {
                    return Some(first);
                }
                start = c.add_seconds(-1);
            }
        }
    }
}
