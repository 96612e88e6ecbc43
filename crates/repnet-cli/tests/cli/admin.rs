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

/// `repnet admin backup DIR` while the server runs and writes, then `repnet admin restore`
/// into a new data directory: a server there answers as the first did, licence keys and
/// runtime settings included.
#[test]
fn a_backup_of_a_running_server_restores_into_a_new_data_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (server, log) = ServerProcess::start_with(&data, &[]);
    ServerProcess::drain(log, None);
    let list = dir.path().join("hashes.txt");
    write_hash_list(&list, 2000);
    let imported = run(repnet()
        .args(["import", "--server", &server.url, "--format", "hashlist"])
        .arg(&list)
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert!(imported.status.success(), "{}", stderr(&imported));
    let blocked = admin(
        &server,
        &[
            "verdicts",
            "set",
            "evil.example",
            "--verdict",
            "untrusted",
            "--comment",
            "INC-42",
        ],
    );
    assert!(blocked.status.success(), "{}", stderr(&blocked));
    let added = admin(
        &server,
        &["keys", "add", "ORG-BACKUP-2027-KEY", "--label", "Org"],
    );
    assert!(added.status.success(), "{}", stderr(&added));
    let patched = crate::common::block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .patch(format!("{}/v1/admin/settings", server.url))
            .bearer_auth(TOKEN)
            .json(&serde_json::json!({"key_requests_per_second": 77}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(patched, 200);

    // Writes go on while the backup is taken: it is one consistent copy, and they are not
    // held up.
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let writer = {
        let (writing, url) = (writing.clone(), server.url.clone());
        std::thread::spawn(move || {
            let mut written = 0;
            while writing.load(std::sync::atomic::Ordering::Relaxed) {
                let body = format!(
                    r#"{{"object":{{"domain":"w{written}.example"}},"verdict":"untrusted"}}"#
                );
                assert_eq!(put_local_verdict(&url, &body), 200);
                written += 1;
            }
            written
        })
    };
    let backup = dir.path().join("backup");
    let output = admin(&server, &["backup", backup.to_str().unwrap()]);
    writing.store(false, std::sync::atomic::Ordering::Relaxed);
    let written = writer.join().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("restore it with"),
        "{}",
        stdout(&output)
    );
    let mut files: Vec<String> = std::fs::read_dir(&backup)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert!(files.contains(&"data.mdb".to_owned()), "{files:?}");
    assert!(files.contains(&"settings.json".to_owned()), "{files:?}");
    // Compacted: no larger than the live file.
    assert!(
        std::fs::metadata(backup.join("data.mdb")).unwrap().len()
            <= std::fs::metadata(data.join("data.mdb")).unwrap().len()
    );
    // A second backup into the same directory is refused, and changes nothing there.
    let again = admin(&server, &["backup", backup.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(2));
    assert!(
        stderr(&again).contains("is not empty"),
        "{}",
        stderr(&again)
    );
    // Without the admin token: refused.
    let refused = run(repnet()
        .args([
            "admin",
            "backup",
            dir.path().join("other").to_str().unwrap(),
        ])
        .args(["--server", &server.url])
        .env("REPNET_ADMIN_TOKEN", "wrong-token-0123456789"));
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("401") || stderr(&refused).contains("token"),
        "{}",
        stderr(&refused)
    );
    assert!(server.terminate().success());

    // Restore into a new directory, and a server there answers as the first did.
    let restored = dir.path().join("restored");
    let output = run(repnet()
        .args(["admin", "restore", backup.to_str().unwrap(), "--data"])
        .arg(&restored));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("entries in the knowledge base"),
        "{}",
        stdout(&output)
    );
    // Not over an existing data directory.
    let output = run(repnet()
        .args(["admin", "restore", backup.to_str().unwrap(), "--data"])
        .arg(&data));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("is not empty"),
        "{}",
        stderr(&output)
    );

    let (server, log) = ServerProcess::start_with(&restored, &[]);
    ServerProcess::drain(log, None);
    let hash = std::fs::read_to_string(&list)
        .unwrap()
        .lines()
        .nth(1234)
        .unwrap()
        .to_owned();
    let answer = lookup(&server, &["--format", "json", &hash]);
    assert!(
        stdout(&answer).contains("\"untrusted\""),
        "{}",
        stdout(&answer)
    );
    let answer = lookup(
        &server,
        &["--format", "json", "--no-private", "domain:evil.example"],
    );
    assert!(stdout(&answer).contains("\"local\""), "{}", stdout(&answer));
    let verdicts = admin(&server, &["verdicts", "list", "--json"]);
    let verdicts: Value = serde_json::from_str(&stdout(&verdicts)).unwrap();
    let count = verdicts["verdicts"].as_array().unwrap().len();
    // The one set before, and those the writer had committed when the copy began: at most
    // all it wrote.
    assert!((1..=1 + written).contains(&count), "{count} of {written}");
    let keys = admin(&server, &["keys", "list", "--json"]);
    assert!(stdout(&keys).contains("Org"), "{}", stdout(&keys));
    let settings = crate::common::block_on(async {
        repnet_client::http_client_builder()
            .build()
            .unwrap()
            .get(format!("{}/v1/admin/settings", server.url))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        settings.contains("\"key_requests_per_second\":77"),
        "{settings}"
    );
}
