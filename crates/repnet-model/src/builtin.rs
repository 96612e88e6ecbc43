//! The built-in test set that every server knows from its first start, so that anyone can
//! check an installation end to end: the EICAR test file, and one test domain and one test
//! URL per category under the reserved name `test.repnet.invalid`
//! (`phishing.test.repnet.invalid`, `http://url.test.repnet.invalid/phishing`).

use crate::hash::{FileHash, FileHashes};
use crate::name::ThreatName;
use crate::object::{Domain, Object};
use crate::url::Expression;
use crate::verdict::{Categories, Category, Confidence, Source, SourceRecord, Timestamp, Verdict};

/// The 68-byte EICAR anti-malware test file.
pub const EICAR: &[u8; 68] =
    br"X5O!P%@AP[4\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

/// The threat name of every EICAR variant.
pub const EICAR_THREAT: &str = "EICAR-Test-File";

/// The parent of the test domains.
pub const TEST_DOMAIN_SUFFIX: &str = "test.repnet.invalid";

/// One entry of the built-in test set.
#[derive(Debug, Clone, PartialEq)]
pub struct BuiltinEntry {
    pub object: Object,
    /// For files: all three hashes, so the file is found by any of them.
    pub hashes: FileHashes,
    pub record: SourceRecord,
}

/// The EICAR file as it is commonly saved: exactly as published, with a line ending (`echo`
/// and Windows editors add one), and padded with spaces up to the 128 bytes the standard
/// allows.
fn eicar_variants() -> Vec<Vec<u8>> {
    let with = |suffix: &[u8]| [EICAR.as_slice(), suffix].concat();
    let padded = |ending: &[u8]| {
        let spaces = vec![b' '; 128 - EICAR.len() - ending.len()];
        [EICAR.as_slice(), &spaces, ending].concat()
    };
    vec![
        EICAR.to_vec(),
        with(b"\n"),
        with(b"\r\n"),
        with(b" "),
        padded(b""),
        padded(b"\n"),
        padded(b"\r\n"),
    ]
}

/// The verdict and threat name of the test domain for `category`.
fn test_domain_verdict(category: Category) -> (Verdict, Option<String>) {
    use Category::*;
    let label = category.as_str().replace('_', "-");
    let threat = |verdict| (verdict, Some(format!("Repnet-Test-{label}")));
    match category {
        KnownSoftware | Popular => (Verdict::Trusted, None),
        Riskware | Adware | Miner | RemoteAdmin | Pua => threat(Verdict::Riskware),
        Malware | Ransomware | Phishing | C2 | MalwareDistribution | Exploit | Spam | Botnet
        | Test => threat(Verdict::Untrusted),
    }
}

/// Every entry of the built-in test set, stamped with `now` as first and last sighting.
pub fn builtin_entries(now: Timestamp) -> Vec<BuiltinEntry> {
    let mut entries = Vec::new();
    for variant in eicar_variants() {
        let hashes = FileHashes::of(&variant);
        let Some(sha256) = hashes.sha256 else {
            continue;
        };
        let mut record =
            SourceRecord::new(Source::Builtin, Verdict::Untrusted, Confidence::MAX, now);
        record.threat = ThreatName::new(EICAR_THREAT).ok();
        record.categories = [Category::Malware, Category::Test].into_iter().collect();
        entries.push(BuiltinEntry {
            object: Object::File(FileHash::Sha256(sha256)),
            hashes,
            record,
        });
    }
    for category in Category::ALL.into_iter().filter(|c| *c != Category::Test) {
        let label = category.as_str().replace('_', "-");
        let (verdict, threat) = test_domain_verdict(category);
        let mut record = SourceRecord::new(Source::Builtin, verdict, Confidence::MAX, now);
        record.threat = threat.and_then(|name| ThreatName::new(&name).ok());
        record.categories = Categories::EMPTY.with(category).with(Category::Test);
        if let Ok(domain) = Domain::new(&format!("{label}.{TEST_DOMAIN_SUFFIX}")) {
            entries.push(BuiltinEntry {
                object: Object::Domain(domain),
                hashes: FileHashes::default(),
                record: record.clone(),
            });
        }
        if let Ok(url) = Expression::parse(&format!("http://url.{TEST_DOMAIN_SUFFIX}/{label}")) {
            entries.push(BuiltinEntry {
                object: Object::Url(url),
                hashes: FileHashes::default(),
                record,
            });
        }
    }
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eicar_has_its_published_hashes() {
        let hashes = FileHashes::of(EICAR);
        assert_eq!(
            hashes.md5.unwrap().to_string(),
            "44d88612fea8a8f36de82e1278abb02f"
        );
        assert_eq!(
            hashes.sha1.unwrap().to_string(),
            "3395856ce81f2b7382dee72602f798b642f14140"
        );
        assert_eq!(
            hashes.sha256.unwrap().to_string(),
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
        );
    }

    #[test]
    fn the_test_set_is_complete_and_consistent() {
        let entries = builtin_entries(Timestamp(0));
        let files: Vec<_> = entries
            .iter()
            .filter(|e| matches!(e.object, Object::File(_)))
            .collect();
        assert_eq!(files.len(), 7);
        for file in &files {
            assert_eq!(file.record.verdict, Verdict::Untrusted);
            assert_eq!(
                file.record.threat.as_ref().unwrap().as_str(),
                "EICAR-Test-File"
            );
            assert!(file.hashes.md5.is_some() && file.hashes.sha1.is_some());
        }
        // Variants are distinct files, and none is longer than the 128 bytes EICAR allows.
        let unique: std::collections::HashSet<_> = files.iter().map(|f| f.object.clone()).collect();
        assert_eq!(unique.len(), files.len());
        assert!(
            eicar_variants()
                .iter()
                .all(|v| v.len() <= 128 && v.starts_with(EICAR))
        );

        let domains: Vec<String> = entries
            .iter()
            .filter(|e| matches!(e.object, Object::Domain(_)))
            .map(|e| e.object.to_string())
            .collect();
        assert_eq!(domains.len(), Category::ALL.len() - 1);
        assert!(domains.contains(&"phishing.test.repnet.invalid".to_owned()));
        assert!(domains.contains(&"malware-distribution.test.repnet.invalid".to_owned()));
        assert!(domains.contains(&"remote-admin.test.repnet.invalid".to_owned()));
        let urls: Vec<String> = entries
            .iter()
            .filter(|e| matches!(e.object, Object::Url(_)))
            .map(|e| e.object.to_string())
            .collect();
        assert_eq!(urls.len(), Category::ALL.len() - 1);
        assert!(urls.contains(&"url.test.repnet.invalid/phishing".to_owned()));
    }
}
