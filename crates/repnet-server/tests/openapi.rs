//! The OpenAPI description as the ecosystem's tools read it: `openapi-spec-validator` passes
//! it, and a client generated from it by `openapi-python-client` looks up one file, a JSON
//! batch and a binary batch against a real server. Both tools come from PyPI into the
//! virtual environment `scripts/test.sh` prepares (`REPNET_TEST_VENV`).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::path::{Path, PathBuf};
use std::process::Command;

use repnet_server::ServerConfig;
use repnet_testkit::Server as TestServer;

/// Runs `program` with `args`; panics with its output unless it succeeds.
fn run(program: &Path, args: &[&str], env: &[(&str, &Path)]) -> String {
    let mut command = Command::new(program);
    command.args(args);
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed:\n{text}",
        program.display()
    );
    text
}

/// The server's `/openapi.json`, written to `dir`.
async fn document(server: &TestServer, dir: &Path) -> PathBuf {
    let text = reqwest::get(server.url("/openapi.json"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = dir.join("openapi.json");
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
async fn the_api_description_passes_the_validator() {
    let venv = match repnet_testkit::test_venv() {
        Ok(venv) => venv,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), ServerConfig::default()).await;
    let path = document(&server, dir.path()).await;
    let said = run(
        &venv.join("bin/openapi-spec-validator"),
        &[path.to_str().unwrap()],
        &[],
    );
    assert!(said.contains("OK"), "{said}");
}

/// What the generated client is asked: one file, a JSON batch, a binary batch (its records
/// read as docs/http-api.md describes them).
const USE_THE_CLIENT: &str = r#"
import struct, sys
from io import BytesIO
from repnet_client import Client
from repnet_client.api.lookup import get_file, lookup_batch, lookup_files
from repnet_client.models import LookupRequest, LookupResponse, Reputation
from repnet_client.types import File

base, eicar = sys.argv[1], sys.argv[2]
client = Client(base_url=base, raise_on_unexpected_status=True)
one = get_file.sync(eicar, client=client)
assert isinstance(one, Reputation), one
print("single", one.verdict)
batch = lookup_batch.sync(
    client=client,
    body=LookupRequest.from_dict({"items": [{"file": eicar}, {"domain": "example.org"}]}),
)
assert isinstance(batch, LookupResponse), batch
print("json", " ".join(result.to_dict()["verdict"] for result in batch.results))
digests = bytes.fromhex(eicar) + bytes.fromhex("cd" * 32)
answer = lookup_files.sync(client=client, body=File(payload=BytesIO(digests)), hash_="sha256")
raw = answer.payload.read()
magic, version, size, _, count, _ = struct.unpack_from("<4sBBHII", raw)
assert (magic, version, size, count) == (b"RPNB", 1, 20, 2), (magic, version, size, count)
print("binary", " ".join(str(raw[16 + 20 * i]) for i in range(count)))
"#;

// The tools run as blocking processes: the server answers from the runtime's other threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_generated_from_it_looks_up_one_file_a_json_batch_and_a_binary_batch() {
    let venv = match repnet_testkit::test_venv() {
        Ok(venv) => venv,
        Err(reason) => return eprintln!("skipped: {reason}"),
    };
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"), ServerConfig::default()).await;
    let path = document(&server, dir.path()).await;
    let generated = dir.path().join("generated");
    std::fs::create_dir(&generated).unwrap();
    let out = Command::new(venv.join("bin/openapi-python-client"))
        .args(["generate", "--meta", "none", "--path"])
        .arg(&path)
        .current_dir(&generated)
        .output()
        .unwrap();
    assert!(
        generated
            .join("repnet_client/api/lookup/lookup_files.py")
            .exists(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let script = dir.path().join("use_the_client.py");
    std::fs::write(&script, USE_THE_CLIENT).unwrap();
    let eicar = "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f";
    let said = run(
        &venv.join("bin/python"),
        &[script.to_str().unwrap(), &server.base, eicar],
        &[("PYTHONPATH", &generated)],
    );
    assert_eq!(
        said.lines().collect::<Vec<_>>(),
        ["single untrusted", "json untrusted unknown", "binary 3 0"],
        "{said}"
    );
}
