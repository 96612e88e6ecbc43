//! `repnet lookup`: classify each argument strictly, hash the ones that are files (MD5, SHA-1
//! and SHA-256 in one read), ask the server — web addresses by hash prefix only (files too
//! with `--private`; everything as is with `--no-private`), the rest in batches — and print
//! a table, JSON, NDJSON or CSV. An argument that is none of the kinds is
//! reported and the others are still answered; the exit code says whether everything was
//! checked. The client's participation decides the rest: `off` answers from the local cache
//! without any traffic, `extended` also reports first sightings of local files and
//! detections.

use std::io::BufRead as _;
use std::path::Path;

use clap::{Args, ValueEnum};
use repnet_client::PrivateTarget;
use repnet_model::{CanonicalUrl, Domain, FileHash, FileHashes, ObjectKind, canonical_ip};
use repnet_protocol::{
    LookupItem, LookupOutput, LookupResult, Reputation, StatisticsEvent, Verdict,
};

use crate::caches::{Asked, Caches, ServerId};
use crate::config::{ClientFiles, Mode};
use crate::connect::ServerArgs;
use crate::hashing::{self, Which};
use crate::participation::{self};
use crate::{FailOn, Outcome};

#[derive(Debug, Args)]
pub(crate) struct LookupArgs {
    /// What to look up: a file (hashed here: its MD5, SHA-1 and SHA-256 are sent), an
    /// MD5/SHA-1/SHA-256 hash, a URL, a domain, an IP address, or `-` to read them from
    /// standard input, one per line. `domain:`, `url:`, `ip:`, `hash:`, `file:` and
    /// `certificate:` before an argument say what it is.
    #[arg(required = true, value_name = "FILE|HASH|URL|DOMAIN|IP|-")]
    targets: Vec<String>,
    /// Take every argument as this kind, whatever it looks like.
    #[arg(long = "type", value_enum, value_name = "KIND")]
    kind: Option<Kind>,
    #[command(flatten)]
    connection: ServerArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Show every contributing source record and why the verdict won.
    #[arg(long)]
    explain: bool,
    /// Files too by hash prefix: send only 4-byte prefixes of the files' hashes, as URLs,
    /// domains and IP addresses always are, and decide here from the full hashes that come
    /// back. The server then never sees what was looked up.
    #[arg(long, conflicts_with = "no_private")]
    private: bool,
    /// Send URLs, domains and IP addresses as they are instead of by hash prefix (for tools
    /// and integrations on the server's side, which have nothing to hide from it).
    #[arg(long)]
    no_private: bool,
    /// Exit 1 when anything is at least this bad.
    #[arg(long, value_enum, default_value = "untrusted", value_name = "VERDICT")]
    fail_on: FailOn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Table,
    Json,
    Ndjson,
    Csv,
}

/// What an argument is, when the user says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    /// A path to a file, hashed here.
    File,
    /// An MD5, SHA-1 or SHA-256.
    Hash,
    Url,
    Domain,
    Ip,
    /// The SHA-256 thumbprint of a code-signing certificate.
    Certificate,
}

impl Kind {
    const PREFIXES: [(&'static str, Kind); 7] = [
        ("file:", Kind::File),
        ("hash:", Kind::Hash),
        ("url:", Kind::Url),
        ("domain:", Kind::Domain),
        ("ip:", Kind::Ip),
        ("certificate:", Kind::Certificate),
        ("cert:", Kind::Certificate),
    ];
}

/// How one argument is looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    input: String,
    kind: ObjectKind,
    /// The canonical text (for a local file: its SHA-256).
    value: String,
    /// For a local file: every hash of it.
    hashes: Option<FileHashes>,
    /// For a local file: its path and size (a first sighting, in extended participation).
    file: Option<(String, u64)>,
}

impl Target {
    fn new(input: &str, kind: ObjectKind, value: String) -> Target {
        Target {
            input: input.to_owned(),
            kind,
            value,
            hashes: None,
            file: None,
        }
    }

    fn local_file(input: &str, path: &Path) -> Result<Target, String> {
        let hashes = hashing::hash_file(path, Which::All)
            .map_err(|error| format!("cannot read it: {error}"))?;
        let size = std::fs::metadata(path).map_or(0, |m| m.len());
        let full = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let sha256 = hashes.sha256.map(|h| h.to_string()).unwrap_or_default();
        Ok(Target {
            hashes: Some(hashes),
            file: Some((crate::scan::output_path(&full), size)),
            ..Target::new(input, ObjectKind::File, sha256)
        })
    }

    /// What its answer is cached under: for a local file, every hash it was asked by.
    fn asked(&self) -> Asked<'_> {
        match &self.hashes {
            Some(hashes) => Asked::File(hashes),
            None => Asked::Object(self.kind, &self.value),
        }
    }

    /// What the server is asked.
    fn item(&self) -> LookupItem<'_> {
        match &self.hashes {
            Some(hashes) => LookupItem::file(hashes),
            None => LookupItem::new(self.kind, self.value.as_str()),
        }
    }

    /// What privacy mode asks.
    fn private(&self) -> Result<PrivateTarget, String> {
        let invalid = |error: repnet_model::ParseError| error.to_string();
        match self.kind {
            ObjectKind::File => {
                let hashes = match self.hashes {
                    Some(hashes) => hashes,
                    None => {
                        let mut hashes = FileHashes::default();
                        hashes.insert(FileHash::from_hex(&self.value).map_err(invalid)?);
                        hashes
                    }
                };
                PrivateTarget::file(hashes).ok_or_else(|| "no hash".to_owned())
            }
            ObjectKind::Url => Ok(PrivateTarget::url(
                CanonicalUrl::parse(self.value.as_bytes()).map_err(invalid)?,
            )),
            ObjectKind::Domain => {
                PrivateTarget::domain(Domain::new(&self.value).map_err(invalid)?).map_err(invalid)
            }
            ObjectKind::Ip => Ok(PrivateTarget::ip(
                canonical_ip(&self.value).map_err(invalid)?,
            )),
            ObjectKind::Certificate => {
                Err("privacy mode does not look up certificates: leave out --private".to_owned())
            }
        }
    }
}

/// Whether `argument` reads like a path: it names a folder or starts like one. A path that
/// does not exist is "no such file", never a domain or a URL.
fn looks_like_path(argument: &str) -> bool {
    argument.starts_with(['/', '~', '\\'])
        || argument.starts_with("./")
        || argument.starts_with("../")
        || argument.contains('\\')
        || matches!(argument.as_bytes(), [drive, b':', b'\\' | b'/', ..] if drive.is_ascii_alphabetic())
}

/// Classifies `argument` strictly, or says what it is not. An existing file wins over
/// everything (a file may well be named like a hash or a domain); then hashes, IP addresses,
/// URLs (a scheme, or a host with a known suffix before a `/`) and domains (a known public
/// suffix). Anything else is an error that says what to write instead.
fn classify(argument: &str, forced: Option<Kind>) -> Result<Target, String> {
    // `get`, not slicing: the prefix's end may fall inside a character of the argument.
    let (forced, text) = match Kind::PREFIXES.iter().find(|(prefix, _)| {
        argument.len() > prefix.len()
            && argument
                .get(..prefix.len())
                .is_some_and(|start| start.eq_ignore_ascii_case(prefix))
    }) {
        Some((prefix, kind)) => (Some(*kind), argument.get(prefix.len()..).unwrap_or("")),
        None => (forced, argument),
    };
    let invalid = |error: repnet_model::ParseError| error.to_string();
    let path = Path::new(text);
    match forced {
        Some(Kind::File) => {
            return if path.is_file() {
                Target::local_file(argument, path)
            } else if path.is_dir() {
                Err(format!(
                    "is a folder: pass the files in it, or use `repnet scan {text}`"
                ))
            } else {
                Err("no such file".to_owned())
            };
        }
        Some(Kind::Hash) => {
            return FileHash::from_hex(text)
                .map(|hash| Target::new(argument, ObjectKind::File, hash.to_string()))
                .map_err(invalid);
        }
        Some(Kind::Certificate) => {
            return repnet_model::Object::parse(ObjectKind::Certificate, text)
                .map(|object| Target::new(argument, ObjectKind::Certificate, object.to_string()))
                .map_err(invalid);
        }
        Some(Kind::Ip) => {
            return canonical_ip(text)
                .map(|ip| Target::new(argument, ObjectKind::Ip, ip.to_string()))
                .map_err(invalid);
        }
        Some(Kind::Domain) => {
            return Domain::new(text)
                .map(|domain| Target::new(argument, ObjectKind::Domain, domain.to_string()))
                .map_err(invalid);
        }
        Some(Kind::Url) => {
            return CanonicalUrl::parse(text.as_bytes())
                .map(|url| Target::new(argument, ObjectKind::Url, url.to_string()))
                .map_err(invalid);
        }
        None => {}
    }
    if path.is_dir() {
        return Err(format!(
            "is a folder: pass the files in it, or use `repnet scan {text}`"
        ));
    }
    if path.is_file() {
        return Target::local_file(argument, path);
    }
    if looks_like_path(text) {
        return Err("no such file".to_owned());
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return match text.len() {
            32 | 40 | 64 => FileHash::from_hex(text)
                .map(|hash| Target::new(argument, ObjectKind::File, hash.to_string()))
                .map_err(invalid),
            length => Err(format!(
                "not a hash ({length} hexadecimal characters; an MD5 has 32, a SHA-1 40, a SHA-256 64)"
            )),
        };
    }
    if let Ok(ip) = canonical_ip(text) {
        return Ok(Target::new(argument, ObjectKind::Ip, ip.to_string()));
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') && text.contains('.') {
        return Err("not an IP address (each of the four numbers is 0 to 255)".to_owned());
    }
    if text.contains("://") {
        return CanonicalUrl::parse(text.as_bytes())
            .map(|url| Target::new(argument, ObjectKind::Url, url.to_string()))
            .map_err(|error| format!("not a usable URL: {error}"));
    }
    if let Some((host, _)) = text.split_once('/') {
        // `evil.example/login/` is a URL; `reports/q3.pdf` is a file that is not here.
        let host_is_known = canonical_ip(host).is_ok()
            || Domain::new(host).is_ok_and(|domain| domain.has_known_suffix());
        if !host_is_known {
            return Err(format!(
                "no such file (and {host:?} is not a host name with a known suffix, so it is not a URL either: write url:{text} to look it up as one)"
            ));
        }
        return CanonicalUrl::parse(text.as_bytes())
            .map(|url| Target::new(argument, ObjectKind::Url, url.to_string()))
            .map_err(|error| format!("not a usable URL: {error}"));
    }
    match Domain::new(text) {
        Ok(domain) if domain.has_known_suffix() => Ok(Target::new(
            argument,
            ObjectKind::Domain,
            domain.to_string(),
        )),
        Ok(_) => Err(format!(
            "no such file, and not a domain: {:?} is not a public suffix (to look it up as a domain anyway, write domain:{text})",
            text.rsplit('.').next().unwrap_or(text)
        )),
        Err(_) => Err(
            "no such file, and not a hash, IP address, URL or domain name (say which with --type or a prefix such as domain:)"
                .to_owned(),
        ),
    }
}

/// What `repnet admin verdicts set|delete OBJECT` names, classified as `lookup` classifies (a
/// file here is named by all three hashes).
pub(crate) fn admin_item(argument: &str) -> anyhow::Result<LookupItem<'static>> {
    let target =
        classify(argument, None).map_err(|reason| anyhow::anyhow!("{argument}: {reason}"))?;
    Ok(match &target.hashes {
        Some(hashes) => LookupItem::file(hashes),
        None => LookupItem::new(target.kind, target.value),
    })
}

/// What a false-positive report names: a file by SHA-256, or a URL.
pub(crate) struct Reported {
    pub(crate) file: Option<String>,
    pub(crate) url: Option<String>,
}

/// The object `argument` names, for `repnet report-false-positive`: classified as `lookup`
/// classifies (a file here is hashed; a mistake is an error, not a URL).
pub(crate) fn reported_object(argument: &str) -> anyhow::Result<Reported> {
    let target =
        classify(argument, None).map_err(|reason| anyhow::anyhow!("{argument}: {reason}"))?;
    let (file, url) = match target.kind {
        ObjectKind::File => {
            let sha256 = match &target.hashes {
                Some(hashes) => hashes.sha256.map(|h| h.to_string()),
                None => (target.value.len() == 64).then(|| target.value.clone()),
            };
            match sha256 {
                Some(sha256) => (Some(sha256), None),
                None => anyhow::bail!(
                    "{argument}: reports name a file by its SHA-256: give the file itself or its SHA-256"
                ),
            }
        }
        ObjectKind::Url => (None, Some(target.value)),
        ObjectKind::Domain => (None, Some(format!("http://{}/", target.value))),
        ObjectKind::Ip => (
            None,
            Some(match target.value.parse::<std::net::IpAddr>() {
                Ok(std::net::IpAddr::V6(ip)) => format!("http://[{ip}]/"),
                _ => format!("http://{}/", target.value),
            }),
        ),
        ObjectKind::Certificate => {
            anyhow::bail!("{argument}: certificates cannot be reported; report the file they sign")
        }
    };
    Ok(Reported { file, url })
}

/// The arguments with `-` replaced by the lines of standard input (blank lines and lines
/// starting with `#` skipped).
fn arguments(targets: &[String]) -> anyhow::Result<Vec<String>> {
    let mut arguments = Vec::with_capacity(targets.len());
    let mut stdin_read = false;
    for target in targets {
        if target != "-" {
            arguments.push(target.clone());
            continue;
        }
        if std::mem::replace(&mut stdin_read, true) {
            continue;
        }
        for line in std::io::stdin().lock().lines() {
            let line =
                line.map_err(|error| anyhow::anyhow!("cannot read standard input: {error}"))?;
            let line = line.trim();
            if !line.is_empty() && !line.starts_with('#') {
                arguments.push(line.to_owned());
            }
        }
    }
    Ok(arguments)
}

/// One answered argument.
struct Answered {
    target: Target,
    reputation: Reputation,
}

pub(crate) async fn run(args: LookupArgs, files: &ClientFiles) -> anyhow::Result<Outcome> {
    let mut targets = Vec::new();
    let mut refused: Vec<(String, String)> = Vec::new();
    for argument in arguments(&args.targets)? {
        match classify(&argument, args.kind) {
            Ok(target) => targets.push(target),
            Err(reason) => refused.push((argument, reason)),
        }
    }
    let mut config = files.load()?;
    let server = args.connection.url(&config);
    // Answers are cached by the server and key that gave them.
    let server_id = ServerId::new(&server, args.connection.key(&config).as_deref());
    if !targets.is_empty() {
        participation::require_choice(files, &mut config, &args.connection).await?;
    }
    let answered = if targets.is_empty() {
        Vec::new()
    } else if config.mode() == Mode::Off {
        eprintln!(
            "repnet: participation is off: answers come from the local cache only, nothing is sent (`repnet participation basic` asks the server again)"
        );
        from_cache(files, server_id, targets)?
    } else {
        let client = args.connection.client(&config)?;
        let caches = files.caches().ok();
        let answered = ask(
            &args,
            &client,
            caches.as_ref(),
            server_id,
            targets,
            &mut refused,
        )
        .await?;
        let events = statistics(&answered);
        participation::queue_and_send(files, &mut config, &client, events).await?;
        answered
    };
    print(&args, &answered, &refused);
    for (input, reason) in &refused {
        eprintln!("repnet: {input}: {reason}");
    }
    let failing = answered
        .iter()
        .any(|a| args.fail_on.fails(a.reputation.verdict));
    Ok(Outcome::of(failing, !refused.is_empty()))
}

/// Whether `target` is asked by hash prefix: web addresses unless `--no-private`, everything
/// with `--private`. Files are asked by their full hashes by default: a file's hash says
/// which file, not where its user goes, and a full-hash batch is what keeps a scan of a
/// million files fast (docs/privacy.md).
fn by_prefix(args: &LookupArgs, target: &Target) -> bool {
    args.private
        || (!args.no_private
            && matches!(
                target.kind,
                ObjectKind::Url | ObjectKind::Domain | ObjectKind::Ip
            ))
}

/// Asks the server about `targets` (what it cannot answer goes to `refused`), and keeps the
/// answers in the caches for their lifetime. Prefix answers still fresh in the caches are
/// not asked again: their lifetime is the server's promise that they stay true that long.
async fn ask(
    args: &LookupArgs,
    client: &repnet_client::Client,
    caches: Option<&Caches>,
    server: ServerId,
    targets: Vec<Target>,
    refused: &mut Vec<(String, String)>,
) -> anyhow::Result<Vec<Answered>> {
    // Answers are put back in the order of the arguments.
    let mut answered: Vec<(usize, Answered)> = Vec::with_capacity(targets.len());
    let (mut private, mut privately) = (Vec::new(), Vec::new());
    let mut direct = Vec::new();
    for (index, target) in targets.into_iter().enumerate() {
        if !by_prefix(args, &target) {
            direct.push((index, target));
            continue;
        }
        let cached = (!args.explain)
            .then(|| caches.and_then(|caches| caches.answer(server, target.asked())))
            .flatten();
        if let Some(reputation) = cached {
            answered.push((index, Answered { target, reputation }));
            continue;
        }
        match target.private() {
            Ok(query) => {
                private.push(query);
                privately.push((index, target));
            }
            Err(reason) => refused.push((target.input, reason)),
        }
    }
    let mut fresh = Vec::new();
    if !private.is_empty() {
        match client.lookup_private(&private).await {
            Ok(answers) => {
                for ((index, target), answer) in privately.into_iter().zip(answers) {
                    let reputation = Reputation::from_model(&answer, args.explain);
                    fresh.push((index, Answered { target, reputation }));
                }
            }
            // A proxy whose upstream is down and that has not cached these prefixes: the
            // other arguments are still answered.
            Err(repnet_client::ClientError::Api {
                status: 500..,
                code,
                message,
            }) => {
                for (_, target) in privately {
                    refused.push((target.input, format!("not checked: {message} ({code})")));
                }
            }
            Err(error) => return Err(error.into()),
        }
    }
    if !direct.is_empty() {
        let items: Vec<LookupItem<'_>> = direct.iter().map(|(_, target)| target.item()).collect();
        let results = client.lookup_items(&items, args.explain).await?;
        drop(items);
        for ((index, target), result) in direct.into_iter().zip(results) {
            match result {
                LookupResult::Reputation(reputation) => {
                    fresh.push((index, Answered { target, reputation }))
                }
                // A proxy whose upstream is down answers what it has cached; the rest could
                // not be checked.
                LookupResult::Unavailable(error) => refused.push((
                    target.input,
                    format!(
                        "not checked: {} ({})",
                        error.error.message, error.error.code
                    ),
                )),
            }
        }
    }
    // For later lookups and `off` mode. A cache that cannot be written costs nothing but that.
    if let Some(caches) = caches {
        let kept: Vec<(Asked<'_>, &Reputation)> = fresh
            .iter()
            .map(|(_, a)| (a.target.asked(), &a.reputation))
            .collect();
        let _ = caches.save(&[], server, &kept);
    }
    answered.extend(fresh);
    answered.sort_by_key(|(index, _)| *index);
    Ok(answered.into_iter().map(|(_, answered)| answered).collect())
}

/// What extended participation reports about a lookup: first sightings of local files, and
/// detections (untrusted answers).
fn statistics(answered: &[Answered]) -> Vec<StatisticsEvent> {
    let mut events = Vec::new();
    for Answered { target, reputation } in answered {
        let sha256 = match &target.hashes {
            Some(hashes) => hashes.sha256.map(|h| h.to_string()),
            None => (target.kind == ObjectKind::File && target.value.len() == 64)
                .then(|| target.value.clone()),
        };
        let event = |kind: &str| StatisticsEvent {
            kind: kind.to_owned(),
            file: sha256.clone(),
            url: (target.kind == ObjectKind::Url).then(|| target.value.clone()),
            size: target.file.as_ref().map(|(_, size)| *size),
            signer: None,
            name: target.file.as_ref().map(|(path, _)| path.clone()),
            threat: None,
            comment: None,
        };
        if target.file.is_some() {
            events.push(event("sighting"));
        }
        let reportable = sha256.is_some() || target.kind == ObjectKind::Url;
        if reputation.verdict == Verdict::Untrusted && reportable {
            events.push(StatisticsEvent {
                threat: reputation.threat.clone(),
                ..event("detection")
            });
        }
    }
    events
}

/// `off` mode: answers from the local cache (what this server gave), `unknown` for the rest;
/// nothing is sent.
fn from_cache(
    files: &ClientFiles,
    server: ServerId,
    targets: Vec<Target>,
) -> anyhow::Result<Vec<Answered>> {
    let cache = files.caches()?;
    let ttl = repnet_model::TtlPolicy {
        known: 3600,
        unknown: 300,
    };
    let mut answered = Vec::with_capacity(targets.len());
    for target in targets {
        let reputation = match cache.answer(server, target.asked()) {
            Some(reputation) => reputation,
            None => {
                let object = repnet_model::Object::parse(target.kind, &target.value)?;
                Reputation::from_model(&repnet_model::Reputation::unknown(object, &ttl), false)
            }
        };
        answered.push(Answered { target, reputation });
    }
    Ok(answered)
}

fn print(args: &LookupArgs, answered: &[Answered], refused: &[(String, String)]) {
    let outputs = || {
        answered
            .iter()
            .map(|a| LookupOutput {
                input: a.target.input.clone(),
                reputation: Some(a.reputation.clone()),
                error: None,
            })
            .chain(refused.iter().map(|(input, reason)| LookupOutput {
                input: input.clone(),
                reputation: None,
                error: Some(reason.clone()),
            }))
    };
    match args.format {
        Format::Json => {
            let all: Vec<LookupOutput> = outputs().collect();
            println!("{}", repnet_protocol::to_pretty_json(&all));
        }
        Format::Ndjson => {
            for output in outputs() {
                println!(
                    "{}",
                    String::from_utf8_lossy(&repnet_protocol::to_json(&output))
                );
            }
        }
        Format::Csv => print!("{}", csv(answered, refused)),
        Format::Table => print!("{}", table(answered, args.explain)),
    }
}

/// `repnet lookup --format csv`: a header and one row per argument.
fn csv(answered: &[Answered], refused: &[(String, String)]) -> String {
    let field = crate::scan::csv_field;
    let mut out = String::from(
        "input,type,verdict,threat,source,confidence,matched,sha256,md5,sha1,stale,error\n",
    );
    for Answered { target, reputation } in answered {
        let hashes = reputation.object.hashes.clone().unwrap_or_default();
        let row = [
            field(&target.input),
            target.kind.as_str().to_owned(),
            reputation.verdict.as_str().to_owned(),
            field(reputation.threat.as_deref().unwrap_or("")),
            field(reputation.source.as_deref().unwrap_or("")),
            reputation.confidence.to_string(),
            field(
                reputation
                    .matched
                    .clone()
                    .flatten()
                    .as_deref()
                    .unwrap_or(""),
            ),
            hashes.sha256.unwrap_or_default(),
            hashes.md5.unwrap_or_default(),
            hashes.sha1.unwrap_or_default(),
            if reputation.stale { "true" } else { "" }.to_owned(),
            String::new(),
        ];
        out.push_str(&row.join(","));
        out.push('\n');
    }
    for (input, reason) in refused {
        out.push_str(&format!("{},,,,,,,,,,,{}\n", field(input), field(reason)));
    }
    out
}

/// A plain-text table, columns padded to their widest cell. The verdict column reads like a
/// sentence: `untrusted EICAR-Test-File`. A MATCHED column appears when a URL, domain or IP
/// was looked up. With `--explain`, each answer's records follow its row, the deciding one
/// marked `*`.
fn table(answered: &[Answered], explain: bool) -> String {
    if answered.is_empty() {
        return String::new();
    }
    let with_matches = answered.iter().any(|a| {
        matches!(
            a.target.kind,
            ObjectKind::Url | ObjectKind::Domain | ObjectKind::Ip
        )
    });
    let header = [
        "OBJECT",
        "TYPE",
        "VERDICT",
        "SOURCE",
        "CONFIDENCE",
        "MATCHED",
    ]
    .map(str::to_owned);
    let mut cells = vec![header.to_vec()];
    for Answered { target, reputation } in answered {
        let mut verdict = match &reputation.threat {
            Some(threat) => format!("{} {threat}", reputation.verdict.as_str()),
            None => reputation.verdict.as_str().to_owned(),
        };
        if reputation.stale {
            verdict.push_str(" (stale)");
        }
        cells.push(vec![
            target.input.clone(),
            target.kind.as_str().to_owned(),
            verdict,
            reputation.source.clone().unwrap_or_else(|| "-".to_owned()),
            reputation.confidence.to_string(),
            reputation
                .matched
                .clone()
                .flatten()
                .unwrap_or_else(|| "-".to_owned()),
        ]);
    }
    let columns = if with_matches { 6 } else { 5 };
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            cells
                .iter()
                .map(|row| row[column].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |row: &[String]| {
        let padded: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("{}\n", padded.join("  ").trim_end())
    };
    let mut out = line(&cells[0]);
    for (row, Answered { reputation, .. }) in cells[1..].iter().zip(answered) {
        out.push_str(&line(row));
        if explain && let Some(explanation) = &reputation.explain {
            out.push_str(&explained(explanation));
        }
    }
    out
}

/// The records of an explanation, indented under their row.
fn explained(explanation: &repnet_protocol::Explanation) -> String {
    let mut out = String::new();
    if explanation.records.is_empty() {
        out.push_str("    no source knows it\n");
        return out;
    }
    for record in &explanation.records {
        let verdict = match &record.threat {
            Some(threat) => format!("{} {threat}", record.verdict.as_str()),
            None => record.verdict.as_str().to_owned(),
        };
        let on = record
            .expression
            .as_deref()
            .map(|e| format!(" on {e}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "  {} {} {verdict} (confidence {}){on}\n",
            if record.decisive { "*" } else { " " },
            record.source,
            record.confidence,
        ));
        if let Some(reason) = &record.reason {
            out.push_str(&format!("      why: {reason}\n"));
        }
    }
    // Between several matched expressions, why the decisive one decided.
    let mut expressions: Vec<&str> = explanation
        .records
        .iter()
        .filter_map(|record| record.expression.as_deref())
        .collect();
    expressions.dedup();
    if let Some(reason) = explanation
        .expression_reason
        .as_ref()
        .filter(|_| expressions.len() > 1)
    {
        out.push_str(&format!("      expression: {reason}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_classified_strictly() {
        let cases = [
            (
                "44D88612FEA8A8F36DE82E1278ABB02F",
                ObjectKind::File,
                "44d88612fea8a8f36de82e1278abb02f",
            ),
            ("192.0.2.1", ObjectKind::Ip, "192.0.2.1"),
            ("2001:DB8::1", ObjectKind::Ip, "2001:db8::1"),
            ("Example.COM", ObjectKind::Domain, "example.com"),
            (
                "malware.test.repnet.invalid",
                ObjectKind::Domain,
                "malware.test.repnet.invalid",
            ),
            ("domain:invoice.pdf", ObjectKind::Domain, "invoice.pdf"),
            ("ip:10.0.0.1", ObjectKind::Ip, "10.0.0.1"),
            ("a::1", ObjectKind::Ip, "a::1"),
            (
                "http://Evil.Example/a/../b",
                ObjectKind::Url,
                "http://evil.example/b",
            ),
            (
                "evil.example/login/",
                ObjectKind::Url,
                "http://evil.example/login/",
            ),
        ];
        for (argument, kind, value) in cases {
            let target = classify(argument, None).unwrap();
            assert_eq!(
                (target.kind, target.value.as_str()),
                (kind, value),
                "{argument}"
            );
        }
        let certificate = format!("cert:{}", "AB".repeat(32));
        assert_eq!(
            classify(&certificate, None).unwrap().kind,
            ObjectKind::Certificate
        );
        assert_eq!(
            classify(&"ab".repeat(32), Some(Kind::Certificate))
                .unwrap()
                .kind,
            ObjectKind::Certificate
        );
        let refused = [
            ("invoice.pdf", "no such file, and not a domain"),
            ("setup.exe", "not a public suffix"),
            ("./missing.exe", "no such file"),
            ("reports/q3.pdf", "no such file"),
            (&"a".repeat(63), "not a hash (63 hexadecimal characters"),
            ("deadbeef", "not a hash (8"),
            ("999.1.1.1", "not an IP address"),
            ("http://", "not a usable URL"),
            ("a..b", "no such file"),
            ("bad domain!", "no such file"),
            ("file:nope.txt", "no such file"),
            // Not a prefix, and no panic on a character that is not ASCII where one would end.
            ("domäin:x", "no such file"),
            ("ceäü", "no such file"),
            ("C:\\Users\\x\\setup.exe", "no such file"),
        ];
        for (argument, message) in refused {
            let error = classify(argument, None).unwrap_err();
            assert!(error.contains(message), "{argument}: {error}");
        }
    }

    #[test]
    fn an_existing_file_is_hashed_by_all_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("eicar.com");
        std::fs::write(&path, repnet_model::EICAR).unwrap();
        let target = classify(path.to_str().unwrap(), None).unwrap();
        assert_eq!(target.kind, ObjectKind::File);
        assert_eq!(
            target.value,
            "275a021bbfb6489e54d471899f7db9d1663fc695ec2fe2a2c4538aabf651fd0f"
        );
        assert_eq!(target.hashes, Some(FileHashes::of(repnet_model::EICAR)));
        assert!(
            classify(dir.path().to_str().unwrap(), None)
                .unwrap_err()
                .contains("folder")
        );
    }

    #[test]
    fn privacy_mode_takes_every_kind_but_certificates() {
        for argument in [
            "44D88612FEA8A8F36DE82E1278ABB02F",
            &"a".repeat(64),
            "example.com",
            "2001:db8::1",
            "evil.example/x",
        ] {
            assert!(
                classify(argument, None).unwrap().private().is_ok(),
                "{argument}"
            );
        }
        let certificate = classify(&format!("cert:{}", "ab".repeat(32)), None).unwrap();
        assert!(certificate.private().unwrap_err().contains("certificates"));
    }
}
