//! The parser: expression text → [`Expr`] (a compiled [`Calendar`] or an `@every`
//! interval, plus an optional `CRON_TZ=` zone).
//!
//! The parser works on byte offsets into the original text so every error carries the
//! exact span of the faulty token. It never panics: numbers are parsed with overflow
//! checks, and every value is range-checked against its field before it becomes a bit.
//!
//! Grammar (case-insensitive names and letters):
//!
//! ```text
//! expr   := ws* [("CRON_TZ=" | "TZ=") zone ws+] (alias | fields) ws*
//! alias  := "@yearly" | "@annually" | "@monthly" | "@weekly" | "@daily" | "@midnight"
//!         | "@hourly" | "@every" ws+ duration
//! fields := 5, 6 or 7 fields separated by ws (seconds first in 6/7, year last in 7)
//! field  := item ("," item)*
//! item   := ("*" | "?") ["/" n] | "H" ["(" a "-" b ")"] ["/" n]
//!         | v ["-" v] ["/" n]                       (a value v is a number or a name)
//!         | "L" ["-" n] | "LW" | n "W"              (day-of-month only)
//!         | v "L" | v "#" k                         (day-of-week only)
//! ```

use std::ops::Range;
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::calendar::{Calendar, DaySpec, YearSet};
use crate::error::{ErrorKind, Field, ParseError};

/// A set of field values, bit `value - base` (base 1970 for years, 0 otherwise).
type Bits = [u64; 4];

/// What a parsed field looked like, kept for `Display` and `describe`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FieldShape {
    /// The field began with `*` or `?`; `Some(n)` for `*/n` (`Some(1)` for `*`).
    pub(crate) star_step: Option<u32>,
}

/// A parsed calendar expression.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct CalendarExpr {
    pub(crate) cal: Calendar,
    /// 5, 6 or 7.
    pub(crate) field_count: u8,
    /// Shapes of second, minute, hour, day-of-month, month, day-of-week, year.
    pub(crate) shapes: [FieldShape; 7],
}

/// The body of a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Body {
    Calendar(Box<CalendarExpr>),
    Every(Duration),
}

/// A parsed expression.
#[derive(Clone, Debug)]
pub(crate) struct Expr {
    pub(crate) body: Body,
    pub(crate) zone: Option<(String, TimeZone)>,
}

/// The fields of a 7-field expression; 6 drop the year, 5 also the seconds.
const FIELDS_7: [Field; 7] = [
    Field::Second,
    Field::Minute,
    Field::Hour,
    Field::DayOfMonth,
    Field::Month,
    Field::DayOfWeek,
    Field::Year,
];

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Parser<'a> {
    input: &'a str,
    seed: u64,
}

/// Parses `input`; `seed` feeds the hashed `H` values.
pub(crate) fn parse(input: &str, seed: u64) -> Result<Expr, ParseError> {
    Parser { input, seed }.expr()
}

/// Splits on ASCII whitespace, keeping byte offsets.
fn tokens(s: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in s.char_indices() {
        if c.is_ascii_whitespace() {
            if let Some(st) = start.take() {
                out.push((st, &s[st..i]));
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(st) = start {
        out.push((st, &s[st..]));
    }
    out
}

/// Stable 64-bit mix (SplitMix64 finaliser); part of the `H` contract, never change it.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn set_bit(bits: &mut Bits, i: u32) {
    bits[(i / 64) as usize] |= 1 << (i % 64);
}

fn add_range(bits: &mut Bits, base: u32, lo: u32, hi: u32, step: u32) {
    let mut v = lo;
    while v <= hi {
        set_bit(bits, v - base);
        match v.checked_add(step) {
            Some(n) => v = n,
            None => break,
        }
    }
}

impl<'a> Parser<'a> {
    fn err(&self, kind: ErrorKind, span: Range<usize>, field: Option<Field>) -> ParseError {
        ParseError::new(kind, span, field, self.input)
    }

    fn expr(&self) -> Result<Expr, ParseError> {
        let toks = tokens(self.input);
        let Some(&(first_at, first)) = toks.first() else {
            return Err(self.err(ErrorKind::Empty, 0..self.input.len(), None));
        };
        let mut rest = &toks[..];
        let mut zone = None;
        let upper = first.to_ascii_uppercase();
        for prefix in ["CRON_TZ=", "TZ="] {
            if upper.starts_with(prefix) {
                let name = &first[prefix.len()..];
                let span = first_at + prefix.len()..first_at + first.len();
                let tz = jiff::tz::db().get(name).map_err(|_| {
                    self.err(
                        ErrorKind::TimeZone {
                            text: name.to_owned(),
                        },
                        span.clone(),
                        None,
                    )
                })?;
                if name.is_empty() {
                    return Err(self.err(
                        ErrorKind::TimeZone {
                            text: String::new(),
                        },
                        span,
                        None,
                    ));
                }
                zone = Some((name.to_owned(), tz));
                rest = &toks[1..];
                break;
            }
        }
        let body = match rest.first() {
            None => {
                let end = self.input.len();
                return Err(self.err(ErrorKind::Empty, end..end, None));
            }
            Some(&(at, tok)) if tok.starts_with('@') => self.alias(at, tok, &rest[1..])?,
            Some(_) => Body::Calendar(Box::new(self.fields(rest)?)),
        };
        Ok(Expr { body, zone })
    }

    fn alias(&self, at: usize, tok: &str, rest: &[(usize, &str)]) -> Result<Body, ParseError> {
        let lower = tok.to_ascii_lowercase();
        let fields = match lower.as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            "@reboot" => return Err(self.err(ErrorKind::Reboot, at..at + tok.len(), None)),
            "@every" => {
                let Some(&(dat, dtok)) = rest.first() else {
                    let end = self.input.trim_end().len();
                    return Err(self.err(
                        ErrorKind::Duration {
                            text: String::new(),
                        },
                        end..end,
                        None,
                    ));
                };
                self.no_trailing(tok, &rest[1..])?;
                let d = parse_duration(dtok).ok_or_else(|| {
                    self.err(
                        ErrorKind::Duration {
                            text: dtok.to_owned(),
                        },
                        dat..dat + dtok.len(),
                        None,
                    )
                })?;
                return Ok(Body::Every(d));
            }
            _ => {
                return Err(self.err(
                    ErrorKind::UnknownAlias {
                        text: tok.to_owned(),
                    },
                    at..at + tok.len(),
                    None,
                ));
            }
        };
        self.no_trailing(tok, rest)?;
        // The alias texts are valid 5-field expressions; parse them like user text but
        // report nothing against them (they cannot fail).
        let sub = Parser {
            input: fields,
            seed: 0,
        };
        sub.fields(&tokens(fields))
            .map(|c| Body::Calendar(Box::new(c)))
            .map_err(|e| self.err(e.kind().clone(), at..at + tok.len(), None))
    }

    fn no_trailing(&self, alias: &str, rest: &[(usize, &str)]) -> Result<(), ParseError> {
        match (rest.first(), rest.last()) {
            (Some(&(s, _)), Some(&(e, last))) => Err(self.err(
                ErrorKind::Trailing {
                    alias: alias.to_owned(),
                    text: self.input[s..e + last.len()].to_owned(),
                },
                s..e + last.len(),
                None,
            )),
            _ => Ok(()),
        }
    }

    fn fields(&self, toks: &[(usize, &str)]) -> Result<CalendarExpr, ParseError> {
        let layout: &[Field] = match toks.len() {
            5 => &FIELDS_7[1..6],
            6 => &FIELDS_7[..6],
            7 => &FIELDS_7,
            n => {
                let span = match toks.get(7) {
                    Some(&(at, _)) if n > 7 => at..self.input.trim_end().len(),
                    _ => {
                        let end = self.input.trim_end().len();
                        end..end
                    }
                };
                return Err(self.err(ErrorKind::FieldCount { found: n }, span, None));
            }
        };
        let mut seconds: Bits = [1, 0, 0, 0];
        let mut minutes = [0; 4];
        let mut hours = [0; 4];
        let mut months = [0; 4];
        let mut years = YearSet::ALL.0;
        let mut days = DaySpec::default();
        let mut shapes = [FieldShape { star_step: Some(1) }; 7];
        shapes[0].star_step = None;
        for (field, &(at, text)) in layout.iter().zip(toks) {
            let (bits, shape) = self.field(*field, at, text, &mut days)?;
            let slot = match field {
                Field::Second => {
                    seconds = bits;
                    0
                }
                Field::Minute => {
                    minutes = bits;
                    1
                }
                Field::Hour => {
                    hours = bits;
                    2
                }
                Field::DayOfMonth => {
                    days.dom = bits[0];
                    days.dom_star = shape.star_step.is_some();
                    3
                }
                Field::Month => {
                    months = bits;
                    4
                }
                Field::DayOfWeek => {
                    // 7 is Sunday, like 0.
                    let mut b = bits[0];
                    if b & 1 << 7 != 0 {
                        b = (b & !(1 << 7)) | 1;
                    }
                    days.dow = b;
                    days.dow_star = shape.star_step.is_some();
                    5
                }
                Field::Year => {
                    years = bits;
                    6
                }
            };
            shapes[slot] = shape;
        }
        let fixed_time = shapes[1].star_step.is_none() && shapes[2].star_step.is_none();
        let cal = Calendar::new(
            seconds[0],
            minutes[0],
            hours[0],
            days,
            months[0],
            YearSet(years),
            fixed_time,
        );
        Ok(CalendarExpr {
            cal,
            field_count: toks.len() as u8,
            shapes,
        })
    }

    /// Parses one field; Quartz day forms go straight into `days`.
    fn field(
        &self,
        field: Field,
        at: usize,
        text: &str,
        days: &mut DaySpec,
    ) -> Result<(Bits, FieldShape), ParseError> {
        let mut bits: Bits = [0; 4];
        let mut shape = FieldShape { star_step: None };
        let mut offset = 0;
        for (index, item) in text.split(',').enumerate() {
            let span = at + offset..at + offset + item.len();
            offset += item.len() + 1;
            if item.is_empty() {
                return Err(self.err(
                    ErrorKind::Invalid {
                        field,
                        text: text.to_owned(),
                        expected: "empty list item: write values separated by single commas",
                    },
                    span.start
                        ..span
                            .start
                            .max(span.end)
                            .max(span.start + 1)
                            .min(at + text.len()),
                    Some(field),
                ));
            }
            let star = self.item(field, item, span, &mut bits, days)?;
            if index == 0 {
                shape.star_step = star;
            }
        }
        Ok((bits, shape))
    }

    /// Parses one list item into `bits` (or `days`). Returns `Some(step)` for `*`/`?` items.
    fn item(
        &self,
        field: Field,
        item: &str,
        span: Range<usize>,
        bits: &mut Bits,
        days: &mut DaySpec,
    ) -> Result<Option<u32>, ParseError> {
        let (min, max) = field.bounds();
        let base = if field == Field::Year { 1970 } else { 0 };
        // Names and letters are case-insensitive; most items have no lowercase at all.
        let upper: std::borrow::Cow<'_, str> = if item.bytes().any(|b| b.is_ascii_lowercase()) {
            item.to_ascii_uppercase().into()
        } else {
            item.into()
        };
        let is_day = matches!(field, Field::DayOfMonth | Field::DayOfWeek);

        // Split off a step.
        let (head, step) = match upper.split_once('/') {
            Some((h, s)) => {
                let s_at = span.start + h.len() + 1;
                let s_span = s_at..span.end;
                let n = self.number(field, s, s_span.clone())?;
                if n == 0 {
                    return Err(self.err(
                        ErrorKind::ZeroStep {
                            field,
                            text: item.to_owned(),
                        },
                        s_span,
                        Some(field),
                    ));
                }
                (h, Some(n))
            }
            None => (&*upper, None),
        };
        let head_span = span.start..span.start + head.len();
        // Star-like `*`/`?` items cover the field's full range (day-of-week: 0–6).
        if head == "*" || head == "?" {
            if head == "?" && (!is_day || step.is_some()) {
                return Err(self.invalid(
                    field,
                    item,
                    span,
                    "`?` is only allowed, alone, in day-of-month and day-of-week",
                ));
            }
            let hi = if field == Field::DayOfWeek { 6 } else { max };
            let n = step.unwrap_or(1);
            add_range(bits, base, min, hi, n);
            return Ok(Some(n));
        }
        if head.starts_with('H') {
            return self
                .hashed(field, item, head, head_span, step, bits)
                .map(|()| None);
        }
        if field == Field::DayOfMonth && head.starts_with('L') {
            if step.is_some() {
                return Err(self.invalid(field, item, span, "`L` forms take no step"));
            }
            if head == "L" {
                days.dom_last |= 1;
            } else if head == "LW" {
                days.dom_last_weekday = true;
            } else if let Some(n) = head.strip_prefix("L-") {
                let n_span = span.start + 2..span.end;
                let v = self.number(field, n, n_span.clone())?;
                if v > 30 {
                    return Err(self.err(
                        ErrorKind::OutOfRange {
                            field,
                            text: n.to_owned(),
                            min: 0,
                            max: 30,
                        },
                        n_span,
                        Some(field),
                    ));
                }
                days.dom_last |= 1 << v;
            } else {
                return Err(self.invalid(
                    field,
                    item,
                    span,
                    "expected `L`, `L-n` or `LW` (last day, n days before it, last weekday)",
                ));
            }
            return Ok(None);
        }
        if field == Field::DayOfMonth
            && let Some(n) = head.strip_suffix('W')
        {
            if step.is_some() {
                return Err(self.invalid(field, item, span, "`nW` takes no step"));
            }
            let v = self.value(field, n, span.start..span.start + n.len())?;
            days.dom_nearest |= 1 << v;
            return Ok(None);
        }
        if field == Field::DayOfWeek {
            if head == "L" {
                return Err(self.invalid(
                    field,
                    item,
                    span,
                    "`L` alone is ambiguous in day-of-week: write `SAT`, or `5L` for the last Friday of the month",
                ));
            }
            if let Some(n) = head.strip_suffix('L') {
                if step.is_some() {
                    return Err(self.invalid(field, item, span, "`nL` takes no step"));
                }
                let v = self.value(field, n, span.start..span.start + n.len())? % 7;
                days.dow_last |= 1 << v;
                return Ok(None);
            }
            if let Some((n, k)) = head.split_once('#') {
                if step.is_some() {
                    return Err(self.invalid(field, item, span, "`n#k` takes no step"));
                }
                let v = self.value(field, n, span.start..span.start + n.len())? % 7;
                let k_span = span.start + n.len() + 1..span.end;
                let kv = self.number(field, k, k_span.clone())?;
                if !(1..=5).contains(&kv) {
                    return Err(self.err(
                        ErrorKind::OutOfRange {
                            field,
                            text: k.to_owned(),
                            min: 1,
                            max: 5,
                        },
                        k_span,
                        Some(field),
                    ));
                }
                days.dow_nth[v as usize] |= 1 << kv;
                return Ok(None);
            }
        }
        // v, v-v, with an optional step; `a/n` means `a-max/n`.
        let (lo, hi) = match head.split_once('-') {
            Some((a, b)) => {
                let a_span = span.start..span.start + a.len();
                let b_span = a_span.end + 1..head_span.end;
                let lo = self.value(field, a, a_span)?;
                let mut hi = self.value(field, b, b_span)?;
                if field == Field::DayOfWeek && hi == 0 && lo > 0 && b == "SUN" {
                    hi = 7;
                }
                if lo > hi {
                    let orig = &self.input[head_span.clone()];
                    let (oa, ob) = orig.split_once('-').unwrap_or((orig, ""));
                    let top = if field == Field::DayOfWeek { 6 } else { max };
                    let suffix = step.map(|n| format!("/{n}")).unwrap_or_default();
                    let suggestion = if hi == min {
                        format!("{oa}-{top}{suffix},{ob}")
                    } else {
                        format!("{oa}-{top}{suffix},{min}-{ob}{suffix}")
                    };
                    return Err(self.err(
                        ErrorKind::ReversedRange {
                            field,
                            text: orig.to_owned(),
                            suggestion,
                        },
                        head_span,
                        Some(field),
                    ));
                }
                (lo, hi)
            }
            None => {
                let v = self.value(field, head, head_span)?;
                match step {
                    Some(_) => (v, max),
                    None => (v, v),
                }
            }
        };
        add_range(bits, base, lo, hi, step.unwrap_or(1));
        Ok(None)
    }

    /// `H`, `H/n`, `H(a-b)`, `H(a-b)/n`.
    fn hashed(
        &self,
        field: Field,
        item: &str,
        head: &str,
        head_span: Range<usize>,
        step: Option<u32>,
        bits: &mut Bits,
    ) -> Result<(), ParseError> {
        let (min, max) = match field {
            Field::Year => {
                return Err(self.invalid(field, item, head_span, "`H` is not allowed in the year"));
            }
            // Like Jenkins: hashed days stay within 1–28 so they exist in every month.
            Field::DayOfMonth => (1, 28),
            Field::DayOfWeek => (0, 6),
            _ => field.bounds(),
        };
        let (lo, hi) = if head == "H" {
            (min, max)
        } else if let Some(inner) = head.strip_prefix("H(").and_then(|s| s.strip_suffix(')')) {
            let Some((a, b)) = inner.split_once('-') else {
                return Err(self.invalid(field, item, head_span, "expected `H(a-b)`"));
            };
            let a_span = head_span.start + 2..head_span.start + 2 + a.len();
            let b_span = a_span.end + 1..a_span.end + 1 + b.len();
            let lo = self.value(field, a, a_span)?;
            let hi = self.value(field, b, b_span)?;
            if lo > hi {
                return Err(self.invalid(
                    field,
                    item,
                    head_span,
                    "the range in `H(a-b)` must not be reversed",
                ));
            }
            (lo, hi)
        } else {
            return Err(self.invalid(
                field,
                item,
                head_span,
                "expected `H`, `H/n`, `H(a-b)` or `H(a-b)/n`",
            ));
        };
        let field_salt = field as u64 + 1;
        let h = mix(self.seed ^ mix(field_salt));
        let width = u64::from(hi - lo + 1);
        let base = if field == Field::Year { 1970 } else { 0 };
        match step {
            None => add_range(
                bits,
                base,
                lo + (h % width) as u32,
                lo + (h % width) as u32,
                1,
            ),
            Some(n) => {
                let start = lo + (h % u64::from(n).min(width)) as u32;
                add_range(bits, base, start, hi, n);
            }
        }
        Ok(())
    }

    fn invalid(
        &self,
        field: Field,
        item: &str,
        span: Range<usize>,
        expected: &'static str,
    ) -> ParseError {
        self.err(
            ErrorKind::Invalid {
                field,
                text: item.to_owned(),
                expected,
            },
            span,
            Some(field),
        )
    }

    /// A plain decimal number.
    fn number(&self, field: Field, s: &str, span: Range<usize>) -> Result<u32, ParseError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            let span = if span.is_empty() {
                span.start.saturating_sub(1)..span.start
            } else {
                span
            };
            return Err(self.err(
                ErrorKind::Invalid {
                    field,
                    text: self.input.get(span.clone()).unwrap_or(s).to_owned(),
                    expected: "expected a number",
                },
                span,
                Some(field),
            ));
        }
        s.parse::<u32>().map_err(|_| {
            let (min, max) = field.bounds();
            self.err(
                ErrorKind::OutOfRange {
                    field,
                    text: s.to_owned(),
                    min,
                    max,
                },
                span,
                Some(field),
            )
        })
    }

    /// A value of `field`: a number in range or (month, day-of-week) a name.
    fn value(&self, field: Field, s: &str, span: Range<usize>) -> Result<u32, ParseError> {
        let (min, max) = field.bounds();
        let names: &[&str] = match field {
            Field::Month => &MONTHS,
            Field::DayOfWeek => &WEEKDAYS,
            _ => &[],
        };
        if let Some(i) = names.iter().position(|n| *n == s) {
            return Ok(i as u32 + if field == Field::Month { 1 } else { 0 });
        }
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            let expected = match field {
                Field::Month => "expected a month 1–12 or JAN–DEC, a range, a step, `*` or `H`",
                Field::DayOfWeek => {
                    "expected a weekday 0–7 or SUN–SAT, a range, a step, `*`, `?`, `nL`, `n#k` or `H`"
                }
                Field::DayOfMonth => {
                    "expected a day 1–31, a range, a step, `*`, `?`, `L`, `L-n`, `LW`, `nW` or `H`"
                }
                Field::Year => "expected a year 1970–2199, a range, a step or `*`",
                _ => "expected a number, a range, a step, `*` or `H`",
            };
            let span = if span.is_empty() {
                span.start..(span.start + 1).min(self.input.len())
            } else {
                span
            };
            return Err(self.err(
                ErrorKind::Invalid {
                    field,
                    text: self.input.get(span.clone()).unwrap_or(s).to_owned(),
                    expected,
                },
                span,
                Some(field),
            ));
        }
        match s.parse::<u32>() {
            Ok(v) if (min..=max).contains(&v) => Ok(v),
            _ => Err(self.err(
                ErrorKind::OutOfRange {
                    field,
                    text: s.to_owned(),
                    min,
                    max,
                },
                span,
                Some(field),
            )),
        }
    }
}

/// The longest `@every` interval: 100 years (36,500 days). Longer ones could never fire
/// inside the supported calendar (1970–2199) in any useful way and overflow instants.
const MAX_EVERY: Duration = Duration::from_secs(36_500 * 86_400);

/// Parses `1h30m`, `90s`, `500ms`, `2d`: one or more number+unit pairs, total in
/// `(0, MAX_EVERY]`.
fn parse_duration(s: &str) -> Option<Duration> {
    let bytes = s.as_bytes();
    let mut i = 0;
    let mut total = Duration::ZERO;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        let n: u64 = s.get(start..i)?.parse().ok()?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let unit = s.get(ustart..i)?.to_ascii_lowercase();
        let d = match unit.as_str() {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.checked_mul(60)?),
            "h" => Duration::from_secs(n.checked_mul(3600)?),
            "d" => Duration::from_secs(n.checked_mul(86_400)?),
            _ => return None,
        };
        total = total.checked_add(d)?;
    }
    (!total.is_zero() && total <= MAX_EVERY).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("0s"), None);
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(parse_duration("99999999999999999999d"), None);
        assert_eq!(parse_duration("36500d"), Some(MAX_EVERY));
        assert_eq!(parse_duration("36500d1s"), None);
        assert_eq!(parse_duration("1000000000000000h"), None);
    }

    #[test]
    fn token_offsets() {
        assert_eq!(tokens(" a\tbb  c "), vec![(1, "a"), (3, "bb"), (7, "c")]);
        assert!(tokens("  ").is_empty());
    }

    #[test]
    fn mix_is_stable() {
        // Part of the H contract: these values must never change.
        assert_eq!(mix(0), 0xe220_a839_7b1d_cdaf);
        assert_ne!(mix(1), mix(2));
    }
}
