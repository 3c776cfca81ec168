//! A small deterministic mutator (xorshift64*): byte flips, inserts,
//! deletions, duplications, line splices and SDP-flavoured tokens.

/// Pseudo-random generator (xorshift64*), seeded.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced by a constant).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(0x9e37_79b9_7f4a_7c15))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\n",
    b"a=",
    b"m=video 9 UDP/TLS/RTP/SAVPF 96\r\n",
    b"m=audio 0 RTP/AVP 0\r\n",
    b"a=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\n",
    b"a=candidate:",
    b"a=ice-ufrag:",
    b"a=ice-pwd:",
    b"a=fingerprint:sha-256 ",
    b"a=setup:passive\r\n",
    b"a=rtpmap:96 H264/90000\r\n",
    b"a=fmtp:96 apt=97;profile-level-id=64001f\r\n",
    b"a=rid:h send\r\n",
    b"a=simulcast:send h;m;l\r\n",
    b"a=ssrc-group:FID 1 2\r\n",
    b"a=mid:",
    b"a=ice-lite\r\n",
    b"a=end-of-candidates\r\n",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
    b"\0",
    b":",
    b";",
    b"=",
    b"/",
    b" ",
    b"4294967296",
    b"-1",
    b"99999999999999999999",
    b"[",
    b"[[streams.a]]\n",
    b"\"",
    b"workers = ",
    b"http = \"",
    b"[turn]\nurls = [\"turn:x\"]\nsecret = \"s\"\n",
    b"ttl_secs = 18446744073709551615\n",
    b"publisher_grace = -1e308\n",
];

/// Mutate `data` in place 1–8 times; `other` is a second seed for splices.
pub fn mutate(rng: &mut Rng, data: &mut Vec<u8>, other: &[u8]) {
    for _ in 0..1 + rng.below(8) {
        let len = data.len();
        match rng.below(9) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                data.insert(i, rng.next_u64() as u8);
            }
            2 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                data.drain(i..i + n);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(256));
                let chunk = data[i..i + n].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, chunk);
            }
            4 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                let i = rng.below(len + 1);
                data.splice(i..i, t.iter().copied());
            }
            5 if !other.is_empty() => {
                // Splice a whole line of the other seed at a line start.
                let lines: Vec<&[u8]> = other.split_inclusive(|b| *b == b'\n').collect();
                let line = lines[rng.below(lines.len())].to_vec();
                let starts: Vec<usize> = std::iter::once(0)
                    .chain(
                        data.iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                let at = starts[rng.below(starts.len())];
                data.splice(at..at, line);
            }
            6 if len > 0 => {
                // Repeat one line many times (100 m-lines, huge attributes).
                let lines: Vec<Vec<u8>> = data
                    .split_inclusive(|b| *b == b'\n')
                    .map(<[u8]>::to_vec)
                    .collect();
                let line = lines[rng.below(lines.len())].clone();
                for _ in 0..rng.below(200) {
                    data.extend_from_slice(&line);
                }
            }
            7 if len > 0 => {
                let i = rng.below(len);
                data.truncate(i);
            }
            _ => {
                let i = rng.below(len + 1);
                let digits = (rng.next_u64() % 1_000_000_007).to_string();
                data.splice(i..i, digits.into_bytes());
            }
        }
        if data.len() > 256 * 1024 {
            data.truncate(256 * 1024);
        }
    }
}
