//! Enrolling an installation (`/v1/installations`): the proof of work a client makes for the
//! challenge it was given, and the bodies exchanged.
//!
//! The work is a hashcash: find a nonce such that SHA-256(challenge ‖ nonce) starts with
//! `difficulty` zero bits. Checking takes one hash; finding takes 2^difficulty on average.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The most zero bits a server may ask for (about 4 × 10⁹ hashes: an hour of a core).
pub const MAX_DIFFICULTY: u8 = 32;

/// The longest nonce accepted, in bytes.
pub const MAX_NONCE_BYTES: usize = 16;

/// `GET /v1/installations/challenge`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstallationChallenge {
    /// Hex; sent back with the nonce.
    pub challenge: String,
    /// Leading zero bits SHA-256(challenge ‖ nonce) must have.
    pub difficulty: u8,
    /// RFC 3339: the challenge must be answered before then.
    pub expires: String,
}

/// `POST /v1/installations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EnrolInstallation {
    /// The challenge, as given.
    pub challenge: String,
    /// Hex, up to 16 bytes.
    pub nonce: String,
}

/// The answer to an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct InstallationToken {
    /// Sent as `installation` with every statistics batch.
    pub installation: String,
    /// RFC 3339: from then on, the reputation engine counts this installation's reports.
    pub established: Option<String>,
}

/// Zero bits at the start of `digest`.
pub fn leading_zero_bits(digest: &[u8]) -> u32 {
    let mut bits = 0;
    for byte in digest {
        if *byte == 0 {
            bits += 8;
        } else {
            return bits + byte.leading_zeros();
        }
    }
    bits
}

/// Whether `nonce` is a proof of `difficulty` bits of work for `challenge`.
pub fn is_proof(challenge: &[u8], nonce: &[u8], difficulty: u8) -> bool {
    let mut input = Vec::with_capacity(challenge.len() + nonce.len());
    input.extend_from_slice(challenge);
    input.extend_from_slice(nonce);
    leading_zero_bits(repnet_model::Sha256::digest(&input).as_bytes()) >= u32::from(difficulty)
}

/// Finds a nonce that proves `difficulty` bits of work for `challenge` (2^difficulty hashes
/// on average).
pub fn prove(challenge: &[u8], difficulty: u8) -> Vec<u8> {
    let mut input = challenge.to_vec();
    let at = input.len();
    input.extend_from_slice(&[0; 8]);
    for counter in 0u64.. {
        input[at..].copy_from_slice(&counter.to_le_bytes());
        if leading_zero_bits(repnet_model::Sha256::digest(&input).as_bytes())
            >= u32::from(difficulty)
        {
            break;
        }
    }
    input[at..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_found_and_checked() {
        assert_eq!(leading_zero_bits(&[0, 0x0f, 0xff]), 12);
        assert_eq!(leading_zero_bits(&[0, 0]), 16);
        let challenge = b"a challenge";
        let nonce = prove(challenge, 12);
        assert!(is_proof(challenge, &nonce, 12));
        // Some nonce fails a high difficulty.
        assert!((0u8..=255).any(|n| !is_proof(challenge, &[n], 12)));
    }
}
