//! Dates as the sources give them: a year (`2020`), a month (`2021-09`) or a day (`2021-03-31`).
//! A record keeps the precision it was given; filters use the first and last day it covers.

use std::fmt;
use std::str::FromStr;

use time::{Date, Month};

/// An ISO 8601 calendar date with reduced precision allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartialDate {
    Year(i32),
    Month(i32, Month),
    Day(Date),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("`{0}` is not an ISO 8601 date: use YYYY, YYYY-MM or YYYY-MM-DD")]
pub struct InvalidDate(pub String);

impl PartialDate {
    /// The first day the date covers.
    pub fn first_day(self) -> Date {
        match self {
            PartialDate::Year(y) => date(y, Month::January, 1),
            PartialDate::Month(y, m) => date(y, m, 1),
            PartialDate::Day(d) => d,
        }
    }

    /// The last day the date covers.
    pub fn last_day(self) -> Date {
        match self {
            PartialDate::Year(y) => date(y, Month::December, 31),
            PartialDate::Month(y, m) => date(y, m, time::util::days_in_month(m, y)),
            PartialDate::Day(d) => d,
        }
    }
}

fn date(year: i32, month: Month, day: u8) -> Date {
    // Years are restricted to 1000..=9999 by the parser, so every such date exists.
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MIN)
}

/// A full date as `YYYY-MM-DD`, the form stored in `*_bound` columns and compared as text.
pub fn iso_day(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

impl FromStr for PartialDate {
    type Err = InvalidDate;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || InvalidDate(s.to_owned());
        let parts: Vec<&str> = s.split('-').collect();
        let number = |p: &str, len: usize| -> Result<u32, InvalidDate> {
            if p.len() != len || !p.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad());
            }
            p.parse().map_err(|_| bad())
        };
        let year = number(parts.first().copied().unwrap_or(""), 4)? as i32;
        if year < 1000 {
            return Err(bad());
        }
        let month = match parts.get(1) {
            None => return Ok(PartialDate::Year(year)),
            Some(p) => Month::try_from(number(p, 2)? as u8).map_err(|_| bad())?,
        };
        match (parts.get(2), parts.len()) {
            (None, _) => Ok(PartialDate::Month(year, month)),
            (Some(p), 3) => {
                let day = number(p, 2)? as u8;
                Date::from_calendar_date(year, month, day)
                    .map(PartialDate::Day)
                    .map_err(|_| bad())
            }
            _ => Err(bad()),
        }
    }
}

impl fmt::Display for PartialDate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PartialDate::Year(y) => write!(f, "{y:04}"),
            PartialDate::Month(y, m) => write!(f, "{y:04}-{:02}", u8::from(*m)),
            PartialDate::Day(d) => f.write_str(&iso_day(*d)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for PartialDate {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for PartialDate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_precision_and_round_trips() {
        for s in ["2020", "2021-09", "2021-03-31", "2024-02-29"] {
            let d: PartialDate = s.parse().unwrap();
            assert_eq!(d.to_string(), s);
        }
    }

    #[test]
    fn bounds_cover_the_whole_period() {
        let y: PartialDate = "2020".parse().unwrap();
        assert_eq!(iso_day(y.first_day()), "2020-01-01");
        assert_eq!(iso_day(y.last_day()), "2020-12-31");
        let m: PartialDate = "2024-02".parse().unwrap();
        assert_eq!(iso_day(m.last_day()), "2024-02-29");
    }

    #[test]
    fn rejects_what_is_not_a_date() {
        for s in [
            "",
            "20",
            "2021-13",
            "2021-02-30",
            "2021-1-01",
            "2021-01-01-01",
            "abcd",
            "0999",
        ] {
            assert!(s.parse::<PartialDate>().is_err(), "{s} should be refused");
        }
    }
}
