//! What looking up URLs by hash prefix — the client's default since issue 15 — costs against
//! looking them up directly: the real client library against the same server, 1,000 URLs
//! (half known) per lookup, from the URLs as a user gives them to the decided answers,
//! alternating A/B so that machine noise hits both alike.

use std::time::{Duration, Instant};

use repnet_client::{Client, PrivateTarget};
use repnet_model::{CanonicalUrl, ObjectKind, Verdict};
use repnet_protocol::{LookupItem, LookupResult};

use crate::keys;

/// URLs per lookup.
pub(crate) const URLS: usize = 1_000;
/// Distinct sets of URLs, cycled through.
const SETS: usize = 16;

pub(crate) struct Results {
    /// Every lookup's time, by way.
    pub(crate) direct: Vec<Duration>,
    pub(crate) private: Vec<Duration>,
    /// Distinct prefixes a private lookup of 1,000 URLs sends, on average.
    pub(crate) prefixes: f64,
}

/// Measures both ways for `duration` each, `rounds` times.
pub(crate) async fn measure(
    server: &str,
    seed: u64,
    urls: u64,
    rounds: usize,
    duration: Duration,
) -> anyhow::Result<Results> {
    let client = Client::new(server)?;
    let mut rng = keys::Rng::new(seed.wrapping_add(15));
    let sets: Vec<Vec<String>> = (0..SETS)
        .map(|_| {
            (0..URLS)
                .map(|i| {
                    if i % 2 == 0 {
                        keys::url_as_sent(seed, rng.below(urls))
                    } else {
                        keys::absent_url(rng.next_u64())
                    }
                })
                .collect()
        })
        .collect();
    // Both ways must give the same answers, or the comparison means nothing.
    let (direct, private) = (
        direct_lookup(&client, &sets[0]).await?,
        private_lookup(&client, &sets[0]).await?,
    );
    if direct != private {
        anyhow::bail!("the private answers differ from the direct ones");
    }
    let known = direct.iter().filter(|v| **v != Verdict::Unknown).count();
    if known < URLS / 2 {
        anyhow::bail!("only {known} of {URLS} URLs are known: is the URL list imported?");
    }
    let prefixes = sets.iter().map(|set| prefix_count(set) as f64).sum::<f64>() / SETS as f64;
    let mut results = Results {
        direct: Vec::new(),
        private: Vec::new(),
        prefixes,
    };
    for _ in 0..rounds {
        for private in [false, true] {
            let started = Instant::now();
            let mut index = 0;
            while started.elapsed() < duration {
                let set = &sets[index % SETS];
                index += 1;
                let one = Instant::now();
                if private {
                    private_lookup(&client, set).await?;
                    results.private.push(one.elapsed());
                } else {
                    direct_lookup(&client, set).await?;
                    results.direct.push(one.elapsed());
                }
            }
        }
    }
    Ok(results)
}

/// As `repnet lookup --no-private` does: canonicalised here, sent as text in one batch.
async fn direct_lookup(client: &Client, urls: &[String]) -> anyhow::Result<Vec<Verdict>> {
    let canonical: Vec<String> = urls
        .iter()
        .filter_map(|url| CanonicalUrl::parse(url.as_bytes()).ok())
        .map(|url| url.to_string())
        .collect();
    let items: Vec<LookupItem<'_>> = canonical
        .iter()
        .map(|url| LookupItem::new(ObjectKind::Url, url.as_str()))
        .collect();
    let results = client.lookup_items(&items, false).await?;
    Ok(results
        .into_iter()
        .map(|result| match result {
            LookupResult::Reputation(reputation) => reputation.verdict.into(),
            LookupResult::Unavailable(_) => Verdict::Unknown,
        })
        .collect())
}

/// As `repnet lookup` does by default: expressions hashed here, prefixes sent, decided here.
async fn private_lookup(client: &Client, urls: &[String]) -> anyhow::Result<Vec<Verdict>> {
    let targets: Vec<PrivateTarget> = urls
        .iter()
        .filter_map(|url| CanonicalUrl::parse(url.as_bytes()).ok())
        .map(PrivateTarget::url)
        .collect();
    let answers = client.lookup_private(&targets).await?;
    Ok(answers.into_iter().map(|answer| answer.verdict).collect())
}

fn prefix_count(urls: &[String]) -> usize {
    let mut prefixes = std::collections::HashSet::new();
    for url in urls {
        if let Ok(url) = CanonicalUrl::parse(url.as_bytes()) {
            for expression in url.expressions() {
                prefixes.insert(expression.sha256().0[..4].to_vec());
            }
        }
    }
    prefixes.len()
}
