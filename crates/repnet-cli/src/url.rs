//! `repnet url canonicalize|expressions`: what the network does with a URL, for when a
//! verdict surprises an operator.

use anyhow::Context as _;
use clap::Subcommand;
use repnet_model::CanonicalUrl;

use crate::Outcome;

#[derive(Debug, Subcommand)]
pub(crate) enum UrlCommand {
    /// Print the canonical form of a URL (Safe Browsing v4 rules), on one line.
    Canonicalize {
        /// The URL; a scheme is optional.
        url: String,
    },
    /// Print the expressions a lookup of the URL tries, one per line, most specific first.
    Expressions {
        /// The URL; a scheme is optional.
        url: String,
    },
}

pub(crate) fn run(command: UrlCommand) -> anyhow::Result<Outcome> {
    match command {
        UrlCommand::Canonicalize { url } => println!("{}", parse(&url)?),
        UrlCommand::Expressions { url } => {
            for expression in parse(&url)?.expressions() {
                println!("{expression}");
            }
        }
    }
    Ok(Outcome::Clean)
}

fn parse(url: &str) -> anyhow::Result<CanonicalUrl> {
    CanonicalUrl::parse(url.as_bytes()).with_context(|| format!("{url:?} is not a usable URL"))
}
