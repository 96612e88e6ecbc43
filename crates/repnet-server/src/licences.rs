//! The licence-key side of the HTTP API: the middleware that lets requests through with a
//! valid key, and the admin endpoints that register, list and revoke keys. The keys
//! themselves are `repnet_licences`.

pub use repnet_licences::{BookFuture, KeyBook, Licence, Licences, RateLimit, Refusal, entry};
