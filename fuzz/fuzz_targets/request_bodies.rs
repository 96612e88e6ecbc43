//! Every request body parser of the HTTP API returns an error, never panics, on any bytes.

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
});
