//! Prometheus metrics: lookups by object type and verdict, HTTP requests by route and status,
//! request latency by route, and how the scheduled feeds' refreshes go.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use repnet_model::{ObjectKind, Timestamp, Verdict};
use repnet_protocol::ImportReport;

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct LookupLabels {
    object: &'static str,
    verdict: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeedLabels {
    feed: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FeedRefreshLabels {
    feed: String,
    outcome: &'static str,
}

/// The scheduled feeds' metrics.
#[derive(Clone, Debug, Default)]
struct FeedMetrics {
    refreshes: Family<FeedRefreshLabels, Counter>,
    up: Family<FeedLabels, Gauge>,
    last_success: Family<FeedLabels, Gauge>,
    entries: Family<FeedLabels, Gauge>,
    skipped: Family<FeedLabels, Gauge>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusalLabels {
    code: &'static str,
}

/// Licence checks and pulling from upstream.
#[derive(Clone, Debug, Default)]
struct NetworkMetrics {
    refusals: Family<RefusalLabels, Counter>,
    upstream_up: Gauge,
    upstream_lag: Gauge,
    upstream_last_success: Gauge,
    upstream_applied: Counter,
}

/// The server's metrics. Cloning shares them.
#[derive(Clone, Debug)]
pub(crate) struct Metrics {
    registry: Arc<Registry>,
    /// Indexed by `[object kind][verdict]`, resolved once at startup so that counting a
    /// lookup is one atomic add, without the family's map lookup.
    lookups: Arc<[[Counter; 4]; 5]>,
    requests: Family<RequestLabels, Counter>,
    /// `(route, 200)` counters and the latency histograms, by index into [`ROUTES`] (the
    /// last for unmatched requests), resolved at startup for the same reason as `lookups`.
    ok_requests: Arc<[Counter]>,
    latency: Arc<[Histogram]>,
    feeds: FeedMetrics,
    network: NetworkMetrics,
}

fn latency_histogram() -> Histogram {
    // 50 µs to ~1.6 s.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

impl Metrics {
    /// The server's metrics, with those of its background `workers` and of the process,
    /// read at each scrape. The `repnet_upstream_*` metrics are exported only by a server
    /// that has an `upstream`: elsewhere a constant 0 would page someone for nothing.
    pub(crate) fn new(workers: &repnet_runtime::Workers, upstream: bool) -> Metrics {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(repnet_runtime::workers::WorkerMetrics(
            workers.clone(),
        )));
        registry.register_collector(Box::new(repnet_runtime::process::ProcessMetrics {
            component: "serve",
        }));
        let lookup_family = Family::<LookupLabels, Counter>::default();
        registry.register(
            "repnet_lookups",
            "Objects looked up, by object type and answered verdict",
            lookup_family.clone(),
        );
        let lookups = ObjectKind::ALL.map(|kind| {
            Verdict::ALL.map(|verdict| {
                lookup_family
                    .get_or_create(&LookupLabels {
                        object: kind.as_str(),
                        verdict: verdict.as_str(),
                    })
                    .clone()
            })
        });
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "repnet_http_requests",
            "HTTP requests, by route and status",
            requests.clone(),
        );
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register(
            "repnet_http_request_duration_seconds",
            "Time from request to response, by route",
            latency.clone(),
        );
        let feeds = FeedMetrics::default();
        registry.register(
            "repnet_feed_refreshes",
            "Refreshes of scheduled feeds, by feed and outcome (imported, not_modified, failed)",
            feeds.refreshes.clone(),
        );
        registry.register(
            "repnet_feed_up",
            "Whether the feed's last refresh succeeded (1) or failed and its previous data is kept (0)",
            feeds.up.clone(),
        );
        registry.register(
            "repnet_feed_last_success_timestamp_seconds",
            "When the feed was last imported or confirmed unchanged, in Unix time",
            feeds.last_success.clone(),
        );
        registry.register(
            "repnet_feed_entries",
            "Entries stored by the feed's last import",
            feeds.entries.clone(),
        );
        registry.register(
            "repnet_feed_skipped_rows",
            "Rows skipped as bad by the feed's last import",
            feeds.skipped.clone(),
        );
        let network = NetworkMetrics::default();
        registry.register(
            "repnet_licence_refusals",
            "Requests refused for their licence key, by code (licence_not_registered, licence_expired, licence_revoked, rate_limited)",
            network.refusals.clone(),
        );
        if upstream {
            registry.register(
                "repnet_upstream_up",
                "Whether the last pull from the upstream server succeeded (1) or failed (0)",
                network.upstream_up.clone(),
            );
            registry.register(
                "repnet_upstream_lag_changes",
                "Changes the upstream server had, as of its last answer, that this one has not applied",
                network.upstream_lag.clone(),
            );
            registry.register(
                "repnet_upstream_last_success_timestamp_seconds",
                "When a pull from the upstream server last succeeded, in Unix time",
                network.upstream_last_success.clone(),
            );
            registry.register(
                "repnet_upstream_entries_applied",
                "Entries of changes and snapshots applied from the upstream server",
                network.upstream_applied.clone(),
            );
        }
        let routes = ROUTES.iter().copied().chain(std::iter::once(UNMATCHED));
        let ok_requests = routes
            .clone()
            .map(|route| {
                requests
                    .get_or_create(&RequestLabels { route, status: 200 })
                    .clone()
            })
            .collect();
        let latency = routes
            .map(|route| latency.get_or_create(&RouteLabels { route }).clone())
            .collect();
        Metrics {
            registry: Arc::new(registry),
            lookups: Arc::new(lookups),
            requests,
            ok_requests,
            latency,
            feeds,
            network,
        }
    }

    /// A request was refused for its licence key.
    pub(crate) fn licence_refused(&self, code: &'static str) {
        self.network
            .refusals
            .get_or_create(&RefusalLabels { code })
            .inc();
    }

    /// A pull from upstream failed.
    pub(crate) fn upstream_failed(&self) {
        self.network.upstream_up.set(0);
    }

    /// A pull from upstream applied `entries`, leaving `lag` changes to go.
    pub(crate) fn upstream_pulled(&self, entries: u64, lag: u64, now: Timestamp) {
        self.network.upstream_up.set(1);
        self.network
            .upstream_lag
            .set(i64::try_from(lag).unwrap_or(i64::MAX));
        self.network
            .upstream_last_success
            .set(i64::try_from(now.0).unwrap_or(i64::MAX));
        self.network.upstream_applied.inc_by(entries);
    }

    /// A scheduled feed's refresh ended with `outcome`; `up` unless it failed.
    pub(crate) fn feed_refresh(&self, feed: &str, outcome: &'static str, up: bool) {
        let feed = feed.to_owned();
        self.feeds
            .refreshes
            .get_or_create(&FeedRefreshLabels {
                feed: feed.clone(),
                outcome,
            })
            .inc();
        self.feeds
            .up
            .get_or_create(&FeedLabels { feed })
            .set(i64::from(up));
    }

    /// A scheduled feed was imported at `now`.
    pub(crate) fn feed_imported(&self, feed: &str, report: &ImportReport, now: Timestamp) {
        let labels = FeedLabels {
            feed: feed.to_owned(),
        };
        self.feeds
            .last_success
            .get_or_create(&labels)
            .set(i64::try_from(now.0).unwrap_or(i64::MAX));
        self.feeds
            .entries
            .get_or_create(&labels)
            .set(i64::try_from(report.stored).unwrap_or(i64::MAX));
        self.feeds
            .skipped
            .get_or_create(&labels)
            .set(i64::try_from(report.skipped).unwrap_or(i64::MAX));
    }

    /// A scheduled feed was found unchanged at `now`.
    pub(crate) fn feed_confirmed(&self, feed: &str, now: Timestamp) {
        self.feeds
            .last_success
            .get_or_create(&FeedLabels {
                feed: feed.to_owned(),
            })
            .set(i64::try_from(now.0).unwrap_or(i64::MAX));
    }

    pub(crate) fn count_lookup(&self, kind: ObjectKind, verdict: Verdict) {
        let kind = ObjectKind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
        let verdict = Verdict::ALL.iter().position(|v| *v == verdict).unwrap_or(0);
        self.lookups[kind][verdict].inc();
    }

    /// Lookups counted since the server started, by [`ObjectKind::ALL`] and [`Verdict::ALL`]
    /// index.
    pub(crate) fn lookup_totals(&self) -> [[u64; 4]; 5] {
        let mut totals = [[0; 4]; 5];
        for (totals, counters) in totals.iter_mut().zip(self.lookups.iter()) {
            for (total, counter) in totals.iter_mut().zip(counters) {
                *total = counter.get();
            }
        }
        totals
    }

    /// The metrics in Prometheus text format.
    pub(crate) fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut text, &self.registry) {
            tracing::error!(%error, "cannot encode metrics");
        }
        text
    }
}

/// The route patterns, as labels. Requests that match no route are counted as `unmatched`, so
/// that scanners probing random paths cannot grow the label set without bound.
const ROUTES: &[&str] = &[
    "/v1/files/{hash}",
    "/v1/domains/{domain}",
    "/v1/ips/{ip}",
    "/v1/certificates/{sha256}",
    "/v1/urls",
    "/v1/lookup",
    "/v1/hashes:search",
    "/v1/files:lookup",
    "/v1/admin/verdicts",
    "/v1/admin/imports",
    "/v1/admin/feeds",
    "/v1/admin/feeds/{name}/refresh",
    "/v1/admin/keys",
    "/v1/admin/keys/{id}",
    "/v1/admin/status",
    "/v1/admin/engine",
    "/v1/admin/settings",
    "/v1/admin/review",
    "/v1/admin/review/{id}",
    "/v1/admin/bundles",
    "/v1/admin/backup",
    "/v1/admin/proxies",
    "/v1/admin/proxies/{key_id}/{name}/settings",
    "/v1/proxies/report",
    "/v1/statement",
    "/v1/statistics",
    "/v1/changes",
    "/v1/snapshot",
    "/v1/export",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/lookup/md5/{hash}",
    "/lookup/sha1/{hash}",
    "/lookup/sha256/{hash}",
    "/bulk/md5",
    "/bulk/sha1",
    "/info",
    "/stats/top",
    "/children/{sha1}/{count}/{cursor}",
    "/parents/{sha1}/{count}/{cursor}",
];

const UNMATCHED: &str = "unmatched";

/// The index of the route `matched` (a route pattern, when one matched) in [`ROUTES`], or
/// `ROUTES.len()` when none matched.
pub(crate) fn route_index(matched: Option<&str>) -> usize {
    matched
        // hashlookup's routes are also mounted under `//` (`api/mod.rs`): counted as one.
        .map(|matched| {
            matched
                .strip_prefix('/')
                .filter(|rest| rest.starts_with('/'))
                .unwrap_or(matched)
        })
        .and_then(|matched| ROUTES.iter().position(|route| *route == matched))
        .unwrap_or(ROUTES.len())
}

/// The route of index `route` ([`route_index`]), or `unmatched`.
pub(crate) fn route_name(route: usize) -> &'static str {
    ROUTES.get(route).copied().unwrap_or(UNMATCHED)
}

impl Metrics {
    /// Counts a request to the route of index `route` ([`route_index`]): its latency, and
    /// its status.
    pub(crate) fn observe_request(&self, route: usize, status: u16, seconds: f64) {
        self.latency[route].observe(seconds);
        if status == 200 {
            self.ok_requests[route].inc();
        } else {
            let route = ROUTES.get(route).copied().unwrap_or(UNMATCHED);
            self.requests
                .get_or_create(&RequestLabels { route, status })
                .inc();
        }
    }
}
