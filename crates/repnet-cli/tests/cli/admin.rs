//! `repnet admin`: licence keys from the command line.

use serde_json::Value;

use crate::common::*;

#[test]
fn licence_keys_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (server, log) = ServerProcess::start_with(&dir.path().join("data"), &["--role", "private"]);
    ServerProcess::drain(log, None);
    let key = "ORG-CLI-2027-ABCD";
    let output = admin(
        &server,
        &[
            "keys",
            "add",
            key,
            "--label",
            "Example Corp",
            "--expires",
            "2099-01-01",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("Example Corp") && !stdout(&output).contains(key));

    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let output = lookup(&server, &["--key", key, eicar]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    // Without a key: exit 2, and the server's message as it is.
    let output = lookup(&server, &[eicar]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("licence_not_registered") && stderr(&output).contains("provider"),
        "{}",
        stderr(&output)
    );

    let output = admin(&server, &["keys", "revoke", key]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = run(repnet()
        .args(["lookup", "--server", &server.url, eicar])
        .env("REPNET_KEY", key));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("licence_revoked"),
        "{}",
        stderr(&output)
    );
    let output = admin(&server, &["keys", "list", "--json"]);
    let list: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert!(list["keys"][0]["revoked"].is_string());
    let output = admin(&server, &["keys", "revoke", "NO-SUCH-KEY-HERE"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("keys list"), "{}", stderr(&output));
    let output = admin(&server, &["keys", "add", "short"]);
    assert_eq!(output.status.code(), Some(2));
}
