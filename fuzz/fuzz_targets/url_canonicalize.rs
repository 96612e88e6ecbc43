//! URL canonicalisation never panics on any bytes, and a canonical URL is a fixed point:
//! canonicalising it again gives it back, with the same expressions.

#![no_main]

use libfuzzer_sys::fuzz_target;
use repnet_model::CanonicalUrl;

fuzz_target!(|data: &[u8]| {
    let Ok(url) = CanonicalUrl::parse(data) else { return };
    let text = url.to_string();
    let again = CanonicalUrl::parse(text.as_bytes()).expect("a canonical URL parses");
    assert_eq!(again.to_string(), text);
    let expressions = url.expressions();
    assert!(!expressions.is_empty() && expressions.len() <= 30);
    assert_eq!(again.expressions(), expressions);
    for expression in &expressions {
        assert!(expression.as_str().is_ascii());
    }
});
