//! How a failure of the store is answered, wherever a request meets it (the API's handlers,
//! uploads that import through `feeds`).

use repnet_http::ApiError;
use repnet_protocol::ErrorCode;

/// A store's failure as the client sees it: a store that cannot be reached (a Redis Cluster
/// down or failing over) is `503 store_unavailable` with `Retry-After`, which clients and
/// load balancers retry; anything else is the server's own failure.
pub(crate) fn store_failed(context: &str, error: &repnet_store::StoreError) -> ApiError {
    match error {
        repnet_store::StoreError::Unavailable(reason) => {
            tracing::warn!(%reason, "{context}: the store is unavailable");
            ApiError::unavailable_for(
                ErrorCode::StoreUnavailable,
                format!(
                    "{context}: the knowledge base's store cannot be reached right now; nothing was changed, try again shortly"
                ),
                1,
            )
        }
        error => ApiError::internal(context, error),
    }
}
