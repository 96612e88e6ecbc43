//! The small pieces of repnet's binary encodings that the store's records and the
//! replication stream share: LEB128 varints, and a verdict in two bits.

use crate::Verdict;

/// A verdict in the two low bits of a byte.
#[inline]
pub fn verdict_bits(verdict: Verdict) -> u8 {
    match verdict {
        Verdict::Unknown => 0,
        Verdict::Trusted => 1,
        Verdict::Riskware => 2,
        Verdict::Untrusted => 3,
    }
}

/// The verdict in the two low bits of `bits`.
#[inline]
pub fn verdict_from_bits(bits: u8) -> Verdict {
    match bits & 3 {
        1 => Verdict::Trusted,
        2 => Verdict::Riskware,
        3 => Verdict::Untrusted,
        _ => Verdict::Unknown,
    }
}

/// Appends `value` as an LEB128 varint.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
