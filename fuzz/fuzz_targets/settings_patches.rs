//! Runtime settings patches (`PATCH /v1/admin/settings` on a server and on a proxy) are
//! merged and checked, or refused with an error, never a panic; what is accepted checks.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let server =
        repnet_server::settings::RuntimeSettings::of(&repnet_server::ServerConfig::default());
    if let Ok(patched) = repnet_protocol::merge_patch(&server, data) {
        let _ = patched.check();
    }
    let proxy = repnet_proxy::Settings {
        upstream: "http://127.0.0.1:8080".to_owned(),
        ..repnet_proxy::Settings::default()
    };
    if let Ok(patched) = proxy.patched(data) {
        patched.validate().expect("a patched settings value is valid");
    }
});
