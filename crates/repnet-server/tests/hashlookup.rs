//! CIRCL hashlookup's clients against a real server loaded with NSRL data: the `pyhashlookup`
//! package and MISP's hashlookup expansion module, both from PyPI, unchanged, in the virtual
//! environment `scripts/test.sh` prepares (`REPNET_TEST_VENV`).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::Path;
use std::process::Command;

use repnet_protocol::ImportParams;
use repnet_server::ServerConfig;
use repnet_testkit::Server as TestServer;

/// A server that imported the NSRL sample (`NSRLFile.txt`: SHA-1, MD5, file name…).
async fn server_with_nsrl(dir: &Path) -> TestServer {
    let server = TestServer::start(&dir.join("data"), ServerConfig::default()).await;
    let nsrl = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../repnet-feeds/tests/samples/NSRLFile.txt"),
    )
    .unwrap();
    let report = server
        .admin
        .import_feed(
            &ImportParams::default(),
            repnet_client::ImportBody::Bytes(nsrl),
        )
        .await
        .unwrap();
    assert_eq!(report.stored, 4, "{report:?}");
    server
}

fn python(venv: &Path, script: &str, args: &[&str]) -> String {
    let output = Command::new(venv.join("bin/python"))
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{text}");
    text
}

const KNOWN_MD5: &str = "2EBA9B5884D48CD0C84C8C6E96DB7CF0";
const KNOWN_SHA1: &str = "5539462166174FF6A175D504BD0885323186845D";

const PYHASHLOOKUP: &str = r#"
import sys
from pyhashlookup import Hashlookup
base, md5, sha1 = sys.argv[1:4]
h = Hashlookup(root_url=base)

one = h.md5_lookup(md5.lower())
assert one["SHA-1"] == sha1 and one["MD5"] == md5, one
assert one["source"] == "feed:nsrl" and one["hashlookup:trust"] == 80, one
assert one["repnet:verdict"] == "trusted", one
print("md5", one["SHA-1"])
one = h.lookup(sha1)
assert one["MD5"] == md5, one
print("sha1", one["MD5"])

unknown = h.md5_lookup("0" * 32)
assert unknown == {"message": "Non existing MD5", "query": "0" * 32}, unknown
unknown = h.sha256_lookup("ab" * 32)
assert unknown["message"] == "Non existing SHA-256", unknown
print("unknown", unknown["message"])

bad = h.md5_lookup("xyz")
assert bad["message"].startswith("Expecting a MD5 hex value"), bad
bad = h.sha1_lookup("g" * 40)
assert bad["message"].startswith("SHA-1 is not in hex format"), bad
print("malformed", bad["message"])

found = h.md5_bulk_lookup([md5, "1" * 32])
assert [f["SHA-1"] for f in found] == [sha1], found
answers = h.lookup([sha1, "2" * 40])
assert answers[0]["MD5"] == md5 and answers[1] == {}, answers
print("bulk", len(found), len(answers))
refused = h.sha1_bulk_lookup([sha1, "not a hash"])
assert refused["message"] == 'hashes[1] is not a SHA-1: "not a hash"', refused

info = h.info()
assert info["hashlookup-version"] == "1.0" and int(info["repnet-entries"]) > 0, info
top = h.top()
assert top == {"nx": [], "exist": []}, top
children = h.sha1_children(sha1)
assert "no parents or children" in children["message"], children
print("info", info["hashlookup-version"])
"#;

// The tools run as blocking processes: the server answers from the runtime's other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyhashlookup_finds_known_unknown_and_malformed_hashes() {
    let venv = match repnet_testkit::test_venv() {
        Ok(venv) => venv,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_nsrl(dir.path()).await;
    let said = python(&venv, PYHASHLOOKUP, &[&server.base, KNOWN_MD5, KNOWN_SHA1]);
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            format!("md5 {KNOWN_SHA1}"),
            format!("sha1 {KNOWN_MD5}"),
            "unknown Non existing SHA-256".to_owned(),
            "malformed SHA-1 is not in hex format: use only 0-9 and a-f (either case)".to_owned(),
            "bulk 1 2".to_owned(),
            "info 1.0".to_owned(),
        ],
        "{said}"
    );
    server.stop().await;
}

/// MISP's module, configured with repnet as its `custom_API` (it joins the URL into
/// `…//lookup/md5/…`).
const MISP: &str = r#"
import json, sys
from misp_modules.modules.expansion import hashlookup
base, md5, sha1 = sys.argv[1:4]
def ask(kind, value):
    query = {"attribute": {"type": kind, "value": value, "uuid": "5f5b9d2e-8f1c-4b3c-9a57-0c7d3b0f1a11"},
             "config": {"custom_API": base}}
    return hashlookup.handler(json.dumps(query))
found = ask("md5", md5)
objects = found["results"]["Object"]
values = {a["object_relation"]: a["value"] for a in objects[0]["Attribute"]}
assert values["SHA-1"] == sha1 and values["source"] == "feed:nsrl", values
print("known", objects[0]["name"], values["MD5"])
print("unknown", ask("sha1", "3" * 40)["error"])
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misps_hashlookup_module_enriches_a_known_hash() {
    let venv = match repnet_testkit::test_venv() {
        Ok(venv) => venv,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_nsrl(dir.path()).await;
    let said = python(
        &venv,
        MISP,
        &[&format!("{}/", server.base), KNOWN_MD5, KNOWN_SHA1],
    );
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        [
            format!("known hashlookup {KNOWN_MD5}"),
            "unknown Non existing hash".to_owned(),
        ],
        "{said}"
    );
    server.stop().await;
}
