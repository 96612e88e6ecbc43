//! The OpenAPI description, generated from the handlers' annotations and the wire types.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{
    feeds, installations, lookups, operations, proxies, replication, settings, statistics, verdicts,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "repnet",
        description = "A self-hostable reputation network for endpoint security: reputations of files, URLs, domains, IP addresses and code-signing certificates."
    ),
    paths(
        lookups::get_file,
        lookups::get_domain,
        lookups::get_ip,
        lookups::get_certificate,
        lookups::get_url,
        lookups::lookup_batch,
        lookups::search_hashes,
        verdicts::set_local_verdict,
        verdicts::remove_local_verdict,
        verdicts::list_local_verdicts,
        feeds::post_import,
        feeds::list_feeds,
        feeds::refresh_feed,
        repnet_http::keys::add_key,
        repnet_http::keys::list_keys,
        repnet_http::keys::revoke_key,
        replication::get_changes,
        replication::get_snapshot,
        replication::get_status,
        statistics::get_statement,
        installations::get_challenge,
        installations::enrol,
        statistics::post_statistics,
        statistics::get_engine,
        settings::get_settings,
        settings::patch_settings,
        statistics::list_review,
        statistics::settle_review,
        replication::post_bundle,
        proxies::post_report,
        proxies::list_proxies,
        proxies::put_settings,
        operations::healthz,
        operations::readyz,
        operations::metrics,
        operations::openapi,
    ),
    components(schemas(
        repnet_protocol::proxies::ProxyReport,
        repnet_protocol::proxies::ProxyInstructions,
        repnet_protocol::proxies::ProxyList,
        repnet_protocol::proxies::ProxyEntry,
        repnet_protocol::proxies::ManagedSettings,
        repnet_protocol::proxies::AppliedSettings,
        repnet_protocol::ErrorBody,
        repnet_protocol::ErrorDetail,
        repnet_protocol::Reputation,
        repnet_protocol::LookupRequest,
        repnet_protocol::LookupResponse,
        repnet_protocol::LookupResult,
        repnet_protocol::FileRef,
        repnet_protocol::FileHashesText,
        repnet_protocol::SetLocalVerdict,
        repnet_protocol::LocalVerdictList,
        repnet_protocol::HashSearchRequest,
        repnet_protocol::HashSearchResponse,
        repnet_protocol::ImportReport,
        repnet_protocol::FeedStatus,
        repnet_protocol::AddLicenceKey,
        repnet_protocol::LicenceKeyEntry,
        repnet_protocol::LicenceKeyList,
        repnet_protocol::ServerStatus,
        repnet_protocol::UpstreamStatus,
        repnet_protocol::WorkerStatus,
        repnet_protocol::BundleApplied,
        repnet_protocol::Statement,
        repnet_protocol::StatisticsBatch,
        repnet_protocol::InstallationChallenge,
        repnet_protocol::EnrolInstallation,
        repnet_protocol::InstallationToken,
        repnet_protocol::StatisticsEvent,
        repnet_protocol::StatisticsAccepted,
        repnet_protocol::EngineStatus,
        repnet_protocol::ReviewList,
        repnet_protocol::ReviewEntry,
        repnet_protocol::SettleReview,
        repnet_protocol::FeedStatusList,
    )),
    modifiers(&AdminTokenScheme)
)]
struct ApiDoc;

struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "admin_token",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
            components.add_security_scheme(
                "licence_key",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The OpenAPI document as JSON.
pub(crate) fn openapi_json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|error| {
        format!(r#"{{"error":"cannot render the OpenAPI document: {error}"}}"#)
    })
}
