//! Times on the wire: RFC 3339 in UTC, written without allocating on the hot path.

use repnet_model as model;

/// Formats a timestamp as RFC 3339 in UTC (`2026-11-29T07:01:25Z`); `None` past the year
/// 9999.
pub fn rfc3339(timestamp: model::Timestamp) -> Option<String> {
    let mut buffer = [0u8; 20];
    write_rfc3339(timestamp, &mut buffer).map(str::to_owned)
}

/// Formats a timestamp as RFC 3339 in UTC (`2026-11-29T07:01:25Z`) into `buffer`; `None` past
/// the year 9999, which RFC 3339 cannot write.
pub(crate) fn write_rfc3339(timestamp: model::Timestamp, buffer: &mut [u8; 20]) -> Option<&str> {
    const MAX: u64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    if timestamp.0 > MAX {
        return None;
    }
    let days = (timestamp.0 / 86_400) as i64;
    let seconds_of_day = timestamp.0 % 86_400;
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let digits = |buffer: &mut [u8; 20], at: usize, value: u64, width: usize| {
        let mut value = value;
        for position in (at..at + width).rev() {
            buffer[position] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    digits(buffer, 0, year as u64, 4);
    buffer[4] = b'-';
    digits(buffer, 5, month as u64, 2);
    buffer[7] = b'-';
    digits(buffer, 8, day as u64, 2);
    buffer[10] = b'T';
    digits(buffer, 11, seconds_of_day / 3600, 2);
    buffer[13] = b':';
    digits(buffer, 14, seconds_of_day / 60 % 60, 2);
    buffer[16] = b':';
    digits(buffer, 17, seconds_of_day % 60, 2);
    buffer[19] = b'Z';
    std::str::from_utf8(buffer).ok()
}
