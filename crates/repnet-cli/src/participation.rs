//! Participation on the client side: the choice of a mode before anything is sent (the
//! invitation), the queue of statistics that `extended` mode sends, `repnet participation`
//! and `repnet statement` (docs/privacy.md). The mode is kept in the client's configuration
//! (`crate::config`).

use crate::config::{ClientConfig, ClientFiles, MODE_VARIABLE, Mode};
use repnet_protocol::ErrorCode;

use anyhow::Context as _;
use clap::Subcommand;
use repnet_client::{Client, ClientError};
use repnet_model::privacy;
use repnet_protocol::{StatisticsBatch, StatisticsEvent};

use crate::Outcome;
use crate::connect::ServerArgs;

/// Makes sure a participation mode is chosen before anything is sent: on a terminal, the
/// invitation asks the user (and the answer is saved); elsewhere (scripts, installers) the
/// command fails with what to run, and nothing is sent.
pub(crate) async fn require_choice(
    files: &ClientFiles,
    config: &mut ClientConfig,
    connection: &ServerArgs,
) -> anyhow::Result<()> {
    use std::io::IsTerminal as _;
    if config.from_environment == Some(Mode::Extended) && config.statement_version == 0 {
        anyhow::bail!(
            "{MODE_VARIABLE}=extended needs the server's statement accepted first: read it with `repnet statement`, accept it with `repnet statement --accept`; nothing was sent"
        );
    }
    if config.from_environment.is_some() || config.participation.is_some() {
        return Ok(());
    }
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        anyhow::bail!(
            "nothing was sent: choose what this device shares first, with `repnet participation basic` (lookups: hash prefixes of web addresses, full hashes of files), `repnet participation extended` (and anonymous statistics, once the statement is accepted) or `repnet participation off` (nothing leaves the device); an installer sets {MODE_VARIABLE}=basic in the environment or `participation = \"basic\"` in {} (docs/privacy.md)",
            files.config.display()
        );
    }
    invite(files, config, connection).await
}

/// What each mode sends, as the invitation and `participation show` say it (docs/privacy.md
/// and the server's statement say the same).
const MODES: &str = concat!(
    "  off       nothing leaves this device: lookups answer from its local cache only.\n",
    "  basic     lookups only: hash prefixes of web addresses, full hashes of files. A web\n",
    "            address goes as 4 bytes of the SHA-256 of each of its expressions, never as\n",
    "            the URL, the domain or the IP address; a file as its MD5, SHA-1 and SHA-256,\n",
    "            never its content, name or path. No statistics.\n",
    "  extended  basic, and anonymous statistics: hashes, sizes and scrubbed names of files\n",
    "            detected or seen for the first time, web addresses of detections without\n",
    "            query strings, and your false-positive reports. Only after you accept the\n",
    "            server's statement; raw statistics are deleted after its retention period\n",
    "            (`repnet statement` says how long), only counts remain."
);

/// The invitation: the summary of what each mode sends, then the question, on the terminal.
async fn invite(
    files: &ClientFiles,
    config: &mut ClientConfig,
    connection: &ServerArgs,
) -> anyhow::Result<()> {
    let server = connection.url(config);
    eprintln!(
        "repnet takes part in a reputation network: before anything is sent to {server}, choose what this device shares.\n\n{MODES}\n\nNo personal data is collected, processed or stored in any mode. You can change this at any time with `repnet participation off|basic|extended`."
    );
    for _ in 0..5 {
        let Some(answer) = ask("Participation [off/basic/extended]: ")? else {
            break;
        };
        let Some(mode) = Mode::parse(&answer) else {
            eprintln!("Please answer off, basic or extended.");
            continue;
        };
        if mode == Mode::Extended {
            let statement = connection.client(config)?.statement().await?;
            eprintln!(
                "\nstatement version {}\n\n{}\n\nWhat is collected:",
                statement.version, statement.text
            );
            for category in &statement.categories {
                eprintln!("- {category}");
            }
            match ask("\nDo you accept this statement? [yes/no]: ")? {
                Some(yes) if matches!(yes.trim().to_ascii_lowercase().as_str(), "yes" | "y") => {
                    config.statement_version = statement.version;
                }
                _ => {
                    eprintln!(
                        "Not accepted: no statistics will be sent. Choose off or basic, or extended to read it again."
                    );
                    continue;
                }
            }
        }
        config.participation = Some(mode);
        files.save(config)?;
        eprintln!(
            "participation: {} (saved in {})\n",
            mode.as_str(),
            files.config.display()
        );
        return Ok(());
    }
    anyhow::bail!(
        "no participation mode was chosen, so nothing was sent: run `repnet participation off|basic|extended`"
    )
}

/// Asks a question on standard error and reads the answer from standard input; `None` at
/// its end.
fn ask(question: &str) -> anyhow::Result<Option<String>> {
    use std::io::{BufRead as _, Write as _};
    eprint!("{question}");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let read = std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("cannot read the answer")?;
    Ok((read > 0).then_some(line))
}

/// The batch that would be sent now.
pub(crate) fn next_batch(config: &ClientConfig, events: Vec<StatisticsEvent>) -> StatisticsBatch {
    StatisticsBatch {
        statement_version: config.statement_version,
        installation: match config.installation.as_str() {
            "" => "<a token from the server, made when statistics are first sent>".to_owned(),
            token => token.to_owned(),
        },
        product: concat!("repnet/", env!("CARGO_PKG_VERSION")).to_owned(),
        events,
    }
}

/// Scrubs an event the way the server will, before it is queued, and more: this device's
/// home folder and user name wherever they appear (the server cannot know them).
pub(crate) fn scrubbed(mut event: StatisticsEvent) -> StatisticsEvent {
    let env = |names: &[&str]| {
        names
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()))
    };
    let home = env(&["HOME", "USERPROFILE"]);
    let user = env(&["USER", "USERNAME", "LOGNAME"]);
    let scrub = |text: &str| privacy::scrub_text_for(text, home.as_deref(), user.as_deref());
    event.url = event
        .url
        .map(|url| privacy::scrub_url(&url).unwrap_or_else(|| "<url>".to_owned()));
    event.name = event.name.map(|name| scrub(&name));
    event.comment = event.comment.map(|comment| scrub(&comment));
    event.threat = event
        .threat
        .and_then(|threat| privacy::scrub_threat(&threat));
    event
}

/// Queues events (extended mode only) and sends the queue. A send that fails leaves the queue
/// for next time; a server that publishes a newer statement puts the client back to basic.
pub(crate) async fn queue_and_send(
    files: &ClientFiles,
    config: &mut ClientConfig,
    client: &Client,
    events: Vec<StatisticsEvent>,
) -> anyhow::Result<()> {
    if config.mode() != Mode::Extended {
        return Ok(());
    }
    let mut queue = files.queue()?;
    queue.extend(events.into_iter().map(scrubbed));
    files.save_queue(&queue)?;
    if queue.is_empty() {
        return Ok(());
    }
    let mut enrolled_now = false;
    for chunk in queue.clone().chunks(1000) {
        if config.installation.is_empty() {
            match client.enrol_installation().await {
                Ok(token) => {
                    config.installation = token.installation;
                    files.save(config)?;
                    enrolled_now = true;
                }
                Err(error) => {
                    eprintln!(
                        "repnet: statistics not sent, kept for the next time: cannot enrol this installation: {error}"
                    );
                    return Ok(());
                }
            }
        }
        let mut sent = client
            .send_statistics(&next_batch(config, chunk.to_vec()))
            .await;
        // A token of another server (the configured server changed), or one bound to another
        // licence key: enrol again, once.
        if let Err(ClientError::Api { code, .. }) = &sent
            && matches!(
                code.as_str(),
                "invalid_installation" | "installation_key_mismatch"
            )
            && !enrolled_now
        {
            config.installation.clear();
            match client.enrol_installation().await {
                Ok(token) => {
                    config.installation = token.installation;
                    files.save(config)?;
                    enrolled_now = true;
                    sent = client
                        .send_statistics(&next_batch(config, chunk.to_vec()))
                        .await;
                }
                Err(error) => {
                    files.save(config)?;
                    eprintln!(
                        "repnet: statistics not sent, kept for the next time: cannot enrol this installation: {error}"
                    );
                    return Ok(());
                }
            }
        }
        match sent {
            Ok(_) => {
                let rest: Vec<StatisticsEvent> =
                    files.queue()?.into_iter().skip(chunk.len()).collect();
                files.save_queue(&rest)?;
            }
            Err(ClientError::Api { code, .. })
                if code == ErrorCode::StatementNotAccepted.as_str() =>
            {
                config.participation = Some(Mode::Basic);
                files.save(config)?;
                eprintln!(
                    "repnet: the server's participation statement has changed: participation is back to basic (no statistics) until you read it (`repnet statement`) and accept it (`repnet statement --accept`)"
                );
                return Ok(());
            }
            Err(error) => {
                eprintln!("repnet: statistics not sent, kept for the next time: {error}");
                return Ok(());
            }
        }
    }
    Ok(())
}

#[derive(Debug, Subcommand)]
pub(crate) enum ParticipationCommand {
    /// The mode, the accepted statement, the server, what lookups send, and exactly the JSON
    /// the next statistics batch would contain.
    Show {
        #[command(flatten)]
        connection: ServerArgs,
    },
    /// No network traffic at all: lookups answer from the local cache only.
    Off,
    /// Lookups only, no statistics.
    Basic,
    /// Lookups and anonymous statistics; needs the server's statement accepted.
    Extended {
        #[command(flatten)]
        connection: ServerArgs,
    },
}

pub(crate) async fn participation(
    files: &ClientFiles,
    command: ParticipationCommand,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    match command {
        ParticipationCommand::Show { connection } => {
            let server = connection.url(&config);
            println!("participation: {}", config.mode_and_origin(files));
            println!("server: {server}");
            match config.statement_version {
                0 => println!("statement accepted: none"),
                version => println!("statement accepted: version {version}"),
            }
            println!("what each mode sends:\n{MODES}");
            let mode = config.mode();
            let chosen = config.from_environment.or(config.participation).is_some();
            match mode {
                _ if !chosen => println!(
                    "sent now: nothing; lookups and scans ask you to choose first (on a terminal) or stop"
                ),
                Mode::Off => println!("sent now: nothing; answers come from the local cache"),
                Mode::Basic | Mode::Extended => println!(
                    "sent now, to {server}, by each lookup or scan: hash prefixes of web addresses, full hashes of files (MD5, SHA-1, SHA-256), certificates' thumbprints, and the licence key if one is set; `repnet lookup --private` sends prefixes of files' hashes too, `--no-private` web addresses as they are"
                ),
            }
            let queue = files.queue()?;
            if mode == Mode::Extended && chosen {
                println!("statistics, to {server}: the next batch, exactly as it would be sent:");
            } else {
                println!(
                    "statistics: none are sent in this mode; in extended mode the next batch would be:"
                );
            }
            println!(
                "{}",
                serde_json::to_string_pretty(&next_batch(&config, queue))?
            );
        }
        ParticipationCommand::Off | ParticipationCommand::Basic => {
            let mode = if matches!(command, ParticipationCommand::Off) {
                Mode::Off
            } else {
                Mode::Basic
            };
            config.participation = Some(mode);
            files.save(&mut config)?;
            println!("participation: {}", mode.as_str());
            overridden(&config);
        }
        ParticipationCommand::Extended { connection } => {
            let statement = connection.client(&config)?.statement().await?;
            if config.statement_version != statement.version {
                anyhow::bail!(
                    "extended participation needs the server's statement (version {}) accepted: read it with `repnet statement`, then accept it with `repnet statement --accept`",
                    statement.version
                );
            }
            config.participation = Some(Mode::Extended);
            files.save(&mut config)?;
            println!(
                "participation: extended (statement version {})",
                statement.version
            );
            overridden(&config);
        }
    }
    Ok(Outcome::Clean)
}

/// Says so when `REPNET_PARTICIPATION` will win over what was just saved.
fn overridden(config: &ClientConfig) {
    if let Some(mode) = config.from_environment {
        eprintln!(
            "repnet: {MODE_VARIABLE}={} is set: it wins over the configuration while it is",
            mode.as_str()
        );
    }
}

/// `repnet statement [--accept]`.
pub(crate) async fn statement(
    files: &ClientFiles,
    connection: &ServerArgs,
    accept: bool,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    let statement = connection.client(&config)?.statement().await?;
    println!(
        "statement version {}\n\n{}\n\nWhat is collected:",
        statement.version, statement.text
    );
    for category in &statement.categories {
        println!("- {category}");
    }
    if accept {
        config.statement_version = statement.version;
        files.save(&mut config)?;
        println!(
            "\naccepted statement version {}; `repnet participation extended` turns statistics on",
            statement.version
        );
    } else if config.statement_version != statement.version {
        println!("\nto accept it: repnet statement --accept");
    }
    Ok(Outcome::Clean)
}
