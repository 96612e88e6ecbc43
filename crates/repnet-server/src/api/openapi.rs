//! The OpenAPI description, generated from the handlers' annotations and the wire types.

use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::{
    export, feeds, hashlookup, installations, lookups, operations, proxies, replication, settings,
    statistics, verdicts,
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
        lookups::lookup_files,
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
        replication::get_backup,
        export::get_export,
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
        hashlookup::lookup_md5,
        hashlookup::lookup_sha1,
        hashlookup::lookup_sha256,
        hashlookup::bulk_md5,
        hashlookup::bulk_sha1,
        hashlookup::info,
        hashlookup::top,
        hashlookup::children,
        hashlookup::parents,
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
    let document = serde_json::to_value(ApiDoc::openapi()).map(|mut document| {
        complete(&mut document);
        document
    });
    document
        .and_then(|document| serde_json::to_string_pretty(&document))
        .unwrap_or_else(|error| {
            format!(r#"{{"error":"cannot render the OpenAPI document: {error}"}}"#)
        })
}

/// What the annotations cannot say, said on the generated document: every response has a
/// description (OpenAPI requires one; an annotation without one gets its status's reason
/// phrase), and a body of bytes (`application/octet-stream`, the replication stream) is a
/// binary string, not the array of integers a `Vec<u8>` would make.
fn complete(document: &mut serde_json::Value) {
    use serde_json::{Value, json};
    let binary = |content: &mut Value| {
        if let Some(content) = content.as_object_mut() {
            for (media_type, body) in content.iter_mut() {
                if media_type == "application/octet-stream"
                    || media_type.starts_with("application/vnd.repnet")
                {
                    body["schema"] = json!({"type": "string", "format": "binary"});
                }
            }
        }
    };
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for operation in paths
        .values_mut()
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
    {
        if let Some(content) = operation.pointer_mut("/requestBody/content") {
            binary(content);
        }
        let Some(responses) = operation
            .get_mut("responses")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        for (status, response) in responses.iter_mut() {
            let described = response
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|text| !text.is_empty());
            if !described {
                let reason = status
                    .parse::<u16>()
                    .ok()
                    .and_then(|code| axum::http::StatusCode::from_u16(code).ok())
                    .and_then(|code| code.canonical_reason())
                    .unwrap_or("the answer");
                response["description"] = json!(reason);
            }
            if let Some(content) = response.get_mut("content") {
                binary(content);
            }
        }
    }
}
