//! `repnet completions` and `repnet man`: generated from the command-line definition, and
//! read by the real tools — bash completes with them, groff formats the pages without a
//! warning.

use std::process::{Command, Stdio};

use crate::common::{repnet, run, stderr, stdout};

#[test]
fn bash_completes_commands_and_options_from_the_generated_script() {
    let script = stdout(&run(repnet().args(["completions", "bash"])));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("repnet.bash");
    std::fs::write(&path, script).unwrap();
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {path}; COMP_WORDS=({words}); COMP_CWORD={last}; COMP_LINE='{line}'; COMP_POINT={point}; _repnet repnet '{current}' '{previous}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            path = path.display(),
            words = words
                .iter()
                .map(|w| format!("'{w}'"))
                .collect::<Vec<_>>()
                .join(" "),
            last = words.len() - 1,
            point = line.len(),
            current = words[words.len() - 1],
            previous = words[words.len() - 2],
        );
        let output = Command::new("bash")
            .args(["-c", &program])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        stdout(&output)
    };
    assert_eq!(complete("repnet loo").trim(), "lookup");
    let options = complete("repnet lookup --for");
    assert!(options.lines().any(|line| line == "--format"), "{options}");
    let formats = complete("repnet lookup --format ");
    for format in ["table", "json", "ndjson", "csv"] {
        assert!(
            formats.lines().any(|line| line == format),
            "{format}: {formats}"
        );
    }
    // A shell it does not know: said, with the ones it does.
    let output = repnet().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("bash"), "{}", stderr(&output));
}

#[test]
fn the_manual_pages_format_cleanly() {
    if Command::new("groff")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return eprintln!("skipped: groff is not installed (Debian's groff-base)");
    }
    let dir = tempfile::tempdir().unwrap();
    run(repnet().args(["man", "--dir"]).arg(dir.path()));
    let pages: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    for command in [
        "repnet.1",
        "repnet-serve.1",
        "repnet-lookup.1",
        "repnet-proxy.1",
        "repnet-man.1",
    ] {
        assert!(dir.path().join(command).exists(), "{command}");
    }
    for page in &pages {
        let output = Command::new("groff")
            .args(["-k", "-man", "-Tutf8", "-ww"])
            .arg(page)
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", page.display());
        assert_eq!(stderr(&output), "", "{}: groff warned", page.display());
    }
    let lookup = Command::new("groff")
        .args(["-k", "-man", "-Tutf8", "-P", "-cbou"])
        .arg(dir.path().join("repnet-lookup.1"))
        .output()
        .unwrap();
    let text = stdout(&lookup);
    assert!(text.contains("--format"), "{text}");
    // To standard output without --dir: the main page.
    let page = stdout(&run(repnet().arg("man")));
    assert!(page.contains(".TH repnet 1"), "{page}");
}
