//! From what a client asks to the answers: files and certificates are looked up as they
//! are; URLs, domains and IP addresses by their expressions (model `url.rs`), and the most
//! specific expression that has any record decides (`matched` in the answer).

use repnet_model::{
    CanonicalUrl, Domain, Expression, Object, ObjectKind, ParseError, Reputation, canonical_ip,
};

use crate::AppState;
use crate::error::ApiError;

/// One thing to answer.
#[derive(Debug, Clone)]
pub(crate) struct Lookup {
    /// What the answer is about.
    object: Object,
    /// For URLs: the canonical URL, which the answer reports.
    url: Option<CanonicalUrl>,
    /// The expressions to look up, most specific first; empty to look `object` up itself.
    expressions: Vec<Expression>,
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
                    expressions,
                })
            }
            ObjectKind::Ip => {
                let ip = canonical_ip(text)?;
                Ok(Lookup {
                    object: Object::Ip(ip),
                    url: None,
                    expressions: vec![Expression::for_ip(ip)],
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
            expressions: url.expressions(),
            url: Some(url),
        })
    }

    pub(crate) fn direct(object: Object) -> Lookup {
        Lookup {
            object,
            url: None,
            expressions: Vec::new(),
        }
    }
}

/// Looks every query up in one snapshot and reduces each to its answer.
pub(crate) async fn assess(
    state: &AppState,
    lookups: Vec<Lookup>,
) -> Result<Vec<Reputation>, ApiError> {
    let mut objects = Vec::with_capacity(lookups.len());
    for query in &lookups {
        if query.expressions.is_empty() {
            objects.push(query.object.clone());
        } else {
            objects.extend(query.expressions.iter().cloned().map(Object::Url));
        }
    }
    let knowledge = state
        .store
        .lookup(&objects)
        .await
        .map_err(|error| ApiError::internal("the knowledge base could not be read", &error))?;
    let mut knowledge = knowledge.into_iter();
    let mut answers = Vec::with_capacity(lookups.len());
    for query in lookups {
        let reputation = if query.expressions.is_empty() {
            let known = knowledge.next().unwrap_or_default();
            Reputation::assess(
                query.object,
                known.hashes,
                known.records,
                known.prevalence,
                &state.ttl,
            )
        } else {
            let found: Vec<_> = knowledge.by_ref().take(query.expressions.len()).collect();
            let decisive = found
                .into_iter()
                .zip(query.expressions)
                .find(|(known, _)| !known.records.is_empty());
            let mut reputation = match decisive {
                Some((known, expression)) => {
                    let mut reputation = Reputation::assess(
                        query.object,
                        known.hashes,
                        known.records,
                        known.prevalence,
                        &state.ttl,
                    );
                    reputation.matched = Some(expression);
                    reputation
                }
                None => Reputation::unknown(query.object, &state.ttl),
            };
            reputation.url = query.url;
            reputation
        };
        state
            .metrics
            .count_lookup(reputation.object.kind(), reputation.verdict);
        answers.push(reputation);
    }
    Ok(answers)
}
