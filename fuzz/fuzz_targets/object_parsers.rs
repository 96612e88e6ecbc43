//! The object parsers (hashes, domains, IP addresses, certificates, URL expressions) never
//! panic, and what they accept prints back to something they accept unchanged.

#![no_main]

use libfuzzer_sys::fuzz_target;
use repnet_model::{Object, ObjectKind};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for kind in ObjectKind::ALL {
        if let Ok(object) = Object::parse(kind, text) {
            let canonical = object.to_string();
            let again = Object::parse(kind, &canonical).expect("a canonical object parses");
            assert_eq!(again, object, "{kind}: {text:?} → {canonical:?}");
        }
    }
});
