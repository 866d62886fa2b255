//! Text output: the normalised expression (`Display`) and human descriptions.
//!
//! Both are derived from the compiled bitsets plus the few facts about the source that
//! change meaning (whether a field began with `*`, and its step), so two expressions
//! with the same meaning normalise to the same text, and the normal form parses back to
//! an equal schedule (`parse(s.to_string()) == s`).

use std::fmt::{self, Write as _};
use std::time::Duration;

use crate::parse::{Body, CalendarExpr, Expr, FieldShape};

/// Language of [`crate::Schedule::describe`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// Simplified Chinese (简体中文).
    Zh,
}

fn values(bits: u64, lo: u32, hi: u32) -> Vec<u32> {
    (lo..=hi).filter(|v| bits & (1 << v) != 0).collect()
}

/// Canonical list: an arithmetic progression of 3+ values becomes `a-b/n`, runs of 3+
/// become `a-b`, the rest stays a comma list.
fn list(vals: &[u32]) -> Vec<String> {
    if vals.len() >= 3 {
        let step = vals[1] - vals[0];
        if step >= 2 && vals.windows(2).all(|w| w[1] - w[0] == step) {
            return vec![format!("{}-{}/{}", vals[0], vals[vals.len() - 1], step)];
        }
    }
    runs(vals)
        .into_iter()
        .flat_map(|(a, b)| match b - a {
            0 => vec![a.to_string()],
            1 => vec![a.to_string(), b.to_string()],
            _ => vec![format!("{a}-{b}")],
        })
        .collect()
}

fn runs(vals: &[u32]) -> Vec<(u32, u32)> {
    let mut out: Vec<(u32, u32)> = Vec::new();
    for &v in vals {
        match out.last_mut() {
            Some((_, b)) if *b + 1 == v => *b = v,
            _ => out.push((v, v)),
        }
    }
    out
}

/// Renders a field: `*`/`*/n` first if it began with a star, then the other values.
fn field(bits: u64, lo: u32, hi: u32, shape: FieldShape, extra: Vec<String>) -> String {
    let mut vals = values(bits, lo, hi);
    let mut items = Vec::new();
    if let Some(step) = shape.star_step {
        let star_hi = hi;
        vals.retain(|v| *v > star_hi || !(v - lo).is_multiple_of(step));
        items.push(if step == 1 {
            "*".to_owned()
        } else {
            format!("*/{step}")
        });
    }
    items.extend(list(&vals));
    items.extend(extra);
    if items.is_empty() {
        // Cannot happen for parsed input (every field has at least one item); keep the
        // output parseable anyway.
        items.push("*".to_owned());
    }
    items.join(",")
}

fn dom_extras(c: &CalendarExpr) -> Vec<String> {
    let d = &c.cal.days;
    let mut out = Vec::new();
    for n in 0..=30 {
        if d.dom_last & (1 << n) != 0 {
            out.push(if n == 0 {
                "L".to_owned()
            } else {
                format!("L-{n}")
            });
        }
    }
    if d.dom_last_weekday {
        out.push("LW".to_owned());
    }
    for n in 1..=31 {
        if d.dom_nearest & (1 << n) != 0 {
            out.push(format!("{n}W"));
        }
    }
    out
}

fn dow_extras(c: &CalendarExpr) -> Vec<String> {
    let d = &c.cal.days;
    let mut out = Vec::new();
    for w in 0..7 {
        if d.dow_last & (1 << w) != 0 {
            out.push(format!("{w}L"));
        }
    }
    for w in 0..7 {
        for k in 1..=5 {
            if d.dow_nth[w] & (1 << k) != 0 {
                out.push(format!("{w}#{k}"));
            }
        }
    }
    out
}

fn years(c: &CalendarExpr) -> String {
    if let Some(step) = c.shapes[6].star_step {
        return if step == 1 {
            "*".to_owned()
        } else {
            format!("*/{step}")
        };
    }
    let vals: Vec<u32> = c.cal.years.iter().map(|y| y as u32).collect();
    list(&vals).join(",")
}

fn fmt_duration(d: Duration) -> String {
    let mut out = String::new();
    let mut secs = d.as_secs();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            let _ = write!(out, "{}{unit}", secs / len);
            secs %= len;
        }
    }
    let ms = d.subsec_millis();
    if ms != 0 || out.is_empty() {
        let _ = write!(out, "{ms}ms");
    }
    out
}

/// The normalised fields of a calendar expression.
fn calendar_fields(c: &CalendarExpr) -> Vec<String> {
    let cal = &c.cal;
    let s = &c.shapes;
    let mut out = Vec::new();
    if c.field_count >= 6 {
        out.push(field(cal.seconds, 0, 59, s[0], vec![]));
    }
    out.push(field(cal.minutes, 0, 59, s[1], vec![]));
    out.push(field(cal.hours, 0, 23, s[2], vec![]));
    out.push(field(cal.days.dom, 1, 31, s[3], dom_extras(c)));
    out.push(field(cal.months, 1, 12, s[4], vec![]));
    out.push(field(cal.days.dow, 0, 6, s[5], dow_extras(c)));
    if c.field_count == 7 {
        out.push(years(c));
    }
    out
}

pub(crate) fn normalise(expr: &Expr, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if let Some((name, _)) = &expr.zone {
        write!(f, "CRON_TZ={name} ")?;
    }
    match &expr.body {
        Body::Every(d) => write!(f, "@every {}", fmt_duration(*d)),
        Body::Calendar(c) => f.write_str(&calendar_fields(c).join(" ")),
    }
}

// ---------------------------------------------------------------------------------------
// Descriptions.

const WEEKDAYS_EN: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const WEEKDAYS_ZH: [&str; 7] = ["周日", "周一", "周二", "周三", "周四", "周五", "周六"];
const MONTHS_EN: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const ORDINALS_EN: [&str; 6] = ["", "first", "second", "third", "fourth", "fifth"];
const ORDINALS_ZH: [&str; 6] = ["", "第一个", "第二个", "第三个", "第四个", "第五个"];

/// Joins values as "a, b and c" / "a、b和c", with runs of 3+ as "a through c" / "a至c".
fn human_list(vals: &[u32], lang: Lang, name: &dyn Fn(u32) -> String) -> String {
    let items: Vec<String> = runs(vals)
        .into_iter()
        .flat_map(|(a, b)| match (b - a, lang) {
            (0, _) => vec![name(a)],
            (1, _) => vec![name(a), name(b)],
            (_, Lang::En) => vec![format!("{} through {}", name(a), name(b))],
            (_, Lang::Zh) => vec![format!("{}至{}", name(a), name(b))],
        })
        .collect();
    match (items.as_slice(), lang) {
        ([], _) => String::new(),
        ([one], _) => one.clone(),
        ([init @ .., last], Lang::En) => format!("{} and {last}", init.join(", ")),
        ([init @ .., last], Lang::Zh) => format!("{}和{last}", init.join("、")),
    }
}

fn single(bits: u64, shape: FieldShape) -> Option<u32> {
    (shape.star_step.is_none() && bits.count_ones() == 1).then(|| bits.trailing_zeros())
}

fn time_part(c: &CalendarExpr, lang: Lang) -> String {
    let cal = &c.cal;
    let s = &c.shapes;
    let sec = single(cal.seconds, s[0]);
    let min = single(cal.minutes, s[1]);
    let hours = values(cal.hours, 0, 23);
    let clock = |h: u32, m: u32, sec: u32| {
        if sec == 0 {
            format!("{h:02}:{m:02}")
        } else {
            format!("{h:02}:{m:02}:{sec:02}")
        }
    };
    if let (Some(sec), Some(m)) = (sec, min)
        && s[2].star_step.is_none()
        && hours.len() <= 6
    {
        let times: Vec<String> = hours.iter().map(|h| clock(*h, m, sec)).collect();
        let joined = match (times.as_slice(), lang) {
            ([one], _) => one.clone(),
            ([init @ .., last], Lang::En) => format!("{} and {last}", init.join(", ")),
            ([init @ .., last], Lang::Zh) => format!("{}和{last}", init.join("、")),
            ([], _) => String::new(),
        };
        return match lang {
            Lang::En => format!("At {joined}"),
            Lang::Zh => joined,
        };
    }
    let mut parts = Vec::new();
    let unit = |bits: u64, shape: FieldShape, lo: u32, hi: u32, en: &str, zh: &str| {
        let vals = values(bits, lo, hi);
        match (shape.star_step, lang) {
            (Some(1), Lang::En) => Some(format!("every {en}")),
            (Some(1), Lang::Zh) => Some(format!("每{zh}")),
            (Some(n), Lang::En) => Some(format!("every {n} {en}s")),
            (Some(n), Lang::Zh) => Some(format!("每{n}{zh}")),
            (None, Lang::En) => Some(format!(
                "at {en} {}",
                human_list(&vals, lang, &|v| v.to_string())
            )),
            (None, Lang::Zh) => Some(format!(
                "第{}{zh}",
                human_list(&vals, lang, &|v| v.to_string())
            )),
        }
    };
    let sec_trivial = c.field_count == 5 || (sec == Some(0));
    if !sec_trivial {
        parts.extend(unit(cal.seconds, s[0], 0, 59, "second", "秒"));
    }
    let min_trivial = sec_trivial && min == Some(0) && s[2].star_step.is_some();
    if !min_trivial || s[2].star_step == Some(1) {
        parts.extend(unit(cal.minutes, s[1], 0, 59, "minute", "分钟"));
    }
    match (s[2].star_step, lang) {
        (Some(1), _) => {}
        (Some(n), Lang::En) => parts.push(format!("every {n} hours")),
        (Some(n), Lang::Zh) => parts.push(format!("每{n}小时")),
        (None, Lang::En) => parts.push(format!(
            "past hour {}",
            human_list(&hours, lang, &|v| format!("{v:02}"))
        )),
        (None, Lang::Zh) => parts.push(format!(
            "{}点",
            human_list(&hours, lang, &|v| format!("{v}"))
        )),
    }
    match lang {
        Lang::En => {
            let mut s = parts.join(", ");
            if let Some(first) = s.get(..1) {
                s = first.to_uppercase() + &s[1..];
            }
            s
        }
        Lang::Zh => {
            // Chinese reads from the largest unit down.
            parts.reverse();
            parts.join("")
        }
    }
}

fn dom_part(c: &CalendarExpr, lang: Lang) -> Option<String> {
    let d = &c.cal.days;
    let shape = c.shapes[3];
    let mut items = Vec::new();
    match (shape.star_step, lang) {
        (Some(1), _) => {}
        (Some(n), Lang::En) => items.push(format!("every {n} days")),
        (Some(n), Lang::Zh) => items.push(format!("每{n}天")),
        (None, _) => {
            let vals = values(d.dom, 1, 31);
            if !vals.is_empty() {
                items.push(match lang {
                    Lang::En => format!(
                        "on day {} of the month",
                        human_list(&vals, lang, &|v| v.to_string())
                    ),
                    Lang::Zh => format!("每月{}", human_list(&vals, lang, &|v| format!("{v}日"))),
                });
            }
        }
    }
    for n in 0..=30 {
        if d.dom_last & (1 << n) != 0 {
            items.push(match (n, lang) {
                (0, Lang::En) => "on the last day of the month".to_owned(),
                (0, Lang::Zh) => "每月最后一天".to_owned(),
                (n, Lang::En) => format!("{n} days before the last day of the month"),
                (n, Lang::Zh) => format!("每月最后一天的前{n}天"),
            });
        }
    }
    if d.dom_last_weekday {
        items.push(match lang {
            Lang::En => "on the last weekday of the month".to_owned(),
            Lang::Zh => "每月最后一个工作日".to_owned(),
        });
    }
    for n in 1..=31 {
        if d.dom_nearest & (1 << n) != 0 {
            items.push(match lang {
                Lang::En => format!("on the weekday nearest day {n} of the month"),
                Lang::Zh => format!("每月最接近{n}日的工作日"),
            });
        }
    }
    join_or(items, lang)
}

fn dow_part(c: &CalendarExpr, lang: Lang) -> Option<String> {
    let d = &c.cal.days;
    let shape = c.shapes[5];
    let names: &[&str; 7] = match lang {
        Lang::En => &WEEKDAYS_EN,
        Lang::Zh => &WEEKDAYS_ZH,
    };
    let mut items = Vec::new();
    match shape.star_step {
        Some(1) => {}
        _ => {
            let vals = values(d.dow, 0, 6);
            if !vals.is_empty() {
                items.push(human_list(&vals, lang, &|v| names[v as usize].to_owned()));
            }
        }
    }
    for (w, name) in names.iter().enumerate() {
        if d.dow_last & (1 << w) != 0 {
            items.push(match lang {
                Lang::En => format!("on the last {name} of the month"),
                Lang::Zh => format!("每月最后一个{name}"),
            });
        }
        for k in 1..=5 {
            if d.dow_nth[w] & (1 << k) != 0 {
                items.push(match lang {
                    Lang::En => format!("on the {} {name} of the month", ORDINALS_EN[k]),
                    Lang::Zh => format!("每月{}{name}", ORDINALS_ZH[k]),
                });
            }
        }
    }
    join_or(items, lang)
}

fn join_or(items: Vec<String>, lang: Lang) -> Option<String> {
    if items.is_empty() {
        return None;
    }
    Some(match lang {
        Lang::En => items.join(" or "),
        Lang::Zh => items.join("或"),
    })
}

fn month_part(c: &CalendarExpr, lang: Lang) -> Option<String> {
    let vals = values(c.cal.months, 1, 12);
    match (c.shapes[4].star_step, lang) {
        (Some(1), _) => None,
        (Some(n), Lang::En) => Some(format!("every {n} months")),
        (Some(n), Lang::Zh) => Some(format!("每{n}个月")),
        (None, Lang::En) => Some(format!(
            "in {}",
            human_list(&vals, lang, &|v| MONTHS_EN[(v - 1) as usize].to_owned())
        )),
        (None, Lang::Zh) => Some(human_list(&vals, lang, &|v| format!("{v}月"))),
    }
}

fn year_part(c: &CalendarExpr, lang: Lang) -> Option<String> {
    if c.field_count < 7 || c.shapes[6].star_step == Some(1) {
        return None;
    }
    let vals: Vec<u32> = c.cal.years.iter().map(|y| y as u32).collect();
    Some(match lang {
        Lang::En => format!("in {}", human_list(&vals, lang, &|v| v.to_string())),
        Lang::Zh => human_list(&vals, lang, &|v| format!("{v}年")),
    })
}

fn describe_every(d: Duration, lang: Lang) -> String {
    let secs = d.as_secs();
    let (n, en, zh) = if d.subsec_millis() != 0 || secs == 0 {
        (d.as_millis() as u64, "millisecond", "毫秒")
    } else if secs.is_multiple_of(86_400) {
        (secs / 86_400, "day", "天")
    } else if secs.is_multiple_of(3600) {
        (secs / 3600, "hour", "小时")
    } else if secs.is_multiple_of(60) {
        (secs / 60, "minute", "分钟")
    } else {
        (secs, "second", "秒")
    };
    match lang {
        Lang::En if n == 1 => format!("Every {en} (an interval, not a calendar)"),
        Lang::En => format!("Every {n} {en}s (an interval, not a calendar)"),
        Lang::Zh => format!("每{n}{zh}（间隔触发，不按日历）"),
    }
}

pub(crate) fn describe(expr: &Expr, lang: Lang) -> String {
    let mut out = match &expr.body {
        Body::Every(d) => describe_every(*d, lang),
        Body::Calendar(c) => describe_calendar(c, lang),
    };
    if let Some((name, _)) = &expr.zone {
        match lang {
            Lang::En => {
                let _ = write!(out, " ({name} time)");
            }
            Lang::Zh => {
                let _ = write!(out, "（{name} 时间）");
            }
        }
    }
    out
}

fn describe_calendar(c: &CalendarExpr, lang: Lang) -> String {
    let time = time_part(c, lang);
    let dom = dom_part(c, lang);
    let dow = dow_part(c, lang);
    let both_and = c.cal.days.dom_star || c.cal.days.dow_star;
    let days = match (dom, dow, lang) {
        (Some(a), Some(b), Lang::En) if both_and => Some(format!("{a}, only on {b}")),
        (Some(a), Some(b), Lang::Zh) if both_and => Some(format!("{a}且为{b}")),
        (Some(a), Some(b), Lang::En) => Some(format!("{a} or {b}")),
        (Some(a), Some(b), Lang::Zh) => Some(format!("{a}或{b}")),
        (a, b, _) => a.or(b),
    };
    let month = month_part(c, lang);
    let year = year_part(c, lang);
    match lang {
        Lang::En => {
            let mut parts = vec![time];
            parts.extend(days);
            parts.extend(month);
            parts.extend(year);
            parts.join(", ")
        }
        Lang::Zh => {
            let mut out = String::new();
            for p in [year, month].into_iter().flatten() {
                out.push_str(&p);
            }
            let daily = days.is_none();
            if let Some(d) = days {
                out.push_str(&d);
            }
            let fixed = single(c.cal.minutes, c.shapes[1]).is_some()
                && c.shapes[2].star_step.is_none()
                && (c.field_count == 5 || single(c.cal.seconds, c.shapes[0]).is_some());
            if daily && fixed {
                out.push_str("每天");
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(&time);
            out
        }
    }
}
