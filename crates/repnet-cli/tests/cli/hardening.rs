//! Hostile input met through the real `repnet` binary: each refused with a clear error, and
//! nothing changed.

use std::io::Write as _;
use std::path::Path;

use crate::common::*;

/// 96 MiB of zeros in about 100 KB: gzip members concatenate, so one is compressed and
/// repeated.
fn gzip_bomb(path: &Path) {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&vec![b'0'; 1 << 20]).unwrap();
    std::fs::write(path, encoder.finish().unwrap().repeat(96)).unwrap();
}

/// 300 MiB of zeros in one zip entry, about 300 KB.
fn zip_bomb(path: &Path) {
    let mut archive = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true);
    archive.start_file("list.txt", options).unwrap();
    let zeros = vec![b'0'; 1 << 20];
    for _ in 0..300 {
        archive.write_all(&zeros).unwrap();
    }
    archive.finish().unwrap();
}

/// Found by the fuzzer: a zip whose reader stopped early (a bomb, or an error) killed
/// `repnet import` with SIGPIPE, silently, exit 141.
#[test]
fn a_zip_bomb_ends_the_local_import_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bomb = dir.path().join("list.zip");
    zip_bomb(&bomb);
    let output = run(repnet()
        .args([
            "import", "--format", "hashlist", "--source", "corp", "--data",
        ])
        .arg(dir.path().join("data"))
        .arg(&bomb));
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("decompression bomb"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_decompression_bomb_is_refused_locally_and_by_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{EICAR_MD5}\n")).unwrap();
    let bomb = dir.path().join("list.txt.gz");
    gzip_bomb(&bomb);
    let import = |args: &[&str], file: &Path| {
        run(repnet()
            .args(["import", "--format", "hashlist", "--source", "corp"])
            .args(args)
            .env("REPNET_ADMIN_TOKEN", TOKEN)
            .arg(file))
    };
    let local = ["--data", data.to_str().unwrap()];
    let output = import(&local, &list);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let output = import(&local, &bomb);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("list.txt.gz")
            && message.contains("decompression bomb")
            && message.contains("--max-expansion-ratio"),
        "{message}"
    );
    // The limit is the user's to raise: then the zeros are read, and are no feed.
    let output = import(
        &[&local[..], &["--max-expansion-ratio", "5000"]].concat(),
        &bomb,
    );
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("line too long"),
        "{}",
        stderr(&output)
    );
    let output = import(
        &[&local[..], &["--max-expansion-ratio", "1"]].concat(),
        &bomb,
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--max-expansion-ratio"),
        "{}",
        stderr(&output)
    );

    let server = ServerProcess::start(&data);
    let output = import(&["--server", &server.url], &bomb);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let message = stderr(&output);
    assert!(
        message.contains("decompression bomb") && message.contains("max_expansion_ratio"),
        "{message}"
    );
    // The list imported first is still there.
    let output = lookup(&server, &[EICAR_MD5]);
    assert_eq!(output.status.code(), Some(1), "{}", stdout(&output));
    assert!(stdout(&output).contains("untrusted"), "{}", stdout(&output));
}

/// A SQLite database whose `FILE` view never ends (nor gives a row), padded to `pad_bytes`:
/// the bigger the database, the more work SQLite may do on it.
fn endless_sqlite(path: &Path, pad_bytes: i64) {
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute_batch(
        "CREATE VIEW FILE AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c)
             SELECT 'x' AS sha256, 'y' AS sha1, 'z' AS md5 FROM c WHERE x < 0;
         CREATE TABLE pad (b BLOB);",
    )
    .unwrap();
    db.execute("INSERT INTO pad VALUES (zeroblob(?1))", [pad_bytes])
        .unwrap();
}

#[test]
fn a_hostile_sqlite_feed_ends_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let endless = dir.path().join("endless.db");
    endless_sqlite(&endless, 0);
    let huge_value = dir.path().join("huge.db");
    rusqlite::Connection::open(&huge_value)
        .unwrap()
        .execute_batch(
            "CREATE VIEW FILE AS SELECT hex(zeroblob(400000000)) AS sha256, 'y' AS sha1, 'z' AS md5;",
        )
        .unwrap();
    for (file, message) in [
        (&endless, "SQLite steps"),
        (&huge_value, "longer than 1048576 bytes"),
    ] {
        let output = run(repnet()
            .args(["import", "--dry-run", "--format", "nsrl"])
            .arg(file));
        assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
        assert!(
            stderr(&output).contains(message) && stderr(&output).contains("not an NSRL database"),
            "{}",
            stderr(&output)
        );
    }
}

/// Sends `file` to the server's import endpoint on a connection of its own, without waiting
/// for the answer: the caller keeps the connection open, or drops it to go away.
fn start_upload(server: &ServerProcess, file: &Path) -> std::net::TcpStream {
    let address = server.url.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let body = std::fs::read(file).unwrap();
    write!(
        stream,
        "POST /v1/admin/imports?format=nsrl&source=hostile HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    stream.write_all(&body).unwrap();
    stream
}

/// Reads the server's log until a line contains `text`.
fn wait_for(log: &mut Log, text: &str) -> String {
    for line in log.by_ref() {
        let line = line.unwrap();
        if line.contains(text) {
            return line;
        }
    }
    panic!("the server's log ended before {text:?}");
}

/// A hostile feed that SQLite would be busy with for many seconds is cancelled at once when
/// its client goes away, and the next import is not held up behind it.
#[test]
fn an_import_stops_when_its_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    // 64 MiB: a budget of about 250 million steps, many seconds of SQLite.
    let endless = dir.path().join("endless.db");
    endless_sqlite(&endless, 64 << 20);
    let (server, mut log) = ServerProcess::start_with(&dir.path().join("data"), &[]);
    let upload = start_upload(&server, &endless);
    wait_for(&mut log, "import started");
    drop(upload);
    let line = wait_for(&mut log, "import");
    assert!(line.contains("import cancelled"), "{line}");
    ServerProcess::drain(log, None);

    let list = dir.path().join("list.txt");
    std::fs::write(&list, format!("{EICAR_MD5}\n")).unwrap();
    let output = run(repnet()
        .args(["import", "--format", "hashlist", "--server", &server.url])
        .arg(&list)
        .env("REPNET_ADMIN_TOKEN", TOKEN));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}

/// SIGTERM stops a server that is importing a hostile feed within its grace period.
#[test]
fn stopping_the_server_cancels_its_imports() {
    let dir = tempfile::tempdir().unwrap();
    let endless = dir.path().join("endless.db");
    endless_sqlite(&endless, 64 << 20);
    let (server, mut log) =
        ServerProcess::start_with(&dir.path().join("data"), &["--shutdown-grace-seconds", "1"]);
    let _upload = start_upload(&server, &endless);
    wait_for(&mut log, "import started");
    let status = server.terminate();
    assert!(status.success(), "{status}");
    let rest: Vec<String> = log.map_while(Result::ok).collect();
    assert!(
        rest.iter().any(|line| line.contains("import cancelled")),
        "{rest:#?}"
    );
}

#[test]
fn a_guessable_admin_token_is_refused_at_start_and_wrong_guesses_are_throttled() {
    let dir = tempfile::tempdir().unwrap();
    for weak in ["a", "secret", "aaaaaaaaaaaaaaaaaaaaaaaaaaaa"] {
        let output = run(repnet()
            .args(["serve", "--listen", "127.0.0.1:0", "--data"])
            .arg(dir.path().join("data"))
            .env("REPNET_ADMIN_TOKEN", weak));
        assert_eq!(output.status.code(), Some(2), "{weak}: {}", stderr(&output));
        let error = stderr(&output);
        assert!(
            error.contains("too easy to guess") && error.contains("openssl rand -hex 32"),
            "{error}"
        );
    }

    let (server, log) = ServerProcess::start_with(&dir.path().join("data"), &[]);
    // The log, read to its end on another thread (the server must never block on it).
    let log = std::thread::spawn(move || log.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    let guess = |token: &str| {
        run(repnet()
            .args(["admin", "status", "--server", &server.url])
            .env("REPNET_ADMIN_TOKEN", token))
    };
    for _ in 0..20 {
        let output = guess("a-wrong-guess-of-the-admin-token");
        assert!(
            stderr(&output).contains("unauthorized"),
            "{}",
            stderr(&output)
        );
    }
    // From this address, even the right token now waits for the minute to end.
    let output = guess(TOKEN);
    assert_ne!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("too many wrong admin tokens"),
        "{}",
        stderr(&output)
    );
    // Twenty refusals, one line in the log: the first of the minute.
    server.terminate();
    let log = log.join().unwrap();
    assert_eq!(log.matches("wrong token refused").count(), 1, "{log}");
}
