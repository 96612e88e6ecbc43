//! What every repnet process shares below HTTP and storage: small state files written so
//! that a crash leaves the old file or the new one ([`files`]), secret files read again when
//! they change, background work in one shape ([`workers`]) and the clock. No storage engine,
//! no HTTP: the proxy and the client use it without linking the server.

pub mod files;
pub mod process;
pub mod workers;

pub use workers::{Clock, Context, Next, WorkError, Worker, Workers};

/// What `--print-config` prints in place of a secret (a licence key given in the
/// configuration). Not a valid key (it has spaces), so a printed configuration used as it is
/// fails with a clear error instead of sending it.
pub const HIDDEN_SECRET: &str = "<hidden by --print-config>";

/// The current time as a model timestamp (seconds since the Unix epoch; 0 before it).
pub fn now() -> repnet_model::Timestamp {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    repnet_model::Timestamp(seconds)
}
