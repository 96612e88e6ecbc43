//! Small text parsers the feed formats share: CSV fields (as the feeds write them, not as
//! RFC 4180 would like), dates, and the column layout of a header.

use std::borrow::Cow;
use std::sync::Arc;

use repnet_model::Timestamp;

/// Splits one CSV line into fields. Fields may be quoted (`"…"`, with `""` for a quote) and
/// may have spaces around them, as MalwareBazaar's `", "` separator and ThreatFox's exports
/// do. Returns `None` for an unterminated quote. Fields borrow from the line unless they hold
/// an escaped quote: feeds are hundreds of millions of fields, and most need no copy.
pub(crate) fn split_csv(line: &str) -> Option<Vec<Cow<'_, str>>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let bytes = line.as_bytes();
    let mut fields = Vec::with_capacity(16);
    let mut at = 0;
    loop {
        // Leading spaces of a field.
        while bytes.get(at) == Some(&b' ') {
            at += 1;
        }
        if bytes.get(at) == Some(&b'"') {
            at += 1;
            let start = at;
            let mut owned: Option<String> = None;
            loop {
                // The delimiters are ASCII, so every index found is a char boundary.
                let quote = start_of(&bytes[at..], b'"')? + at;
                if bytes.get(quote + 1) == Some(&b'"') {
                    owned
                        .get_or_insert_with(String::new)
                        .push_str(&line[at..=quote]);
                    at = quote + 2;
                    continue;
                }
                let field = match owned {
                    Some(mut text) => {
                        text.push_str(&line[at..quote]);
                        Cow::Owned(text)
                    }
                    None => Cow::Borrowed(&line[start..quote]),
                };
                fields.push(field);
                at = quote + 1;
                break;
            }
            // Anything after the closing quote up to the separator is ignored spaces.
            at = start_of(&bytes[at..], b',').map_or(bytes.len(), |comma| at + comma);
        } else {
            let end = start_of(&bytes[at..], b',').map_or(bytes.len(), |comma| at + comma);
            fields.push(Cow::Borrowed(line[at..end].trim_end()));
            at = end;
        }
        if at >= bytes.len() {
            return Some(fields);
        }
        // At a comma.
        at += 1;
    }
}

/// The index of the first `byte` in `bytes`.
fn start_of(bytes: &[u8], byte: u8) -> Option<usize> {
    bytes.iter().position(|b| *b == byte)
}

/// Where each named column is, from a header line. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Columns {
    names: Arc<[String]>,
}

impl Columns {
    pub(crate) fn new(names: &[&str]) -> Columns {
        Columns {
            names: names.iter().map(|n| (*n).to_owned()).collect(),
        }
    }

    /// The columns of a header line, if it names every one of `required`.
    pub(crate) fn from_header(line: &str, required: &[&str]) -> Option<Columns> {
        // Data rows are far more common than headers: rule them out without splitting.
        if !required
            .iter()
            .all(|wanted| contains_ignoring_case(line, wanted))
        {
            return None;
        }
        let names: Arc<[String]> = split_csv(line)?
            .into_iter()
            .map(|name| name.trim().trim_matches('"').to_ascii_lowercase())
            .collect();
        required
            .iter()
            .all(|wanted| names.iter().any(|name| name == wanted))
            .then_some(Columns { names })
    }

    pub(crate) fn index(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// Whether `haystack` contains `needle` (lowercase ASCII), in any case.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// A row's fields by column name.
pub(crate) struct Row<'a> {
    pub(crate) fields: &'a [Cow<'a, str>],
    pub(crate) columns: &'a Columns,
}

impl Row<'_> {
    /// The field, trimmed; `None` when the column is absent, the field empty, or a feed's
    /// word for empty (`n/a`, `None`).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        let value = self.fields.get(self.columns.index(name)?)?.trim();
        match value {
            "" | "n/a" | "N/A" | "None" | "null" => None,
            value => Some(value),
        }
    }
}

/// Parses the dates feeds write: `2026-11-19 10:02:21` (UTC), RFC 3339
/// (`2026-11-19T10:02:21Z`, `…+00:00`, with or without fractions), or a date alone.
pub(crate) fn parse_date(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Option<i64> {
        let part = text.get(range)?;
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (mut hour, mut minute, mut second) = (0, 0, 0);
    let mut offset_seconds = 0i64;
    if bytes.len() > 10 {
        if !matches!(bytes[10], b' ' | b'T' | b't')
            || bytes.len() < 19
            || bytes[13] != b':'
            || bytes[16] != b':'
        {
            return None;
        }
        hour = number(11..13)?;
        minute = number(14..16)?;
        second = number(17..19)?;
        let mut rest = &text[19..];
        if let Some(fraction) = rest.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            rest = &fraction[digits..];
        }
        match rest {
            "" | "Z" | "z" | " UTC" => {}
            zone if zone.len() == 6
                && (zone.starts_with('+') || zone.starts_with('-'))
                && &zone[3..4] == ":" =>
            {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let hours: i64 = zone[1..3].parse().ok()?;
                let minutes: i64 = zone[4..6].parse().ok()?;
                offset_seconds = sign * (hours * 3600 + minutes * 60);
            }
            _ => return None,
        }
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let m = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    u64::try_from(seconds).ok().map(Timestamp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_as_feeds_write_it() {
        let cases: &[(&str, &[&str])] = &[
            ("a,b,c", &["a", "b", "c"]),
            (r#""a","b,c","d""e""#, &["a", "b,c", "d\"e"]),
            (
                r#""2026-11-10 00:38:02", "b36d", "n/a""#,
                &["2026-11-10 00:38:02", "b36d", "n/a"],
            ),
            ("x,,y\r\n", &["x", "", "y"]),
            (
                r#"8500000,https://a.example/?x=1,"quoted, url",yes"#,
                &["8500000", "https://a.example/?x=1", "quoted, url", "yes"],
            ),
            ("", &[""]),
        ];
        for (line, expected) in cases {
            assert_eq!(split_csv(line).unwrap(), *expected, "{line}");
        }
        assert_eq!(split_csv(r#""unterminated"#), None);
        assert_eq!(split_csv(r#""a""""#).unwrap(), ["a\""]);
        assert_eq!(split_csv(r#""""x""y""""#).unwrap(), ["\"x\"y\""]);
        assert_eq!(split_csv("a , b ,").unwrap(), ["a", "b", ""]);
        assert_eq!(split_csv(r#""é,ü", ñ"#).unwrap(), ["é,ü", "ñ"]);
    }

    #[test]
    fn headers_find_columns_in_any_order() {
        let columns = Columns::from_header(
            r#" "first_seen_utc","sha256_hash","md5_hash""#,
            &["sha256_hash"],
        )
        .unwrap();
        assert_eq!(columns.index("md5_hash"), Some(2));
        assert!(Columns::from_header("a,b", &["sha256_hash"]).is_none());
    }

    #[test]
    fn dates() {
        let cases = [
            ("2026-11-19 10:02:21", Some(1_795_082_541)),
            ("2026-11-19T10:02:21Z", Some(1_795_082_541)),
            ("2026-11-19T10:02:21.079Z", Some(1_795_082_541)),
            ("2026-11-19T12:02:21+02:00", Some(1_795_082_541)),
            ("2026-11-19", Some(1_795_046_400)),
            ("1970-01-01 00:00:00", Some(0)),
            ("2026-13-01", None),
            ("yesterday", None),
            ("2026-11-19 10:02", None),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date(text).map(|t| t.0), expected, "{text}");
        }
    }
}
