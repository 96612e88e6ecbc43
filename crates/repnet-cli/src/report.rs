//! `repnet report-false-positive`: a participant's report that a verdict is wrong, queued and
//! sent like other statistics.

use crate::Outcome;
use crate::config::{ClientFiles, Mode};
use crate::connect::ServerArgs;
use crate::participation::queue_and_send;
use repnet_protocol::StatisticsEvent;

/// `repnet report-false-positive FILE|SHA256|URL|DOMAIN|IP [--comment TEXT]`.
pub(crate) async fn report_false_positive(
    files: &ClientFiles,
    connection: &ServerArgs,
    target: &str,
    comment: Option<String>,
) -> anyhow::Result<Outcome> {
    let mut config = files.load()?;
    if config.mode() != Mode::Extended {
        anyhow::bail!(
            "false-positive reports are statistics: they are sent in extended participation only (now: {}); see `repnet statement` and `repnet participation extended`",
            config.mode_and_origin(files)
        );
    }
    let reported = crate::lookup::reported_object(target)?;
    let event = StatisticsEvent {
        kind: "false_positive".to_owned(),
        file: reported.file,
        url: reported.url,
        size: None,
        signer: None,
        name: None,
        threat: None,
        comment,
    };
    let client = connection.client(&config)?;
    queue_and_send(files, &mut config, &client, vec![event]).await?;
    if files.queue()?.is_empty() {
        println!("reported: the network's administrator will review it");
    } else {
        println!("queued: it will be sent with the next statistics");
    }
    Ok(Outcome::Clean)
}
