//! A request's headers as proxy-wasm hosts hand them over: one buffer, read in place.
//!
//! The host serializes a header map as a little-endian `u32` count, then a `u32` name
//! length and a `u32` value length per pair, then each name and value followed by a NUL.
//! Reading that buffer where it lies costs two allocations per request (the buffer, and its
//! names and values split off from the binary lengths, so that they are checked as text
//! once) where a `Vec<(String, String)>` costs two per header, and header values need not
//! be UTF-8:
//! HTTP/1 allows any byte above 0x7F in a value (`obs-text`), which the SDK's own reader
//! refuses by panicking, and a panic kills the VM for every request of the worker.
//! The pass that checks the layout also notes where each header the filter knows by name
//! lies, so reading one later is an index, not a scan of the block.

use crate::request::header_names::HeaderName;
use std::ops::Range;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headers {
    /// The count and the lengths (binary, so apart from the text).
    table: Vec<u8>,
    /// The names and values, each followed by a NUL.
    buf: Buf,
    count: usize,
    /// The first value of each known header, as (start in `buf`, length), by `HeaderName::index`.
    known: [(u32, u32); HeaderName::COUNT],
    /// Which known headers are present, one bit each.
    present: u64,
    /// Which known headers are present more than once.
    repeated: u64,
}

/// The names and values, checked for UTF-8 once: in the usual case (all UTF-8) a value is
/// sliced as text without being checked again.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Buf {
    Text(String),
    Bytes(Vec<u8>),
}

impl Buf {
    fn new(raw: Vec<u8>) -> Buf {
        String::from_utf8(raw).map_or_else(|e| Buf::Bytes(e.into_bytes()), Buf::Text)
    }

    fn raw(&self) -> &[u8] {
        match self {
            Buf::Text(s) => s.as_bytes(),
            Buf::Bytes(b) => b,
        }
    }
}

fn u32_at(raw: &[u8], at: usize) -> Option<usize> {
    let bytes = raw.get(at..at.checked_add(4)?)?;
    let word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    usize::try_from(word).ok()
}

impl Headers {
    /// Checks a host's serialized map once, so that reading it later cannot fail, and
    /// indexes the known headers. `None` if the layout is broken (a host bug; the request
    /// is then refused).
    pub fn from_serialized(mut raw: Vec<u8>) -> Option<Headers> {
        let mut headers = Headers::default();
        if raw.is_empty() {
            return Some(headers);
        }
        let count = u32_at(&raw, 0)?;
        let start = count.checked_mul(8)?.checked_add(4)?;
        let mut data = start;
        for i in 0..count {
            let mut ranges = [0..0, 0..0];
            for (range, len) in ranges
                .iter_mut()
                .zip([u32_at(&raw, 4 + i * 8)?, u32_at(&raw, 8 + i * 8)?])
            {
                let end = data.checked_add(len)?;
                if raw.get(end) != Some(&0) {
                    return None;
                }
                *range = data..end;
                data = end + 1;
            }
            let [name, value] = ranges;
            // Envoy and HTTP/2 hand names over in lower case; NGINX as the client sent them
            // (`X-Auth-Token`), and a name the filter did not recognise would not be stripped.
            if let Some(n) = raw.get_mut(name.clone()) {
                n.make_ascii_lowercase();
            }
            let known = raw
                .get(name)
                .and_then(|n| std::str::from_utf8(n).ok())
                .and_then(HeaderName::of);
            match known {
                Some(h) if headers.present & h.bit() != 0 => headers.repeated |= h.bit(),
                Some(h) => {
                    headers.present |= h.bit();
                    headers.known[h.index()] = (
                        u32::try_from(value.start - start).ok()?,
                        u32::try_from(value.len()).ok()?,
                    );
                }
                None => {}
            }
        }
        let mut table = raw;
        let text = table.split_off(start);
        headers.table = table;
        headers.buf = Buf::new(text);
        headers.count = count;
        Some(headers)
    }

    /// Serializes pairs the way a host does (for hosts that hand pairs over, and tests).
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a [u8])> + Clone) -> Headers {
        let count = pairs.clone().into_iter().count();
        let mut raw = Vec::with_capacity(4 + count * 8);
        raw.extend_from_slice(&(count as u32).to_le_bytes());
        for (k, v) in pairs.clone() {
            raw.extend_from_slice(&(k.len() as u32).to_le_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_le_bytes());
        }
        for (k, v) in pairs {
            raw.extend_from_slice(k.as_bytes());
            raw.push(0);
            raw.extend_from_slice(v);
            raw.push(0);
        }
        // Well formed by construction (unless a length passes u32, which no test writes).
        Headers::from_serialized(raw).unwrap_or_default()
    }

    /// (name, value) byte ranges of every pair, in order.
    fn ranges(&self) -> impl Iterator<Item = (Range<usize>, Range<usize>)> + '_ {
        let mut data = 0;
        (0..self.count).map(move |i| {
            // Checked by `from_serialized` (or written by `from_pairs`).
            let k = u32_at(&self.table, 4 + i * 8).unwrap_or(0);
            let v = u32_at(&self.table, 8 + i * 8).unwrap_or(0);
            let name = data..data + k;
            let value = data + k + 1..data + k + 1 + v;
            data += k + v + 2;
            (name, value)
        })
    }

    fn bytes(&self, r: Range<usize>) -> &[u8] {
        self.buf.raw().get(r).unwrap_or_default()
    }

    /// Every (name, value) pair, values as bytes.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.ranges().map(|(k, v)| (self.bytes(k), self.bytes(v)))
    }

    /// Every header name (names are tokens, so ASCII; a broken one reads as empty).
    pub fn names(&self) -> impl Iterator<Item = &str> + '_ {
        self.ranges().map(|(k, _)| self.text(k).unwrap_or(""))
    }

    /// Where the first value of `name` (lower case) lies.
    fn find(&self, name: &str) -> Option<Range<usize>> {
        self.ranges()
            .find(|(k, _)| self.bytes(k.clone()) == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// Where the first value of `name` (lower case) lies: from the index for a known name.
    fn locate(&self, name: &str) -> Option<Range<usize>> {
        match HeaderName::of(name) {
            Some(h) => self.locate_known(h),
            None => self.find(name),
        }
    }

    /// Which known headers are present, as a set of `HeaderName::bit`s.
    pub fn known_mask(&self) -> u64 {
        self.present
    }

    /// Which known headers are present more than once, as a set of `HeaderName::bit`s.
    pub fn repeated_mask(&self) -> u64 {
        self.repeated
    }

    /// How many times `name` (lower case) is present.
    pub fn count_of(&self, name: &str) -> usize {
        self.ranges()
            .filter(|(k, _)| self.bytes(k.clone()) == name.as_bytes())
            .count()
    }

    fn locate_known(&self, h: HeaderName) -> Option<Range<usize>> {
        let (start, len) = self.known[h.index()];
        let start = start as usize;
        (self.present & h.bit() != 0).then_some(start..start + len as usize)
    }

    /// The first value of `name` (lower case), as bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        Some(self.bytes(self.locate(name)?))
    }

    /// The first value of `name` (lower case) as text: `Some(Err(NotText))` if it is not UTF-8.
    pub fn get(&self, name: &str) -> Option<Result<&str, NotText>> {
        Some(self.text(self.locate(name)?).ok_or(NotText))
    }

    /// The first value of a known header as text: `Some(Err(NotText))` if it is not UTF-8.
    pub fn known(&self, h: HeaderName) -> Option<Result<&str, NotText>> {
        Some(self.text(self.locate_known(h)?).ok_or(NotText))
    }

    /// The known headers present, in the order of `HeaderName::ALL`.
    pub fn known_present(&self) -> impl Iterator<Item = HeaderName> + '_ {
        HeaderName::ALL
            .iter()
            .copied()
            .filter(|h| self.present & h.bit() != 0)
    }

    fn text(&self, r: Range<usize>) -> Option<&str> {
        match &self.buf {
            // A value lies between NULs, so on character boundaries.
            Buf::Text(s) => s.get(r),
            Buf::Bytes(b) => std::str::from_utf8(b.get(r)?).ok(),
        }
    }

    /// Every name and value is UTF-8 (the usual case).
    pub fn is_text(&self) -> bool {
        matches!(self.buf, Buf::Text(_))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

impl Default for Headers {
    fn default() -> Self {
        Headers {
            table: Vec::new(),
            buf: Buf::Text(String::new()),
            count: 0,
            known: [(0, 0); HeaderName::COUNT],
            present: 0,
            repeated: 0,
        }
    }
}

/// A header value that is not UTF-8 where the filter needs text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotText;

#[cfg(test)]
mod tests {
    use super::*;

    impl Headers {
        fn serialized(&self) -> Vec<u8> {
            [self.table.as_slice(), self.buf.raw()].concat()
        }
    }

    fn h(pairs: &[(&str, &[u8])]) -> Headers {
        Headers::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn reads_what_it_wrote() {
        let m = h(&[
            (":path", b"/api/v1/query?query=up"),
            ("x-auth-token", b"tok"),
            ("x-empty", b""),
            ("x-auth-token", b"second"),
        ]);
        assert_eq!(m.len(), 4);
        assert_eq!(m.get(":path"), Some(Ok("/api/v1/query?query=up")));
        assert_eq!(
            m.get("x-auth-token"),
            Some(Ok("tok")),
            "the first value counts"
        );
        assert_eq!(m.get("x-empty"), Some(Ok("")));
        assert_eq!(m.get("x-missing"), None);
        assert_eq!(
            m.names().collect::<Vec<_>>(),
            [":path", "x-auth-token", "x-empty", "x-auth-token"]
        );
        let again = Headers::from_serialized(m.serialized()).unwrap();
        assert_eq!(again, m);
        assert!(Headers::from_serialized(Vec::new()).unwrap().is_empty());
    }

    #[test]
    fn lengths_above_127_do_not_make_the_block_binary() {
        let token = "t".repeat(183);
        let m = h(&[
            (":path", "/q".repeat(100).as_bytes()),
            ("x-auth-token", token.as_bytes()),
        ]);
        assert!(m.is_text(), "a length's bytes are not part of the text");
        assert_eq!(m.known(HeaderName::AuthToken), Some(Ok(token.as_str())));
        assert!(!h(&[("x-junk", b"caf\xe9")]).is_text());
    }

    #[test]
    fn values_need_not_be_utf8() {
        let m = h(&[("x-junk", b"caf\xe9"), ("x-auth-token", b"tok")]);
        assert_eq!(m.get("x-junk"), Some(Err(NotText)));
        assert_eq!(m.get_bytes("x-junk"), Some(&b"caf\xe9"[..]));
        assert_eq!(m.get("x-auth-token"), Some(Ok("tok")));
        assert_eq!(m.iter().count(), 2);
    }

    #[test]
    fn known_headers_are_indexed_in_one_pass() {
        let m = h(&[
            ("x-junk", b"1"),
            (":path", b"/q"),
            ("x-auth-token", b"first"),
            ("x-project-id", b"evil"),
            ("x-auth-token", b"second"),
            ("content-type", b"caf\xe9"),
        ]);
        assert_eq!(m.known(HeaderName::Path), Some(Ok("/q")));
        assert_eq!(
            m.known(HeaderName::AuthToken),
            Some(Ok("first")),
            "the first value counts, as in get"
        );
        assert_eq!(m.known(HeaderName::ContentType), Some(Err(NotText)));
        assert_eq!(m.known(HeaderName::Method), None);
        assert_eq!(
            m.get("x-auth-token"),
            m.known(HeaderName::AuthToken),
            "get goes through the index"
        );
        assert_eq!(m.get("x-junk"), Some(Ok("1")), "and scans for other names");
        let present: Vec<_> = m.known_present().collect();
        assert_eq!(
            present,
            [
                HeaderName::Path,
                HeaderName::ContentType,
                HeaderName::AuthToken,
                HeaderName::ProjectId
            ]
        );
        assert_eq!(Headers::default().known_present().count(), 0);
        assert_eq!(
            m.repeated_mask(),
            HeaderName::AuthToken.bit(),
            "a second copy is noted"
        );
        assert_eq!(
            (
                m.count_of("x-auth-token"),
                m.count_of("x-junk"),
                m.count_of("x-none")
            ),
            (2, 1, 0)
        );
    }

    #[test]
    fn broken_layouts_are_refused() {
        let good = h(&[("a", b"1"), ("bb", b"22")]).serialized();
        for cut in 1..good.len() {
            assert_eq!(
                Headers::from_serialized(good[..cut].to_vec()),
                None,
                "cut at {cut}"
            );
        }
        let mut no_nul = good.clone();
        let last = no_nul.len() - 1;
        no_nul[last] = b'x';
        assert_eq!(Headers::from_serialized(no_nul), None);
        let mut huge = good.clone();
        huge[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::from_serialized(huge), None);
        let mut long = good;
        long[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Headers::from_serialized(long), None);
    }
}
