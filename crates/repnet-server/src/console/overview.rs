//! The overview: charts of the server's activity over the last hour, day or 30 days
//! (`crate::activity`), the top threats and most prevalent detected objects, the feeds'
//! freshness.

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use repnet_http::console::chart::{Chart, Series, bar_chart, line_chart, share, short_number};
use repnet_model::{ObjectKind, Timestamp, Verdict};
use serde::Deserialize;

use super::{Pages, SignedIn, page};
use crate::activity::{Counts, Point, Window};

#[derive(Debug, Default, Deserialize)]
pub(super) struct Params {
    #[serde(default)]
    window: Option<String>,
}

/// `GET /console/overview?window=hour|day|30d`.
pub(super) async fn show(
    axum::extract::State((state, console)): Pages,
    SignedIn(session): SignedIn,
    params: Result<Query<Params>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let asked = params.ok().and_then(|Query(params)| params.window);
    let (window, error) = match asked.as_deref() {
        None => (Window::Day, None),
        Some(text) => match Window::parse(text) {
            Some(window) => (window, None),
            None => (
                Window::Day,
                Some(format!(
                    "window: {text:?} is not a window; choose hour, day or 30d (the last 24 hours are shown)"
                )),
            ),
        },
    };
    let now = repnet_runtime::now().0;
    // The charts include what happened up to this request.
    state.activity.sample(now).await;
    let activity = &state.activity.activity;
    let points = activity.points(window, now);
    let mut total = Counts::default();
    for point in &points {
        total.add(&point.counts);
    }
    let body = html! {
        @if let Some(error) = &error { p.error role="alert" { (error) } }
        nav aria-label="Window" {
            ul.windows {
                @for choice in Window::ALL {
                    li {
                        @if choice == window {
                            a href=(format!("/console/overview?window={}", choice.as_str())) aria-current="page" { (choice.label()) }
                        } @else {
                            a href=(format!("/console/overview?window={}", choice.as_str())) { (choice.label()) }
                        }
                    }
                }
            }
        }
        h2 { "Lookups" }
        div.charts {
            (lookups_chart(window, &points, &total))
            (hit_rates_chart(window, &points, &total))
        }
        (verdict_mix(&total))
        h2 { "Participants and the engine" }
        div.charts {
            (detections_chart(window, &points, &total))
            (engine_chart(window, &points, &total))
        }
        div.charts {
            (top_threats(activity.top_threats(window, now, 10), window))
            (prevalent(activity.prevalent(window, now), window))
        }
        h2 { "Feeds" }
        (feed_freshness(&state.feeds.statuses(), now))
        p.hint {
            "Counted by this server (each node of a cluster counts its own) and kept in "
            code { "activity.json" } " beside its data: a minute per point for the last hour, ten minutes for the last day, a day for the last 30 days, under 1 MB."
        }
    };
    page(
        &console,
        &session,
        "/console/overview",
        "Overview",
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        body,
    )
}

/// The first, middle and last point's time, as the window's axis shows it.
fn x_labels(window: Window, points: &[Point]) -> [String; 3] {
    let label = |point: Option<&Point>| {
        let Some(text) = point.and_then(|p| repnet_protocol::rfc3339(Timestamp(p.start))) else {
            return String::new();
        };
        match window {
            // 2026-12-01T03:48:44Z
            Window::Hour | Window::Day => format!("{} UTC", &text[11..16]),
            Window::Month => text[5..10].to_owned(),
        }
    };
    [
        label(points.first()),
        label(points.get(points.len() / 2)),
        label(points.last()),
    ]
}

fn labels(labels: &[String; 3]) -> [&str; 3] {
    [&labels[0], &labels[1], &labels[2]]
}

fn per_slot(window: Window) -> &'static str {
    match window {
        Window::Hour => "minute",
        Window::Day => "ten minutes",
        Window::Month => "day",
    }
}

/// The window's length in seconds, for averages.
fn seconds(points: &[Point]) -> u64 {
    points.iter().map(|p| p.seconds).sum::<u64>().max(1)
}

fn lookups_chart(window: Window, points: &[Point], total: &Counts) -> Markup {
    let series: Vec<Series<'_>> = ObjectKind::ALL
        .iter()
        .map(|kind| Series {
            label: kind.as_str(),
            values: points
                .iter()
                .map(|p| p.counts.lookups_of(*kind) as f64 / p.seconds as f64)
                .collect(),
        })
        .collect();
    let all: u64 = ObjectKind::ALL.iter().map(|k| total.lookups_of(*k)).sum();
    let peak = points
        .iter()
        .map(|p| p.counts.lookups.iter().flatten().sum::<u64>() as f64 / p.seconds as f64)
        .fold(0.0, f64::max);
    let summary = format!(
        "{all} lookups in the {}: {} per second on average, {} at the busiest {}.",
        window.label(),
        short_number(all as f64 / seconds(points) as f64),
        short_number(peak),
        per_slot(window)
    );
    let x = x_labels(window, points);
    line_chart(
        &Chart {
            id: "lookups",
            title: "Lookups per second, by kind",
            unit: "/s",
            x_labels: labels(&x),
            summary: &summary,
        },
        &series,
    )
}

fn hit_rates_chart(window: Window, points: &[Point], total: &Counts) -> Markup {
    let rate = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 * 100.0 / whole as f64
        }
    };
    let series = [
        Series {
            label: "negative-lookup filter",
            values: points
                .iter()
                .map(|p| rate(p.counts.filter_answered, p.counts.filter_checked))
                .collect(),
        },
        Series {
            label: "proxies' caches",
            values: points
                .iter()
                .map(|p| rate(p.counts.proxy_hits, p.counts.proxy_lookups))
                .collect(),
        },
    ];
    let describe = |part: u64, whole: u64, what: &str| {
        if whole == 0 {
            format!("{what}: nothing counted")
        } else {
            format!("{what}: {:.1} % of {whole}", rate(part, whole))
        }
    };
    let summary = format!(
        "{}; {}.",
        describe(
            total.filter_answered,
            total.filter_checked,
            "unknown keys answered by the filter without reading the database"
        ),
        describe(
            total.proxy_hits,
            total.proxy_lookups,
            "proxies' lookups answered from their caches"
        )
    );
    let x = x_labels(window, points);
    line_chart(
        &Chart {
            id: "hit-rates",
            title: "Filter and cache hit rates",
            unit: "%",
            x_labels: labels(&x),
            summary: &summary,
        },
        &series,
    )
}

fn verdict_mix(total: &Counts) -> Markup {
    let all: u64 = Verdict::ALL.iter().map(|v| total.answered(*v)).sum();
    html! {
        div.table-wrap { table {
            caption { "Verdicts answered" }
            thead { tr { th scope="col" { "Verdict" } th scope="col" { "Answers" } th scope="col" { "Share" } } }
            tbody {
                @for verdict in Verdict::ALL {
                    tr {
                        td { (verdict.as_str()) }
                        td { (total.answered(verdict)) }
                        td { (share(total.answered(verdict), all)) }
                    }
                }
            }
        } }
    }
}

fn detections_chart(window: Window, points: &[Point], total: &Counts) -> Markup {
    let values: Vec<(String, f64)> = points
        .iter()
        .map(|p| {
            let when = repnet_protocol::rfc3339(Timestamp(p.start)).unwrap_or_default();
            (when, p.counts.detections as f64)
        })
        .collect();
    let summary = format!(
        "{} detections in {} reports from participants in the {}.",
        total.detections,
        total.reports,
        window.label()
    );
    let x = x_labels(window, points);
    bar_chart(
        &Chart {
            id: "detections",
            title: &format!("Detections per {}", per_slot(window)),
            unit: "",
            x_labels: labels(&x),
            summary: &summary,
        },
        &values,
    )
}

fn engine_chart(window: Window, points: &[Point], total: &Counts) -> Markup {
    let values: Vec<(String, f64)> = points
        .iter()
        .map(|p| {
            let when = repnet_protocol::rfc3339(Timestamp(p.start)).unwrap_or_default();
            (
                format!(
                    "{when}: {} set, {} removed",
                    p.counts.engine_set, p.counts.engine_removed
                ),
                (p.counts.engine_set + p.counts.engine_removed) as f64,
            )
        })
        .collect();
    let summary = format!(
        "The engine set {} verdicts and removed {} in the {}.",
        total.engine_set,
        total.engine_removed,
        window.label()
    );
    let x = x_labels(window, points);
    bar_chart(
        &Chart {
            id: "engine",
            title: &format!("Engine verdict changes per {}", per_slot(window)),
            unit: "",
            x_labels: labels(&x),
            summary: &summary,
        },
        &values,
    )
}

fn top_threats(threats: Vec<(String, u64)>, window: Window) -> Markup {
    let all: u64 = threats.iter().map(|(_, count)| count).sum();
    html! {
        section aria-labelledby="threats-heading" {
            h3 #threats-heading { "Top threats, " (window.label()) }
            @if threats.is_empty() {
                p { "No detection named a threat in the " (window.label()) "." }
            } @else {
                div.table-wrap { table {
                    thead { tr { th scope="col" { "Threat" } th scope="col" { "Detections" } th scope="col" { "Share" } } }
                    tbody {
                        @for (name, count) in &threats {
                            tr { td { (name) } td { (count) } td { (share(*count, all)) } }
                        }
                    }
                } }
            }
        }
    }
}

fn prevalent(objects: Vec<crate::activity::Prevalent>, window: Window) -> Markup {
    html! {
        section aria-labelledby="prevalent-heading" {
            h3 #prevalent-heading { "Most prevalent detected objects" }
            @if objects.is_empty() {
                p { "The engine examined no detected object in the " (window.label()) "." }
            } @else {
                div.table-wrap { table {
                    thead { tr {
                        th scope="col" { "Object" } th scope="col" { "Devices" } th scope="col" { "Detecting" } th scope="col" { span.hint { "Action" } }
                    } }
                    tbody {
                        @for entry in &objects {
                            tr {
                                td { code { (entry.object) } }
                                td { (entry.devices) }
                                td { (entry.detecting_devices) }
                                td { a href=(format!("/console/lookup?kind={}&value={}", entry.kind, super::feeds::url_component(&entry.object))) { "Look up" } }
                            }
                        }
                    }
                } }
                p.hint { "Distinct devices that reported each object, as the engine last counted them (established installations for “detecting”)." }
            }
        }
    }
}

fn feed_freshness(feeds: &[repnet_protocol::FeedStatus], now: u64) -> Markup {
    html! {
        @if feeds.is_empty() {
            p { "No feed is scheduled." }
        } @else {
            div.table-wrap { table {
                thead { tr { th scope="col" { "Feed" } th scope="col" { "State" } th scope="col" { "Last success" } th scope="col" { "Age" } } }
                tbody {
                    @for feed in feeds {
                        @let age = feed.last_success.as_deref()
                            .and_then(|text| repnet_protocol::parse_time(text).ok())
                            .map(|at| now.saturating_sub(at.0));
                        @let stale = age.is_none_or(|age| age > 2 * feed.interval_seconds.max(60));
                        tr {
                            td { a href="/console/feeds" { (feed.name) } }
                            td { (feed.state) }
                            td { (feed.last_success.as_deref().unwrap_or("never")) }
                            td {
                                @match age { Some(age) => (super::status::duration(age)), None => "—" }
                                @if stale { " " strong { "(stale: older than two intervals)" } }
                            }
                        }
                    }
                }
            } }
        }
    }
}
