//! Deterministic keys: the knowledge base's SHA-256 entries, keys known to be absent, and a
//! small pseudo-random generator to pick among them. The same seed gives the same benchmark.

use repnet_model::Sha256;

/// Entry `index` of the knowledge base.
pub(crate) fn present(seed: u64, index: u64) -> Sha256 {
    key(b"present", seed, index)
}

/// A key that is not in the knowledge base (a different domain of the hash).
pub(crate) fn absent(seed: u64, index: u64) -> Sha256 {
    key(b"absent!", seed, index)
}

fn key(domain: &[u8; 7], seed: u64, index: u64) -> Sha256 {
    let mut input = [0u8; 23];
    input[..7].copy_from_slice(domain);
    input[7..15].copy_from_slice(&seed.to_le_bytes());
    input[15..].copy_from_slice(&index.to_le_bytes());
    Sha256::digest(&input)
}

/// SplitMix64: tiny, fast, and good enough to spread picks over the key space.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9E37_79B9_7F4A_7C15)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number below `bound`.
    pub(crate) fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound.max(1)
    }
}

/// `count` keys, alternately present (picked at random among `entries`) and absent.
pub(crate) fn mixed(seed: u64, entries: u64, count: usize, rng: &mut Rng) -> Vec<(Sha256, bool)> {
    (0..count)
        .map(|i| {
            if i % 2 == 0 {
                (present(seed, rng.below(entries)), true)
            } else {
                (absent(seed, rng.next_u64()), false)
            }
        })
        .collect()
}

/// URL `index` of the knowledge base: hosts on 100,003 sites, a few path shapes, a query.
pub(crate) fn url(seed: u64, index: u64) -> String {
    format!(
        "http://host{}.site{}.example/path/{}/page{index}.html?id={}",
        index % 997,
        index % 100_003,
        index % 31,
        (index ^ seed) % 1_000_003
    )
}

/// The same URL as a client might send it: upper case, a port, a `.` segment, a fragment.
/// It canonicalises to `url(seed, index)`.
pub(crate) fn url_as_sent(seed: u64, index: u64) -> String {
    format!(
        "HTTP://HOST{}.Site{}.Example:80/path/{}/./page{index}.html?id={}#top",
        index % 997,
        index % 100_003,
        index % 31,
        (index ^ seed) % 1_000_003
    )
}

/// A URL that is not in the knowledge base.
pub(crate) fn absent_url(random: u64) -> String {
    format!(
        "http://www.absent{}.example/{}/index.html?q={}",
        random % 1_000_000,
        random % 97,
        random
    )
}
