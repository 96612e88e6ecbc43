//! `repnet bundle`: keys, exports and imports of offline bundles.

use std::path::Path;

use repnet_store::{Store, StoreOptions};

use crate::common::*;

#[test]
fn bundles_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (global, inside) = (dir.path().join("global"), dir.path().join("inside"));
    let list = dir.path().join("list.txt");
    write_hash_list(&list, 1_000);
    let import = |data: &Path| {
        run(repnet()
            .args(["import", "--format", "hashlist", "--source", "kb", "--data"])
            .arg(data)
            .arg(&list))
    };
    assert_eq!(import(&global).status.code(), Some(0));
    let stem = dir.path().join("provider");
    let output = run(repnet().args(["bundle", "keygen", "--out"]).arg(&stem));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let (secret, public) = (stem.with_extension("key"), stem.with_extension("pub"));
    let export = |out: &Path, after: Option<&str>| {
        let mut command = repnet();
        command
            .args(["bundle", "export", "--signing-key"])
            .arg(&secret)
            .arg("--out")
            .arg(out)
            .arg("--data")
            .arg(&global);
        if let Some(after) = after {
            command.args(["--after", after]);
        }
        run(&mut command)
    };
    let import_bundle = |file: &Path| {
        run(repnet()
            .args(["bundle", "import"])
            .arg(file)
            .arg("--data")
            .arg(&inside)
            .arg("--public-key")
            .arg(&public))
    };
    let full = dir.path().join("full.bundle");
    let output = export(&full, None);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let output = import_bundle(&full);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("snapshot"), "{}", stdout(&output));
    let to: u64 = stdout(&output)
        .split(" → ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // More upstream; a bundle after a sequence the inside has not reached is refused.
    let more = dir.path().join("more.txt");
    std::fs::write(&more, format!("{}\n", "cd".repeat(32))).unwrap();
    let output = run(repnet()
        .args([
            "import", "--format", "hashlist", "--source", "more", "--data",
        ])
        .arg(&global)
        .arg(&more));
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let ahead = dir.path().join("ahead.bundle");
    assert_eq!(
        export(&ahead, Some(&(to + 1).to_string())).status.code(),
        Some(0)
    );
    let output = import_bundle(&ahead);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains(&format!("export with --after {to}")),
        "{}",
        stderr(&output)
    );
    let next = dir.path().join("next.bundle");
    assert_eq!(export(&next, Some(&to.to_string())).status.code(), Some(0));
    let output = import_bundle(&next);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));

    let store = Store::open(&inside, &StoreOptions::default()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let hash = repnet_model::Sha256::from_hex(&"cd".repeat(32)).unwrap();
    let found = runtime
        .block_on(
            store.lookup(&[repnet_model::Object::File(repnet_model::FileHash::Sha256(
                hash,
            ))]),
        )
        .unwrap();
    assert_eq!(found[0].records[0].source, repnet_model::Source::Upstream);
}
