//! `repnet proxy`: serves devices and takes settings.

use crate::common::*;

#[test]
fn the_proxy_command_serves_devices_and_takes_settings() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("data"));
    let proxy = ProxyProcess::start(&server.url, &dir.path().join("proxy"));
    let url = proxy.url.clone();
    let output = run(repnet().args(["lookup", "--server", &url, EICAR_SHA256]));
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let output = run(repnet()
        .args([
            "admin",
            "settings",
            "set",
            "forward_statistics",
            "true",
            "--server",
            &url,
        ])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("\"forward_statistics\": true"),
        "{}",
        stdout(&output)
    );
    let output = run(repnet()
        .args([
            "admin",
            "settings",
            "set",
            "cache_max_entries",
            "0",
            "--server",
            &url,
        ])
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("cache_max_entries"),
        "{}",
        stderr(&output)
    );
}
