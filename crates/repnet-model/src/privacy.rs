//! Scrubbing personal data out of statistics, on the client before an event is queued and
//! again on the server before anything is stored (docs/privacy.md). Pure functions: what they
//! remove never reaches a log, a queue or the disk.
//!
//! - paths: the user's folder becomes a placeholder (`C:\Users\<name>\…` → `%USERPROFILE%\…`,
//!   `/home/<name>/…` and `/Users/<name>/…` → `~/…`), the server of a UNC path `<host>`;
//! - URLs: canonical form, without credentials, port, query or fragment;
//! - free text (file names, comments): e-mail addresses become `<e-mail>`, IP addresses
//!   `<ip>`, and URLs are scrubbed as above.

use std::net::IpAddr;

use crate::url::CanonicalUrl;

/// The placeholder for a Windows user's profile folder.
pub const USER_PROFILE: &str = "%USERPROFILE%";

/// `path` with the user's folder, host names, e-mail and IP addresses replaced.
pub fn scrub_path(path: &str) -> String {
    user_folder(scrub_text(path))
}

/// The user's folder and a UNC server in `text` replaced (nothing else).
fn user_folder(text: String) -> String {
    let lower = text.to_ascii_lowercase();
    let bytes = lower.as_bytes();
    // `X:\Users\<name>` and `X:\Documents and Settings\<name>`, either slash.
    if bytes.len() > 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':' {
        for folder in ["users", "documents and settings"] {
            let rest = &lower[2..];
            let separator = rest.chars().next();
            if matches!(separator, Some('\\' | '/'))
                && rest[1..].starts_with(folder)
                && matches!(rest[1 + folder.len()..].chars().next(), Some('\\' | '/'))
            {
                let name_start = 2 + 1 + folder.len() + 1;
                let name_end = text[name_start..]
                    .find(['\\', '/'])
                    .map_or(text.len(), |at| name_start + at);
                return format!("{USER_PROFILE}{}", &text[name_end..]);
            }
        }
    }
    for home in ["/home/", "/users/"] {
        if lower.starts_with(home) {
            let name_end = text[home.len()..]
                .find('/')
                .map_or(text.len(), |at| home.len() + at);
            return format!("~{}", &text[name_end..]);
        }
    }
    // `\\server\share\…`: the server's name goes.
    if let Some(rest) = text.strip_prefix("\\\\") {
        let host_end = rest.find('\\').unwrap_or(rest.len());
        return format!("\\\\<host>{}", &rest[host_end..]);
    }
    text
}

/// `url` in canonical form without credentials, port, query and fragment; `None` if it is not
/// a usable URL.
pub fn scrub_url(url: &str) -> Option<String> {
    CanonicalUrl::parse(url.as_bytes())
        .ok()
        .map(|url| url.without_query().to_string())
}

/// `text` with e-mail addresses, IP addresses and URLs' personal parts replaced.
pub fn scrub_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut token = String::new();
    let flush = |token: &mut String, out: &mut String| {
        if !token.is_empty() {
            out.push_str(&scrub_token(token));
            token.clear();
        }
    };
    for c in text.chars() {
        if is_delimiter(c) {
            flush(&mut token, &mut out);
            out.push(c);
        } else {
            token.push(c);
        }
    }
    flush(&mut token, &mut out);
    out
}

/// What separates the words of free text.
fn is_delimiter(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            ',' | ';' | '(' | ')' | '<' | '>' | '"' | '\'' | '[' | ']' | '{' | '}' | '\\' | '|'
        )
}

fn scrub_token(token: &str) -> String {
    let lower = token.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("ftp://")
    {
        // A canonical URL may hold a delimiter (an unescaped `"`): escaped here, so that the
        // URL stays one word and scrubbing the result again changes nothing.
        return scrub_url(token).map_or_else(
            || "<url>".to_owned(),
            |url| {
                url.chars()
                    .map(|c| {
                        if is_delimiter(c) {
                            format!("%{:02X}", u32::from(c))
                        } else {
                            c.to_string()
                        }
                    })
                    .collect()
            },
        );
    }
    // Trailing punctuation of a sentence is not part of an address.
    let core = token.trim_end_matches(['.', ':', '!', '?']);
    let tail = &token[core.len()..];
    if core.parse::<IpAddr>().is_ok() {
        return format!("<ip>{tail}");
    }
    if let Some(at) = core.find('@') {
        let (local, domain) = (&core[..at], &core[at + 1..]);
        if !local.is_empty() && domain.contains('.') && !domain.starts_with('.') {
            return format!("<e-mail>{tail}");
        }
    }
    // Paths inside text (`/home/bob/x`): their user folder.
    if core.starts_with("/home/") || core.to_ascii_lowercase().starts_with("/users/") {
        return user_folder(core.to_owned()) + tail;
    }
    token.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_folders_become_placeholders() {
        for (path, scrubbed) in [
            (
                r"C:\Users\bob\Downloads\setup.exe",
                r"%USERPROFILE%\Downloads\setup.exe",
            ),
            (
                r"c:\USERS\Bob.Smith\AppData\x.dll",
                r"%USERPROFILE%\AppData\x.dll",
            ),
            ("D:/Users/alice/a.exe", "%USERPROFILE%/a.exe"),
            (
                r"C:\Documents and Settings\carol\x.exe",
                r"%USERPROFILE%\x.exe",
            ),
            (r"C:\Users\bob", "%USERPROFILE%"),
            ("/home/dave/bin/tool", "~/bin/tool"),
            ("/Users/erin/Downloads/app.dmg", "~/Downloads/app.dmg"),
            (r"\\fileserver01\share\x.exe", r"\\<host>\share\x.exe"),
            (
                r"C:\Program Files\App\app.exe",
                r"C:\Program Files\App\app.exe",
            ),
            ("/usr/bin/ls", "/usr/bin/ls"),
            (
                r"C:\Temp\invoice-bob@example.com.pdf.exe",
                r"C:\Temp\<e-mail>",
            ),
        ] {
            assert_eq!(scrub_path(path), scrubbed, "{path}");
        }
    }

    #[test]
    fn urls_lose_credentials_query_and_fragment() {
        assert_eq!(
            scrub_url("http://bob:secret@Evil.Example:8080/login.php?user=bob&sid=1#top")
                .as_deref(),
            Some("http://evil.example/login.php")
        );
        assert_eq!(scrub_url(""), None);
    }

    #[test]
    fn text_loses_addresses() {
        assert_eq!(
            scrub_text(
                "reported by bob@example.com from 192.0.2.7, see https://x.example/a?token=abc."
            ),
            "reported by <e-mail> from <ip>, see https://x.example/a"
        );
        assert_eq!(
            scrub_text("fe80::1 and 10.0.0.1: fine"),
            "<ip> and <ip>: fine"
        );
        assert_eq!(scrub_text("plain words stay"), "plain words stay");
        assert_eq!(scrub_text("a path /home/frank/x"), "a path ~/x");
    }

    #[test]
    fn scrubbing_is_idempotent() {
        for text in [
            // Found by the fuzzer: a URL whose canonical host holds an unescaped `"`.
            "[[]ftp://objectn:\u{0}\u{f}%22222]ftp://ob\u{7}\u{0}\u{f}%2222222[{\"file\":2",
            r"C:\Users\bob\x@y.com\a",
            "see http://a:b@c.example/?q=1 and 203.0.113.9",
            "/Users/x/y",
        ] {
            let once = scrub_path(text);
            assert_eq!(scrub_path(&once), once, "{text}");
        }
    }
}
