//! The parse error: what went wrong, in which field, at which bytes.
//!
//! A [`ParseError`] keeps a copy of the expression so that its `Display` can render the
//! expression with a caret under the fault:
//!
//! ```text
//! invalid day-of-month `32`: must be 1–31
//!   0 0 32 * *
//!       ^^
//! ```
//!
//! Invariant: `span` is a valid, non-empty (unless the input is empty) byte range on char
//! boundaries of `input`.

use std::fmt;
use std::ops::Range;

/// A field of a cron expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Field {
    /// Seconds (0–59), the first field of 6- and 7-field expressions.
    Second,
    /// Minutes (0–59).
    Minute,
    /// Hours (0–23).
    Hour,
    /// Day of the month (1–31).
    DayOfMonth,
    /// Month (1–12 or JAN–DEC).
    Month,
    /// Day of the week (0–7, 0 and 7 = Sunday, or SUN–SAT).
    DayOfWeek,
    /// Year (1970–2199), the last field of 7-field expressions.
    Year,
}

impl Field {
    /// The field's name as used in messages (`day-of-month`).
    pub fn name(self) -> &'static str {
        match self {
            Field::Second => "second",
            Field::Minute => "minute",
            Field::Hour => "hour",
            Field::DayOfMonth => "day-of-month",
            Field::Month => "month",
            Field::DayOfWeek => "day-of-week",
            Field::Year => "year",
        }
    }

    /// Smallest and largest value accepted in the field.
    pub fn bounds(self) -> (u32, u32) {
        match self {
            Field::Second | Field::Minute => (0, 59),
            Field::Hour => (0, 23),
            Field::DayOfMonth => (1, 31),
            Field::Month => (1, 12),
            Field::DayOfWeek => (0, 7),
            Field::Year => (1970, 2199),
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What is wrong with an expression.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The expression is empty or only whitespace.
    #[error("empty expression: expected 5, 6 or 7 fields or an @alias")]
    Empty,
    /// The number of fields is not 5, 6 or 7.
    #[error(
        "expected 5 fields (minute hour day-of-month month day-of-week), 6 (seconds first) or 7 (seconds first, year last), found {found}"
    )]
    FieldCount {
        /// How many fields were found.
        found: usize,
    },
    /// A value lies outside the field's range.
    #[error("invalid {field} `{text}`: must be {min}–{max}")]
    OutOfRange {
        /// The field.
        field: Field,
        /// The offending text.
        text: String,
        /// Smallest allowed value.
        min: u32,
        /// Largest allowed value.
        max: u32,
    },
    /// Something that is not a value, name, range, step or special character.
    #[error("invalid {field} `{text}`: {expected}")]
    Invalid {
        /// The field.
        field: Field,
        /// The offending text.
        text: String,
        /// What the field accepts here.
        expected: &'static str,
    },
    /// A step of zero (`*/0`).
    #[error("invalid {field} step `{text}`: a step must be at least 1")]
    ZeroStep {
        /// The field.
        field: Field,
        /// The offending text.
        text: String,
    },
    /// A range whose start is after its end.
    #[error("reversed range `{text}` in {field}: ranges do not wrap around; write `{suggestion}`")]
    ReversedRange {
        /// The field.
        field: Field,
        /// The offending text.
        text: String,
        /// An equivalent list that does not wrap.
        suggestion: String,
    },
    /// An `@name` that is not a known alias.
    #[error(
        "unknown alias `{text}`: expected @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly or @every <duration>"
    )]
    UnknownAlias {
        /// The offending text.
        text: String,
    },
    /// `@reboot`, which is not a time-based schedule.
    #[error(
        "`@reboot` is not a time schedule: use the scheduler's start-up hook to run a job when Sundial starts"
    )]
    Reboot,
    /// A malformed `@every` duration.
    #[error(
        "invalid duration `{text}`: expected a positive duration of at most 100 years such as `90s`, `15m`, `1h30m` or `2d` (units d, h, m, s, ms)"
    )]
    Duration {
        /// The offending text.
        text: String,
    },
    /// Text after an `@alias` or `@every <duration>`.
    #[error("unexpected `{text}` after `{alias}`: an alias stands for the whole schedule")]
    Trailing {
        /// The alias.
        alias: String,
        /// The unexpected text.
        text: String,
    },
    /// A `CRON_TZ=`/`TZ=` prefix naming an unknown zone.
    #[error("unknown time zone `{text}`: expected an IANA name such as `Europe/Berlin`")]
    TimeZone {
        /// The offending text.
        text: String,
    },
}

/// An invalid cron expression, with the location of the fault.
///
/// `Display` prints the message, then the expression, then a caret line under the
/// faulty bytes. Use [`ParseError::kind`] to inspect the cause programmatically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    kind: ErrorKind,
    span: Range<usize>,
    field: Option<Field>,
    input: String,
}

impl ParseError {
    pub(crate) fn new(
        kind: ErrorKind,
        span: Range<usize>,
        field: Option<Field>,
        input: &str,
    ) -> ParseError {
        ParseError {
            kind,
            span,
            field,
            input: input.to_owned(),
        }
    }

    /// What is wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The faulty bytes of the expression.
    pub fn span(&self) -> Range<usize> {
        self.span.clone()
    }

    /// The field the fault is in, if it is in one.
    pub fn field(&self) -> Option<Field> {
        self.field
    }

    /// The expression that failed to parse.
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.kind)?;
        // Tabs would misalign the caret: show them as spaces (same width, one byte).
        let shown: String = self
            .input
            .chars()
            .map(|c| if c == '\t' { ' ' } else { c })
            .collect();
        writeln!(f, "  {shown}")?;
        let start = self.span.start.min(self.input.len());
        let end = self.span.end.clamp(start, self.input.len());
        let pad = self.input.get(..start).map_or(start, |s| s.chars().count());
        let width = self
            .input
            .get(start..end)
            .map_or(1, |s| s.chars().count())
            .max(1);
        write!(f, "  {}{}", " ".repeat(pad), "^".repeat(width))
    }
}

// No `source()`: the kind's message is already part of `Display`, and chaining it would
// print it twice in `{:#}` renderings.
impl std::error::Error for ParseError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_fault() {
        let e = ParseError::new(
            ErrorKind::OutOfRange {
                field: Field::DayOfMonth,
                text: "32".into(),
                min: 1,
                max: 31,
            },
            4..6,
            Some(Field::DayOfMonth),
            "0 0 32 * *",
        );
        assert_eq!(
            e.to_string(),
            "invalid day-of-month `32`: must be 1–31\n  0 0 32 * *\n      ^^"
        );
    }

    #[test]
    fn caret_at_end_of_input() {
        let e = ParseError::new(ErrorKind::FieldCount { found: 4 }, 7..7, None, "0 0 1 *");
        assert!(e.to_string().ends_with("\n  0 0 1 *\n         ^"));
    }
}
