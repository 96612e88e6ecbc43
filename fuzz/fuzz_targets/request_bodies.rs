//! Every request body parser of the HTTP API returns an error, never panics, on any bytes;
//! the privacy scrubbers never panic and are idempotent.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = repnet_protocol::parse_lookup_request(data) {
        for item in &request.items {
            match item.target() {
                Ok(repnet_protocol::ItemTarget::Object(kind, text)) => {
                    let _ = repnet_model::Object::parse(kind, text);
                }
                Ok(repnet_protocol::ItemTarget::File(hashes)) => {
                    let _ = hashes.parse();
                }
                Err(_) => {}
            }
        }
    }
    let _ = repnet_protocol::parse_body::<repnet_protocol::SetLocalVerdict<'_>>(data);
    if let Ok(search) = repnet_protocol::parse_body::<repnet_protocol::HashSearchRequest>(data) {
        for prefix in &search.prefixes {
            let _ = repnet_protocol::parse_prefix(prefix);
        }
        for prefix in search.sha1_prefixes.iter().chain(&search.md5_prefixes) {
            let _ = repnet_protocol::parse_prefix_of(repnet_model::HashKind::Md5, prefix);
            let _ = repnet_protocol::parse_prefix_of(repnet_model::HashKind::Sha1, prefix);
        }
    }
    // The binary form under every layout a query can declare, the first bytes choosing one.
    if let Some((choice, body)) = data.split_first() {
        let layouts = ["sha256", "sha1", "md5", "sha256,sha1,md5", "md5,sha256"];
        let layout = layouts[usize::from(*choice) % layouts.len()];
        if let Ok(layout) = repnet_protocol::binary::Layout::parse(layout) {
            let _ = repnet_protocol::binary::parse_request(body, &layout);
        }
        if let Ok(text) = std::str::from_utf8(body) {
            let _ = repnet_protocol::binary::Layout::parse(text);
        }
    }
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
            if let Some(threat) = &event.threat
                && let Some(kept) = repnet_model::privacy::scrub_threat(threat)
            {
                assert_eq!(repnet_model::privacy::scrub_text(&kept), kept, "a kept threat is clean");
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
