//! Distinct counts: a HyperLogLog sketch in Redis's dense encoding (`HYLL` header,
//! MurmurHash64A with Redis's seed, p = 14, 6-bit registers), so that a sketch written here
//! can be loaded into Redis with `SET` and read with `PFCOUNT`, and the reverse.
//!
//! Most objects are seen by few devices, and a dense sketch is 12,304 bytes: a [`Distinct`]
//! keeps up to [`EXACT_MAX`] distinct 64-bit hashes as they are (exact, 8 bytes each) and turns
//! into a dense sketch only past that.

/// Registers: 2^14.
const P: u32 = 14;
const REGISTERS: usize = 1 << P;
const Q: u32 = 64 - P;
const REGISTER_MAX: u8 = 63;
const HEADER: usize = 16;
/// Bytes of a dense sketch, header included.
pub(crate) const DENSE_LEN: usize = HEADER + REGISTERS * 6 / 8;
/// Distinct hashes kept exactly before switching to a sketch.
pub(crate) const EXACT_MAX: usize = 64;
const SEED: u64 = 0xadc8_3b19;

/// Redis's MurmurHash64A (`hyperloglog.c`), little-endian.
pub(crate) fn murmur64a(key: &[u8], seed: u64) -> u64 {
    const M: u64 = 0xc6a4_a793_5bd1_e995;
    const R: u32 = 47;
    let mut h = seed ^ (key.len() as u64).wrapping_mul(M);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let mut k = u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]));
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h ^= k;
        h = h.wrapping_mul(M);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (index, byte) in tail.iter().enumerate().rev() {
            h ^= u64::from(*byte) << (8 * index);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> R;
    h = h.wrapping_mul(M);
    h ^= h >> R;
    h
}

/// The register and the run length (of zeros, plus one) an element's hash selects.
fn position(element: &[u8]) -> (usize, u8) {
    let hash = murmur64a(element, SEED);
    let index = (hash & (REGISTERS as u64 - 1)) as usize;
    let rest = (hash >> P) | (1u64 << Q);
    (index, rest.trailing_zeros() as u8 + 1)
}

/// A dense sketch, as Redis stores it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Dense(Box<[u8]>);

impl std::fmt::Debug for Dense {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Dense(≈{})", self.count())
    }
}

impl Dense {
    pub(crate) fn new() -> Dense {
        let mut bytes = vec![0u8; DENSE_LEN].into_boxed_slice();
        bytes[..4].copy_from_slice(b"HYLL");
        // Encoding 0 (dense); the cached cardinality is marked stale (MSB of byte 15).
        bytes[15] = 0x80;
        Dense(bytes)
    }

    /// A sketch from bytes in Redis's dense encoding.
    pub(crate) fn from_bytes(bytes: &[u8]) -> Option<Dense> {
        (bytes.len() == DENSE_LEN && &bytes[..4] == b"HYLL" && bytes[4] == 0)
            .then(|| Dense(bytes.to_vec().into_boxed_slice()))
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn register(&self, index: usize) -> u8 {
        let registers = &self.0[HEADER..];
        let byte = index * 6 / 8;
        let first_bit = (index * 6) & 7;
        let b0 = u16::from(registers[byte]);
        let b1 = u16::from(registers.get(byte + 1).copied().unwrap_or(0));
        (((b0 >> first_bit) | (b1 << (8 - first_bit))) & u16::from(REGISTER_MAX)) as u8
    }

    fn set_register(&mut self, index: usize, value: u8) {
        let byte = index * 6 / 8;
        let first_bit = (index * 6) & 7;
        let registers = &mut self.0[HEADER..];
        let value = u16::from(value);
        let max = u16::from(REGISTER_MAX);
        registers[byte] &= !((max << first_bit) as u8);
        registers[byte] |= (value << first_bit) as u8;
        if byte + 1 < registers.len() {
            registers[byte + 1] &= !((max >> (8 - first_bit)) as u8);
            registers[byte + 1] |= (value >> (8 - first_bit)) as u8;
        }
    }

    /// Adds an element; answers whether the sketch changed.
    pub(crate) fn add(&mut self, element: &[u8]) -> bool {
        let (index, run) = position(element);
        if self.register(index) >= run {
            return false;
        }
        self.set_register(index, run);
        self.0[15] |= 0x80;
        true
    }

    /// The estimated number of distinct elements (Redis's estimator: Ertl's improved one).
    pub(crate) fn count(&self) -> u64 {
        let m = REGISTERS as f64;
        let mut histogram = [0u32; 64];
        for index in 0..REGISTERS {
            histogram[usize::from(self.register(index))] += 1;
        }
        let q = Q as usize;
        let mut z = m * tau((m - f64::from(histogram[q + 1])) / m);
        for j in (1..=q).rev() {
            z += f64::from(histogram[j]);
            z *= 0.5;
        }
        z += m * sigma(f64::from(histogram[0]) / m);
        (0.721_347_520_444_481_7 * m * m / z).round() as u64
    }
}

fn sigma(mut x: f64) -> f64 {
    if x == 1.0 {
        return f64::INFINITY;
    }
    let mut y = 1.0;
    let mut z = x;
    loop {
        x *= x;
        let previous = z;
        z += x * y;
        y += y;
        if previous == z {
            return z;
        }
    }
}

fn tau(mut x: f64) -> f64 {
    if x == 0.0 || x == 1.0 {
        return 0.0;
    }
    let mut y = 1.0;
    let mut z = 1.0 - x;
    loop {
        x = x.sqrt();
        let previous = z;
        y *= 0.5;
        z -= (1.0 - x).powi(2) * y;
        if previous == z {
            return z / 3.0;
        }
    }
}

/// A distinct count that is exact while small and a sketch beyond [`EXACT_MAX`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Distinct {
    /// Sorted, distinct 64-bit element hashes.
    Exact(Vec<u64>),
    Sketch(Dense),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

impl Distinct {
    /// Adds an element (an 8-byte keyed hash of a device); answers whether the count may have
    /// changed.
    pub(crate) fn add(&mut self, element: u64) -> bool {
        match self {
            Distinct::Exact(elements) => match elements.binary_search(&element) {
                Ok(_) => false,
                Err(at) => {
                    elements.insert(at, element);
                    if elements.len() > EXACT_MAX {
                        let mut dense = Dense::new();
                        for element in elements.iter() {
                            dense.add(&element.to_le_bytes());
                        }
                        *self = Distinct::Sketch(dense);
                    }
                    true
                }
            },
            Distinct::Sketch(dense) => dense.add(&element.to_le_bytes()),
        }
    }

    pub(crate) fn count(&self) -> u64 {
        match self {
            Distinct::Exact(elements) => elements.len() as u64,
            Distinct::Sketch(dense) => dense.count(),
        }
    }

    /// `u8 kind (0 exact, 1 dense)`, then `u8 n` and n little-endian u64s, or the dense bytes.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Distinct::Exact(elements) => {
                out.push(0);
                out.push(elements.len() as u8);
                for element in elements {
                    out.extend_from_slice(&element.to_le_bytes());
                }
            }
            Distinct::Sketch(dense) => {
                out.push(1);
                out.extend_from_slice(dense.as_bytes());
            }
        }
    }

    /// Decodes what [`encode`](Self::encode) wrote at the start of `bytes`; answers it and
    /// the bytes it took.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Distinct, usize)> {
        match bytes.first()? {
            0 => {
                let n = usize::from(*bytes.get(1)?);
                let body = bytes.get(2..2 + 8 * n)?;
                let elements = body
                    .chunks_exact(8)
                    .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8])))
                    .collect::<Vec<_>>();
                if n > EXACT_MAX || elements.windows(2).any(|pair| pair[0] >= pair[1]) {
                    return None;
                }
                Some((Distinct::Exact(elements), 2 + 8 * n))
            }
            1 => {
                let dense = Dense::from_bytes(bytes.get(1..1 + DENSE_LEN)?)?;
                Some((Distinct::Sketch(dense), 1 + DENSE_LEN))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_device_counts_once_and_many_count_within_the_error() {
        let mut distinct = Distinct::default();
        for _ in 0..100 {
            distinct.add(42);
        }
        assert_eq!(distinct.count(), 1);
        for n in [10u64, 64, 65, 1_000, 100_000] {
            let mut distinct = Distinct::default();
            for device in 0..n {
                distinct.add(murmur64a(&device.to_le_bytes(), 7));
            }
            let count = distinct.count() as f64;
            // 0.81 % standard error at p = 14; allow four of them.
            assert!(
                (count - n as f64).abs() <= (n as f64 * 0.033).max(0.0),
                "{n}: {count}"
            );
            let mut bytes = Vec::new();
            distinct.encode(&mut bytes);
            let (decoded, used) = Distinct::decode(&bytes).unwrap();
            assert_eq!((decoded, used), (distinct, bytes.len()));
        }
    }

    #[test]
    fn garbage_decodes_to_none() {
        for bytes in [&[][..], &[0, 2, 1], &[1, b'H'], &[9]] {
            assert!(Distinct::decode(bytes).is_none());
        }
    }
}

/// The same sketches as a real `redis-server` (installed by `scripts/test.sh`): what PFADD
/// builds matches what [`Dense::add`] builds, register for register, and each side counts the
/// other's sketch the same.
#[cfg(test)]
mod redis {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::{Child, Command, Stdio};

    use super::*;

    struct Redis {
        child: Child,
        stream: BufReader<TcpStream>,
    }

    impl Drop for Redis {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    impl Redis {
        fn start() -> Redis {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server (scripts/test.sh installs it)");
            // Poll until it accepts connections.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let stream = loop {
                match TcpStream::connect(("127.0.0.1", port)) {
                    Ok(stream) => break stream,
                    Err(error) => assert!(std::time::Instant::now() < deadline, "{error}"),
                }
            };
            Redis {
                child,
                stream: BufReader::new(stream),
            }
        }

        fn call(&mut self, parts: &[&[u8]]) -> Vec<u8> {
            let mut command = format!("*{}\r\n", parts.len()).into_bytes();
            for part in parts {
                command.extend_from_slice(format!("${}\r\n", part.len()).as_bytes());
                command.extend_from_slice(part);
                command.extend_from_slice(b"\r\n");
            }
            self.stream.get_mut().write_all(&command).expect("send");
            let mut line = String::new();
            self.stream.read_line(&mut line).expect("reply");
            match line.as_bytes()[0] {
                b'$' => {
                    let len: usize = line[1..].trim().parse().expect("length");
                    let mut body = vec![0u8; len + 2];
                    self.stream.read_exact(&mut body).expect("body");
                    body.truncate(len);
                    body
                }
                b'-' => panic!("redis: {line}"),
                _ => line[1..].trim().as_bytes().to_vec(),
            }
        }
    }

    #[test]
    fn sketches_match_redis_server() {
        let mut redis = Redis::start();
        redis.call(&[b"CONFIG", b"SET", b"hll-sparse-max-bytes", b"0"]);
        let mut dense = Dense::new();
        let elements: Vec<Vec<u8>> = (0u64..5_000)
            .map(|i| (i * 7919).to_le_bytes().to_vec())
            .collect();
        for chunk in elements.chunks(500) {
            let mut command: Vec<&[u8]> = vec![b"PFADD", b"ours"];
            command.extend(chunk.iter().map(Vec::as_slice));
            redis.call(&command);
            for element in chunk {
                dense.add(element);
            }
        }
        let theirs = redis.call(&[b"GET", b"ours"]);
        assert_eq!(theirs.len(), DENSE_LEN);
        assert_eq!(&theirs[..5], &dense.as_bytes()[..5], "header");
        assert!(
            theirs[HEADER..] == dense.as_bytes()[HEADER..],
            "registers differ"
        );
        let count: u64 = String::from_utf8(redis.call(&[b"PFCOUNT", b"ours"]))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(count, dense.count());
        // Ours, loaded into Redis, counts the same there.
        redis.call(&[b"SET", b"loaded", dense.as_bytes()]);
        let count: u64 = String::from_utf8(redis.call(&[b"PFCOUNT", b"loaded"]))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(count, dense.count());
        assert!((4_800..=5_200).contains(&count), "{count}");
    }
}
