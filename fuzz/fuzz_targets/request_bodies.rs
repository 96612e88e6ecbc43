//! Every request body parser of the HTTP API returns an error, never panics, on any bytes;
//! the privacy scrubbers never panic and are idempotent.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = repnet_protocol::parse_lookup_request(data) {
        for item in &request.items {
            if let Ok((kind, text)) = item.target() {
                let _ = repnet_model::Object::parse(kind, text);
            }
        }
    }
    let _ = repnet_protocol::parse_body::<repnet_protocol::SetLocalVerdict<'_>>(data);
    if let Ok(search) = repnet_protocol::parse_body::<repnet_protocol::HashSearchRequest>(data) {
        for prefix in &search.prefixes {
            let _ = repnet_protocol::parse_prefix(prefix);
        }
    }
    let _ = repnet_protocol::binary::parse_request(data);
    let _ = repnet_protocol::binary::parse_response(data);
    // Statistics, licence keys, settings: parsed, then scrubbed as the server does.
    if let Ok(batch) = repnet_protocol::parse_body::<repnet_protocol::StatisticsBatch>(data) {
        for event in &batch.events {
            for text in [&event.name, &event.comment].into_iter().flatten() {
                let scrubbed = repnet_model::privacy::scrub_path(text);
                assert_eq!(repnet_model::privacy::scrub_path(&scrubbed), scrubbed);
            }
            if let Some(url) = &event.url {
                let _ = repnet_model::privacy::scrub_url(url);
            }
        }
    }
    if let Ok(key) = repnet_protocol::parse_body::<repnet_protocol::AddLicenceKey>(data) {
        let _ = repnet_protocol::check_licence_key(&key.key);
        if let Some(expires) = &key.expires {
            let _ = repnet_protocol::parse_time(expires);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = repnet_protocol::parse_time(text);
        let scrubbed = repnet_model::privacy::scrub_text(text);
        assert_eq!(repnet_model::privacy::scrub_text(&scrubbed), scrubbed, "scrubbing is idempotent");
    }
});
