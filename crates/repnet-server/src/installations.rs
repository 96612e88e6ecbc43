//! Installations: the devices the reputation engine counts, which participants cannot invent.
//!
//! A client enrols once (`GET /v1/installations/challenge`, then `POST /v1/installations`)
//! and sends the token it gets with every statistics batch. Enrolling costs:
//!
//! - a proof of work: 2^`installation_difficulty` SHA-256 hashes on average (about a second
//!   of one core at the default, 24);
//! - one of the `enrolments_per_address_per_hour` of the client's address (an IPv6 client by
//!   its /64), or, with a licence key, one of the key's `enrolments_per_key_per_hour`; the
//!   token is then bound to that key and statistics sent with it must carry the same key;
//! - time: the engine counts an installation's reports only once it was enrolled
//!   `established_after_hours` before (`[engine]`).
//!
//! Tokens are stateless: the installation's id, when it was enrolled and the key it is bound
//! to, with an HMAC-SHA256 under a secret the store keeps for good. A token cannot be forged
//! without the secret, and an id cannot be chosen: it is derived from the challenge, so
//! answering one challenge twice gives the same installation. Nothing of the client — its
//! address, its key — is kept: addresses are keyed hashes in the memory of the limiter only.

use repnet_protocol::ErrorCode;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hmac::{KeyInit as _, Mac as _};
use repnet_model::Timestamp;

use repnet_http::ApiError;
use repnet_http::limits::{Windowed, address_key};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// Seconds a challenge may be answered in.
const CHALLENGE_SECONDS: u64 = 600;
const CHALLENGE_VERSION: u8 = 1;
const TOKEN_VERSION: u8 = 1;
/// version, difficulty, expiry, random, MAC.
const CHALLENGE_BYTES: usize = 1 + 1 + 8 + 16 + 16;
/// version, id, enrolment time, key binding, MAC.
const TOKEN_BYTES: usize = 1 + 16 + 8 + 8 + 16;
/// Clients the enrolment limiters remember in an hour.
const MAX_CLIENTS: usize = 1_000_000;

/// An installation, from its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Installation {
    pub(crate) id: [u8; 16],
    pub(crate) enrolled: Timestamp,
    /// The licence key it was enrolled with (a keyed hash of the key's id).
    pub(crate) key: Option<[u8; 8]>,
}

#[derive(Debug)]
pub(crate) struct Installations {
    secret: [u8; 32],
    difficulty: AtomicU8,
    per_address: AtomicU32,
    per_key: AtomicU32,
    addresses: Windowed,
    keys: Windowed,
}

/// How enrolment is limited (`installation_difficulty`, `enrolments_per_address_per_hour`,
/// `enrolments_per_key_per_hour`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EnrolmentLimits {
    pub(crate) difficulty: u8,
    pub(crate) per_address: u32,
    pub(crate) per_key: u32,
}

impl Installations {
    pub(crate) fn new(secret: [u8; 32], limits: EnrolmentLimits) -> Installations {
        let hour = Duration::from_secs(3600);
        Installations {
            secret,
            difficulty: AtomicU8::new(limits.difficulty),
            per_address: AtomicU32::new(limits.per_address),
            per_key: AtomicU32::new(limits.per_key),
            addresses: Windowed::new(hour, MAX_CLIENTS),
            keys: Windowed::new(hour, MAX_CLIENTS),
        }
    }

    fn mac(&self, purpose: &[u8], parts: &[&[u8]]) -> [u8; 16] {
        let mut mac = match HmacSha256::new_from_slice(&self.secret) {
            Ok(mac) => mac,
            // A key of any length is valid for HMAC.
            Err(_) => return [0; 16],
        };
        mac.update(purpose);
        for part in parts {
            mac.update(part);
        }
        let tag = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&tag[..16]);
        out
    }

    /// A new challenge, answerable for ten minutes.
    pub(crate) fn challenge(
        &self,
        now: Timestamp,
    ) -> Result<repnet_protocol::InstallationChallenge, ApiError> {
        let difficulty = self.difficulty.load(Ordering::Relaxed);
        let expires = now.0.saturating_add(CHALLENGE_SECONDS);
        let mut random = [0u8; 16];
        getrandom::fill(&mut random)
            .map_err(|error| ApiError::internal("no randomness for a challenge", &error))?;
        let mut bytes = Vec::with_capacity(CHALLENGE_BYTES);
        bytes.push(CHALLENGE_VERSION);
        bytes.push(difficulty);
        bytes.extend_from_slice(&expires.to_be_bytes());
        bytes.extend_from_slice(&random);
        let mac = self.mac(b"challenge", &[&bytes]);
        bytes.extend_from_slice(&mac);
        Ok(repnet_protocol::InstallationChallenge {
            challenge: hex::encode(bytes),
            difficulty,
            expires: repnet_protocol::rfc3339(Timestamp(expires)).unwrap_or_default(),
        })
    }

    /// Checks an answered challenge and the limits, and issues a token. `key_id` is the
    /// licence key the request carried, if any (checked already).
    pub(crate) fn enrol(
        &self,
        request: &repnet_protocol::EnrolInstallation,
        key_id: Option<&str>,
        address: Option<IpAddr>,
        now: Timestamp,
    ) -> Result<Installation, ApiError> {
        let invalid = |code: ErrorCode, message: String| ApiError::bad_request(code, message);
        let challenge = hex::decode(&request.challenge)
            .ok()
            .filter(|bytes| bytes.len() == CHALLENGE_BYTES && bytes[0] == CHALLENGE_VERSION)
            .ok_or_else(|| {
                invalid(
                    ErrorCode::InvalidChallenge,
                    "challenge: not a challenge of this server: get one from GET /v1/installations/challenge".to_owned(),
                )
            })?;
        let (signed, mac) = challenge.split_at(CHALLENGE_BYTES - 16);
        if !constant_time_eq(&self.mac(b"challenge", &[signed]), mac) {
            return Err(invalid(
                ErrorCode::InvalidChallenge,
                "challenge: not a challenge of this server (or altered): get one from GET /v1/installations/challenge".to_owned(),
            ));
        }
        let difficulty = signed[1];
        let expires = u64::from_be_bytes(signed[2..10].try_into().unwrap_or([0; 8]));
        if expires < now.0 {
            return Err(invalid(
                ErrorCode::ChallengeExpired,
                "challenge: expired (a challenge is answerable for ten minutes): get a new one"
                    .to_owned(),
            ));
        }
        let nonce = hex::decode(&request.nonce)
            .ok()
            .filter(|nonce| nonce.len() <= repnet_protocol::installation::MAX_NONCE_BYTES)
            .ok_or_else(|| {
                invalid(
                    ErrorCode::InvalidNonce,
                    format!(
                        "nonce: hex of at most {} bytes",
                        repnet_protocol::installation::MAX_NONCE_BYTES
                    ),
                )
            })?;
        if !repnet_protocol::installation::is_proof(&challenge, &nonce, difficulty) {
            return Err(invalid(
                ErrorCode::InvalidNonce,
                format!(
                    "nonce: SHA-256(challenge ‖ nonce) does not start with {difficulty} zero bits"
                ),
            ));
        }
        // The limits are counted only for proven work: guessing costs nothing here.
        let key = key_id.map(|id| self.key_binding(id));
        let limited = match (key, address) {
            (Some(key), _) => self.keys.take(
                u64::from_le_bytes(key),
                self.per_key.load(Ordering::Relaxed),
                Instant::now(),
            ),
            (None, Some(address)) => self.addresses.take(
                address_key(&self.secret, address),
                self.per_address.load(Ordering::Relaxed),
                Instant::now(),
            ),
            (None, None) => Ok(()),
        };
        if let Err(wait) = limited {
            return Err(ApiError::rate_limited(
                format!(
                    "too many installations were enrolled from this {} in the last hour: retry after {wait} s (an installation enrols once)",
                    if key.is_some() {
                        "licence key"
                    } else {
                        "address"
                    }
                ),
                wait,
            ));
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&self.mac(b"installation", &[&challenge])[..16]);
        Ok(Installation {
            id,
            enrolled: now,
            key,
        })
    }

    /// The token of `installation`.
    pub(crate) fn token(&self, installation: &Installation) -> String {
        let mut bytes = Vec::with_capacity(TOKEN_BYTES);
        bytes.push(TOKEN_VERSION);
        bytes.extend_from_slice(&installation.id);
        bytes.extend_from_slice(&installation.enrolled.0.to_be_bytes());
        bytes.extend_from_slice(&installation.key.unwrap_or([0; 8]));
        let mac = self.mac(b"token", &[&bytes]);
        bytes.extend_from_slice(&mac);
        hex::encode(bytes)
    }

    /// The installation a token names, if this server issued it.
    pub(crate) fn verify(&self, token: &str) -> Option<Installation> {
        let bytes = hex::decode(token)
            .ok()
            .filter(|bytes| bytes.len() == TOKEN_BYTES && bytes[0] == TOKEN_VERSION)?;
        let (signed, mac) = bytes.split_at(TOKEN_BYTES - 16);
        if !constant_time_eq(&self.mac(b"token", &[signed]), mac) {
            return None;
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&signed[1..17]);
        let enrolled = Timestamp(u64::from_be_bytes(signed[17..25].try_into().ok()?));
        let key: [u8; 8] = signed[25..33].try_into().ok()?;
        Some(Installation {
            id,
            enrolled,
            key: (key != [0; 8]).then_some(key),
        })
    }

    /// What binds a token to a licence key: a keyed hash of the key's id.
    pub(crate) fn key_binding(&self, key_id: &str) -> [u8; 8] {
        let mac = self.mac(b"key", &[key_id.as_bytes()]);
        let mut binding = [0u8; 8];
        binding.copy_from_slice(&mac[..8]);
        // Zero means "no key" in a token.
        if binding == [0; 8] {
            binding[0] = 1;
        }
        binding
    }
}

// ----- the API -----------------------------------------------------------------------------

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq as _;
    a.ct_eq(b).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn installations(difficulty: u8) -> Installations {
        Installations::new(
            [3; 32],
            EnrolmentLimits {
                difficulty,
                per_address: 2,
                per_key: 5,
            },
        )
    }

    fn answer(
        challenge: &repnet_protocol::InstallationChallenge,
    ) -> repnet_protocol::EnrolInstallation {
        let bytes = hex::decode(&challenge.challenge).unwrap();
        let nonce = repnet_protocol::installation::prove(&bytes, challenge.difficulty);
        repnet_protocol::EnrolInstallation {
            challenge: challenge.challenge.clone(),
            nonce: hex::encode(nonce),
        }
    }

    #[test]
    fn enrolment_issues_tokens_that_cannot_be_forged() {
        let server = installations(8);
        let now = Timestamp(1_800_000_000);
        let address: IpAddr = "192.0.2.7".parse().unwrap();
        let challenge = server.challenge(now).unwrap();
        let request = answer(&challenge);
        let installation = server.enrol(&request, None, Some(address), now).unwrap();
        let token = server.token(&installation);
        assert_eq!(server.verify(&token), Some(installation));
        // The same challenge gives the same installation.
        let again = server.enrol(&request, None, Some(address), now).unwrap();
        assert_eq!(again.id, installation.id);
        // The address's two enrolments this hour are used.
        let third = server.enrol(
            &answer(&server.challenge(now).unwrap()),
            None,
            Some(address),
            now,
        );
        assert_eq!(third.unwrap_err().code, ErrorCode::RateLimited);

        // Another server's token, an altered one, an invented one.
        let other = Installations::new(
            [4; 32],
            EnrolmentLimits {
                difficulty: 8,
                per_address: 2,
                per_key: 5,
            },
        );
        assert_eq!(other.verify(&token), None);
        let mut altered = hex::decode(&token).unwrap();
        altered[20] ^= 1;
        assert_eq!(server.verify(&hex::encode(altered)), None);
        assert_eq!(server.verify("sybil-device-1-abcdef"), None);

        // A wrong nonce, an expired or altered challenge.
        let mut wrong = answer(&server.challenge(now).unwrap());
        wrong.nonce = "00".to_owned();
        let refused = server.enrol(&wrong, None, None, now);
        // (A one-byte nonce can prove 8 bits by chance; this one does not.)
        if !repnet_protocol::installation::is_proof(
            &hex::decode(&wrong.challenge).unwrap(),
            &[0],
            8,
        ) {
            assert_eq!(refused.unwrap_err().code, ErrorCode::InvalidNonce);
        }
        let late = Timestamp(now.0 + CHALLENGE_SECONDS + 1);
        assert_eq!(
            server.enrol(&request, None, None, late).unwrap_err().code,
            ErrorCode::ChallengeExpired
        );
        let mut altered = request.clone();
        altered.challenge.replace_range(2..4, "00");
        assert_eq!(
            server.enrol(&altered, None, None, now).unwrap_err().code,
            ErrorCode::InvalidChallenge
        );
    }

    #[test]
    fn a_key_binds_the_token() {
        let server = installations(4);
        let now = Timestamp(1_800_000_000);
        let installation = server
            .enrol(
                &answer(&server.challenge(now).unwrap()),
                Some("key-1"),
                None,
                now,
            )
            .unwrap();
        assert_eq!(installation.key, Some(server.key_binding("key-1")));
        assert_ne!(server.key_binding("key-1"), server.key_binding("key-2"));
        assert_eq!(
            server.verify(&server.token(&installation)),
            Some(installation)
        );
    }
}
