//! From what a client asks to the answers: files by every hash given, certificates as they
//! are; URLs, domains and IP addresses by their expressions (model `url.rs`), every matched
//! expression weighed by the rule over expressions (model `precedence.rs`; `matched` in the
//! answer).

use repnet_model::{
    CanonicalUrl, Domain, Expression, FileHash, FileHashes, MatchedExpression, Object, ObjectKind,
    ParseError, Reputation, canonical_ip,
};
use repnet_store::Knowledge;

use crate::AppState;
use repnet_http::ApiError;

/// One thing to answer.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    /// What the answer is about.
    object: Object,
    /// For URLs: the canonical URL, which the answer reports.
    url: Option<CanonicalUrl>,
    /// What to read to answer it.
    keys: Keys,
}

#[derive(Debug, Clone)]
enum Keys {
    /// The object itself.
    Direct,
    /// A file by several of its hashes, the strongest first: their knowledge is merged.
    File(Vec<FileHash>),
    /// The expressions of a URL, domain or IP address, most specific first.
    Expressions(Vec<Expression>),
}

impl Lookup {
    /// The query for `text` as an object of `kind`.
    pub(crate) fn parse(kind: ObjectKind, text: &str) -> Result<Lookup, ParseError> {
        match kind {
            ObjectKind::File | ObjectKind::Certificate => {
                Object::parse(kind, text).map(Lookup::direct)
            }
            ObjectKind::Domain => {
                let domain = Domain::new(text)?;
                // A verdict on a parent domain covers its subdomains: look up every host
                // suffix, as a URL on the domain would.
                let expressions =
                    CanonicalUrl::parse(format!("http://{domain}/").as_bytes())?.host_expressions();
                Ok(Lookup {
                    object: Object::Domain(domain),
                    url: None,
                    keys: Keys::Expressions(expressions),
                })
            }
            ObjectKind::Ip => {
                let ip = canonical_ip(text)?;
                Ok(Lookup {
                    object: Object::Ip(ip),
                    url: None,
                    keys: Keys::Expressions(vec![Expression::for_ip(ip)]),
                })
            }
            ObjectKind::Url => Lookup::url(text.as_bytes()),
        }
    }

    /// The query for a URL given as bytes (which may not be UTF-8).
    pub(crate) fn url(bytes: &[u8]) -> Result<Lookup, ParseError> {
        let url = CanonicalUrl::parse(bytes)?;
        Ok(Lookup {
            object: Object::Url(url.exact_expression()),
            keys: Keys::Expressions(url.expressions()),
            url: Some(url),
        })
    }

    pub(crate) fn direct(object: Object) -> Lookup {
        Lookup {
            object,
            url: None,
            keys: Keys::Direct,
        }
    }

    /// One file by every hash given (at least one): answered from the records under all of
    /// them, and named by the strongest.
    pub(crate) fn file(hashes: &FileHashes) -> Option<Lookup> {
        let all: Vec<FileHash> = hashes.iter().collect();
        let object = Object::File(*all.first()?);
        Some(match all.len() {
            1 => Lookup::direct(object),
            _ => Lookup {
                object,
                url: None,
                keys: Keys::File(all),
            },
        })
    }

    /// How many objects the store reads for this query.
    fn reads(&self) -> usize {
        match &self.keys {
            Keys::Direct => 1,
            Keys::File(hashes) => hashes.len(),
            Keys::Expressions(expressions) => expressions.len(),
        }
    }
}

/// Looks every query up in one snapshot and reduces each to its answer.
pub(crate) async fn assess(
    state: &AppState,
    lookups: Vec<Lookup>,
) -> Result<Vec<Reputation>, ApiError> {
    let mut objects = Vec::with_capacity(lookups.iter().map(Lookup::reads).sum());
    for query in &lookups {
        match &query.keys {
            Keys::Direct => objects.push(query.object.clone()),
            Keys::File(hashes) => objects.extend(hashes.iter().copied().map(Object::File)),
            Keys::Expressions(expressions) => {
                objects.extend(expressions.iter().cloned().map(Object::Url))
            }
        }
    }
    let knowledge = state.store.lookup(&objects).await.map_err(|error| {
        crate::failures::store_failed("the knowledge base could not be read", &error)
    })?;
    let mut knowledge = knowledge.into_iter();
    let mut answers = Vec::with_capacity(lookups.len());
    for query in lookups {
        let found: Vec<Knowledge> = knowledge.by_ref().take(query.reads()).collect();
        let reputation = match query.keys {
            Keys::Direct | Keys::File(_) => {
                let known = Knowledge::merge(found);
                Reputation::assess(
                    query.object,
                    known.hashes,
                    known.records,
                    known.prevalence,
                    &state.ttl,
                )
            }
            Keys::Expressions(expressions) => {
                let matches = found
                    .into_iter()
                    .zip(expressions)
                    .map(|(known, expression)| MatchedExpression {
                        expression,
                        records: known.records,
                        prevalence: known.prevalence,
                    })
                    .collect();
                let mut reputation =
                    Reputation::assess_expressions(query.object, matches, &state.ttl);
                reputation.url = query.url;
                reputation
            }
        };
        state
            .metrics
            .count_lookup(reputation.object.kind(), reputation.verdict);
        answers.push(reputation);
    }
    Ok(answers)
}
