//! Licence keys on the wire: the admin API that registers them (`/v1/admin/keys`), and the
//! dates it takes.

use repnet_model as model;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::time::rfc3339;

/// `POST /v1/admin/keys`: register a licence key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddLicenceKey {
    /// The key as issued to the organisation: 8 to 512 printable ASCII characters, no spaces.
    pub key: String,
    /// Who it is for (an organisation, a contract); at most 200 characters.
    #[serde(default)]
    pub label: Option<String>,
    /// When it stops working: RFC 3339 (`2027-01-01T00:00:00Z`) or a date (`2027-01-01`,
    /// midnight UTC).
    #[serde(default)]
    pub expires: Option<String>,
}

/// One licence key as the admin API shows it: never the key itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LicenceKeyEntry {
    /// Derived from the key (`repnet admin keys revoke KEY` finds it without a listing).
    pub id: String,
    pub label: Option<String>,
    /// RFC 3339.
    pub created: Option<String>,
    pub expires: Option<String>,
    /// When the key was last presented; recorded at most once a minute.
    pub last_used: Option<String>,
    /// When it was revoked; null while it is in force.
    pub revoked: Option<String>,
}

impl LicenceKeyEntry {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: &str,
        label: Option<&str>,
        created: model::Timestamp,
        expires: Option<model::Timestamp>,
        last_used: Option<model::Timestamp>,
        revoked: Option<model::Timestamp>,
    ) -> LicenceKeyEntry {
        LicenceKeyEntry {
            id: id.to_owned(),
            label: label.map(str::to_owned),
            created: rfc3339(created),
            expires: expires.and_then(rfc3339),
            last_used: last_used.and_then(rfc3339),
            revoked: revoked.and_then(rfc3339),
        }
    }
}

/// `GET /v1/admin/keys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LicenceKeyList {
    pub keys: Vec<LicenceKeyEntry>,
}

/// The id the admin API shows for `key`: 16 hex digits of a hash of it, so that the key
/// itself never needs to be shown or sent to find its record.
pub fn licence_key_id(key_sha256: &model::Sha256) -> String {
    // A second hash (of the stored hash, with a label) rather than a prefix of the stored
    // one, so that ids shown in logs and listings say nothing about what is stored.
    let mut input = b"repnet licence key id\0".to_vec();
    input.extend_from_slice(key_sha256.as_bytes());
    let digest = model::Sha256::digest(&input);
    digest.as_bytes()[..8]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Why a licence key's text is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LicenceKeyError {
    #[error("a licence key has 8 to 512 characters; this one has {0}")]
    Length(usize),
    #[error("a licence key is printable ASCII without spaces; this one has {0:?}")]
    Character(char),
}

/// Checks a licence key's text: what the server accepts and what an HTTP header can carry.
pub fn check_licence_key(key: &str) -> Result<(), LicenceKeyError> {
    if !(8..=512).contains(&key.len()) {
        return Err(LicenceKeyError::Length(key.len()));
    }
    if let Some(bad) = key.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(LicenceKeyError::Character(bad));
    }
    Ok(())
}

/// A text that is not a date or a time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a date or time: write 2027-01-01 or 2027-01-01T00:00:00Z (RFC 3339)")]
pub struct TimeError(pub String);

/// The token of an `Authorization: Bearer TOKEN` header value. The scheme's name is matched
/// in any case (`bearer` is the same scheme, RFC 9110 §11.1), and surrounding spaces are not
/// part of the token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Parses an RFC 3339 time (`2027-01-01T00:00:00Z`, `2027-01-01T02:00:00+02:00`, fractions
/// of a second ignored) or a date (`2027-01-01`, midnight UTC) into Unix seconds.
pub fn parse_time(text: &str) -> Result<model::Timestamp, TimeError> {
    let fail = || TimeError(text.to_owned());
    let bytes = text.as_bytes();
    let number = |range: std::ops::Range<usize>| -> Result<i64, TimeError> {
        let part = bytes.get(range).ok_or_else(fail)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return Err(fail());
        }
        Ok(part
            .iter()
            .fold(0i64, |value, digit| value * 10 + i64::from(digit - b'0')))
    };
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(fail());
    }
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => return Err(fail()),
    };
    if day < 1 || day > days_in_month || year < 1970 {
        return Err(fail());
    }
    let mut seconds = 0i64;
    if bytes.len() > 10 {
        if !matches!(bytes[10], b'T' | b't' | b' ')
            || bytes.get(13) != Some(&b':')
            || bytes.get(16) != Some(&b':')
        {
            return Err(fail());
        }
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if hour > 23 || minute > 59 || second > 60 {
            return Err(fail());
        }
        seconds = hour * 3600 + minute * 60 + second;
        let mut rest = &bytes[19..];
        if let Some(fraction) = rest.strip_prefix(b".") {
            let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return Err(fail());
            }
            rest = &fraction[digits..];
        }
        let offset = match rest {
            b"Z" | b"z" => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digit = |b: &u8| -> Result<i64, TimeError> {
                    if b.is_ascii_digit() {
                        Ok(i64::from(b - b'0'))
                    } else {
                        Err(fail())
                    }
                };
                let (hours, minutes) = (digit(h1)? * 10 + digit(h2)?, digit(m1)? * 10 + digit(m2)?);
                // An offset is at most 23:59 (RFC 3339); `+99:99` is not a time.
                if hours > 23 || minutes > 59 {
                    return Err(fail());
                }
                let minutes = hours * 60 + minutes;
                if *sign == b'+' {
                    minutes * 60
                } else {
                    -minutes * 60
                }
            }
            _ => return Err(fail()),
        };
        seconds -= offset;
    }
    // Days from 1970-01-01 to the civil date (Howard Hinnant's algorithm).
    let (y, m) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let day_of_year = (153 * m + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    u64::try_from(days * 86_400 + seconds)
        .map(model::Timestamp)
        .map_err(|_| fail())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_and_print_back() {
        for (text, printed) in [
            ("2027-01-01", "2027-01-01T00:00:00Z"),
            ("2027-01-01T00:00:00Z", "2027-01-01T00:00:00Z"),
            ("2026-11-29T07:01:25.123Z", "2026-11-29T07:01:25Z"),
            ("2027-01-01T02:30:00+02:30", "2027-01-01T00:00:00Z"),
            ("2024-02-29T23:59:59-01:00", "2024-03-01T00:59:59Z"),
            ("1970-01-01", "1970-01-01T00:00:00Z"),
        ] {
            let time = parse_time(text).unwrap_or_else(|error| panic!("{text}: {error}"));
            assert_eq!(rfc3339(time).as_deref(), Some(printed), "{text}");
        }
    }

    #[test]
    fn bearer_tokens_in_any_case() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER   abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearerabc"), None);
    }

    #[test]
    fn bad_times_are_refused_with_an_example() {
        for text in [
            "",
            "2027",
            "2027-13-01",
            "2027-02-29",
            "2027-01-01T25:00:00Z",
            "2027-01-01T00:00:00",
            "2027-01-01T00:00Z",
            "tomorrow",
            "2027-01-01T00:00:00.Z",
            "1969-12-31",
            "2027-01-01T00:00:00+99:99",
            "2027-01-01T00:00:00+24:00",
            "2027-01-01T00:00:00-00:60",
        ] {
            let error = parse_time(text).unwrap_err();
            assert!(
                error.to_string().contains("2027-01-01T00:00:00Z"),
                "{text}: {error}"
            );
        }
    }

    #[test]
    fn every_time_in_range_round_trips() {
        let mut time = 0u64;
        while time < 253_402_300_799 {
            let text = rfc3339(model::Timestamp(time)).unwrap();
            assert_eq!(parse_time(&text), Ok(model::Timestamp(time)), "{text}");
            time += 86_399 * 37 + 11;
        }
    }

    #[test]
    fn keys_are_checked_and_ids_stable() {
        assert!(check_licence_key("ORG-2027-AAAA-BBBB").is_ok());
        assert!(check_licence_key("short").is_err());
        assert!(check_licence_key("has a space in it").is_err());
        assert!(check_licence_key("line\nbreak-in-the-key").is_err());
        let id = licence_key_id(&model::Sha256::digest(b"ORG-2027-AAAA-BBBB"));
        assert_eq!(id.len(), 16);
        assert_eq!(
            id,
            licence_key_id(&model::Sha256::digest(b"ORG-2027-AAAA-BBBB"))
        );
        assert_ne!(
            id,
            licence_key_id(&model::Sha256::digest(b"ORG-2027-AAAA-BBBC"))
        );
    }
}
