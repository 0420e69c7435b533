//! The protobuf wire format read in place and written by hand, for [`super::rewrite`]: a
//! reader over the decompressed body that refuses exactly what prost's decoder (with the
//! pre-scan of [`super::limits`]) refuses, and writers that produce exactly what prost's
//! encoder produces for the same values (fields in tag order, proto3 defaults omitted,
//! repeated scalars packed, every length a minimal varint).
//!
//! Reading follows prost 0.14 to the letter: a varint is at most 10 bytes (the tenth 0 or 1);
//! a key is at most `u32::MAX`, its wire type 0 to 5 and its field number not 0; a known field
//! with another wire type is an error, a repeated scalar is read packed or not; an unknown
//! field is skipped, groups included, within prost's recursion limit (100 levels, one per
//! message or group entered); every string is UTF-8; the last value of a scalar field wins
//! and a oneof holds its last member. The levels the pre-scan walks (the request, its series,
//! their exemplars and histograms) refuse groups as it does.
//!
//! Sub-messages a series holds (samples, exemplars, histograms, metadata) are read into plain
//! values and written at once, in their canonical form, into a buffer of their field: the
//! series' length is then known before it is written. Nothing here allocates per message but
//! those buffers' growth.

use super::limits::Estimate;
use super::{v1, Limits};
use crate::enforce::protowire::packed_varints;
use std::mem::size_of;

/// A body prost (or the pre-scan) refuses; [`super::rewrite`] asks the reference path why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bad;

pub(super) type Res<T> = Result<T, Bad>;

/// The pre-scan's estimate ([`super::limits`]), kept as the body is read, and the limits it
/// must stay within. A body is refused as soon as it is over them (the pre-scan refuses it as
/// well), so that nothing this pass keeps grows past what the pre-scan lets the reference
/// path allocate.
pub(super) struct Tally<'l> {
    pub(super) e: Estimate,
    limits: &'l Limits,
    /// Most labels a 1.0 series may have: more are over the limit of labels or of memory.
    pub(super) labels: usize,
    /// Most samples a 1.0 series may have: more are over the limit of memory.
    pub(super) samples: usize,
}

impl<'l> Tally<'l> {
    pub(super) fn new(limits: &'l Limits) -> Self {
        let per = |size: usize| limits.max_memory_bytes / size.saturating_mul(2).max(1);
        Tally {
            e: Estimate::default(),
            limits,
            labels: limits
                .max_labels_per_series
                .min(per(size_of::<v1::Label>())),
            samples: per(size_of::<v1::Sample>()),
        }
    }

    /// `n` elements of `T` more.
    #[inline(always)]
    pub(super) fn add<T>(&mut self, n: usize) -> Res<()> {
        self.e.add::<T>(n);
        self.check()
    }

    /// `n` bytes of strings more.
    #[inline(always)]
    pub(super) fn add_strings(&mut self, n: usize) -> Res<()> {
        self.e.add_strings(n);
        self.check()
    }

    /// One series more.
    #[inline(always)]
    pub(super) fn series(&mut self) -> Res<()> {
        self.e.series += 1;
        self.check()
    }

    #[inline(always)]
    fn check(&self) -> Res<()> {
        if self.e.over(self.limits) {
            return Err(Bad);
        }
        Ok(())
    }
}

pub(super) const VARINT: u8 = 0;
pub(super) const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
pub(super) const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// prost's recursion budget at each level of the messages (`DecodeContext`: 100 at the top,
/// one less inside each message): what an unknown group may still nest.
pub(super) const CTX_TOP: u32 = 100;
pub(super) const CTX_SERIES: u32 = 99;
pub(super) const CTX_IN_SERIES: u32 = 98;
pub(super) const CTX_IN_SUB: u32 = 97;

/// A protobuf reader over a slice; never panics.
#[derive(Clone, Copy)]
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline]
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    #[inline]
    pub(super) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Bytes left to read.
    #[inline]
    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// The content of the next field if it is field 1, length-delimited, shorter than 128
    /// bytes (a 1.0 series' label, as encoders write it); nothing read otherwise.
    #[inline(always)]
    pub(super) fn short_field_1(&mut self) -> Option<&'a [u8]> {
        if let [0x0a, len @ 0..=0x7f, rest @ ..] = self.buf {
            let (head, rest) = rest.split_at_checked(usize::from(*len))?;
            self.buf = rest;
            return Some(head);
        }
        None
    }

    #[inline(always)]
    pub(super) fn varint(&mut self) -> Res<u64> {
        match self.buf {
            [b, rest @ ..] if *b < 0x80 => {
                self.buf = rest;
                Ok(u64::from(*b))
            }
            // Two bytes: refs into a table of more than 128 symbols, series lengths.
            [b0, b1, rest @ ..] if *b1 < 0x80 => {
                self.buf = rest;
                Ok(u64::from(b0 & 0x7f) | (u64::from(*b1) << 7))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Res<u64> {
        let mut value: u64 = 0;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // The tenth byte holds bit 63 only (prost: "invalid varint").
                if i == 9 && b >= 0x02 {
                    return Err(Bad);
                }
                self.buf = self.buf.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err(Bad)
    }

    /// The next field's number and wire type.
    #[inline(always)]
    pub(super) fn key(&mut self) -> Res<(u32, u8)> {
        let key = u32::try_from(self.varint()?).map_err(|_| Bad)?;
        let wire = (key & 7) as u8;
        let tag = key >> 3;
        if tag == 0 || wire > I32 {
            return Err(Bad);
        }
        Ok((tag, wire))
    }

    /// A length-delimited field's content.
    #[inline(always)]
    pub(super) fn bytes(&mut self) -> Res<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| Bad)?;
        let (head, rest) = self.buf.split_at_checked(len).ok_or(Bad)?;
        self.buf = rest;
        Ok(head)
    }

    #[inline(always)]
    pub(super) fn fixed64(&mut self) -> Res<u64> {
        let (head, rest) = self.buf.split_first_chunk::<8>().ok_or(Bad)?;
        self.buf = rest;
        Ok(u64::from_le_bytes(*head))
    }

    #[inline]
    fn advance(&mut self, n: usize) -> Res<()> {
        self.buf = self.buf.get(n..).ok_or(Bad)?;
        Ok(())
    }

    /// Skips an unknown field as prost's `skip_field` does, `ctx` being prost's recursion
    /// budget at this level.
    pub(super) fn skip(&mut self, wire: u8, tag: u32, ctx: u32) -> Res<()> {
        if ctx == 0 {
            return Err(Bad);
        }
        match wire {
            VARINT => {
                self.varint()?;
            }
            I64 => self.advance(8)?,
            LEN => {
                self.bytes()?;
            }
            I32 => self.advance(4)?,
            SGROUP => loop {
                let (inner, w) = self.key()?;
                if w == EGROUP {
                    if inner != tag {
                        return Err(Bad);
                    }
                    break;
                }
                self.skip(w, inner, ctx - 1)?;
            },
            _ => return Err(Bad),
        }
        Ok(())
    }

    /// Skips an unknown field at a level the pre-scan walks: no groups.
    #[inline]
    pub(super) fn skip_flat(&mut self, wire: u8, tag: u32, ctx: u32) -> Res<()> {
        if wire == SGROUP {
            return Err(Bad);
        }
        self.skip(wire, tag, ctx)
    }

    /// A `double` field's value (wire type checked).
    #[inline(always)]
    pub(super) fn double(&mut self, wire: u8) -> Res<f64> {
        if wire != I64 {
            return Err(Bad);
        }
        Ok(f64::from_bits(self.fixed64()?))
    }

    /// A varint field's value (wire type checked).
    #[inline(always)]
    pub(super) fn varint_field(&mut self, wire: u8) -> Res<u64> {
        if wire != VARINT {
            return Err(Bad);
        }
        self.varint()
    }

    /// A `string` field's bytes, checked to be UTF-8 (wire type checked).
    #[inline]
    pub(super) fn string(&mut self, wire: u8) -> Res<&'a [u8]> {
        if wire != LEN {
            return Err(Bad);
        }
        let s = self.bytes()?;
        utf8(s)?;
        Ok(s)
    }

    /// A repeated varint field, packed (`LEN`) or not, each value handed to `each`; counted
    /// as `T`s as the pre-scan counts them.
    #[inline]
    pub(super) fn repeated_varint<T>(
        &mut self,
        wire: u8,
        e: &mut Tally<'_>,
        mut each: impl FnMut(u64),
    ) -> Res<()> {
        match wire {
            VARINT => {
                e.add::<T>(1)?;
                each(self.varint()?)
            }
            LEN => {
                let bytes = self.bytes()?;
                e.add::<T>(packed_varints(bytes))?;
                let mut packed = Reader::new(bytes);
                while !packed.is_empty() {
                    each(packed.varint()?);
                }
            }
            _ => return Err(Bad),
        }
        Ok(())
    }

    /// A repeated `double` field, packed or not (counted as the pre-scan counts it).
    #[inline]
    pub(super) fn repeated_double(
        &mut self,
        wire: u8,
        values: &mut Vec<f64>,
        e: &mut Tally<'_>,
    ) -> Res<()> {
        match wire {
            I64 => {
                e.add::<i64>(1)?;
                values.push(f64::from_bits(self.fixed64()?))
            }
            LEN => {
                let packed = self.bytes()?;
                e.add::<f64>(packed.len() / 8)?;
                let chunks = packed.chunks_exact(8);
                if !chunks.remainder().is_empty() {
                    return Err(Bad);
                }
                values.extend(
                    chunks
                        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
                        .map(f64::from_le_bytes),
                );
            }
            _ => return Err(Bad),
        }
        Ok(())
    }
}

/// UTF-8, with a fast path for ASCII.
#[inline]
pub(super) fn utf8(s: &[u8]) -> Res<()> {
    if s.is_ascii() || std::str::from_utf8(s).is_ok() {
        Ok(())
    } else {
        Err(Bad)
    }
}

pub(super) fn zigzag32(v: i32) -> u64 {
    u64::from(((v << 1) ^ (v >> 31)) as u32)
}

pub(super) fn unzigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ (-((v & 1) as i32))
}

pub(super) fn zigzag64(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

pub(super) fn unzigzag64(v: u64) -> i64 {
    ((v >> 1) as i64) ^ (-((v & 1) as i64))
}

/// The length of `v` as a varint (prost's `encoded_len_varint`).
#[inline(always)]
pub(super) fn varint_len(v: u64) -> usize {
    (((63 - (v | 1).leading_zeros()) * 9 + 73) / 64) as usize
}

#[inline(always)]
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field: its key, its length, the bytes.
#[inline(always)]
pub(super) fn put_bytes(out: &mut Vec<u8>, key: u8, bytes: &[u8]) {
    out.push(key);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A `string` field unless it is empty (proto3's default).
#[inline(always)]
pub(super) fn put_string(out: &mut Vec<u8>, key: u8, s: &[u8]) {
    if !s.is_empty() {
        put_bytes(out, key, s);
    }
}

/// A `double` field unless it is 0 (`-0.0` included, as prost compares it).
#[inline(always)]
pub(super) fn put_double(out: &mut Vec<u8>, key: u8, v: f64) {
    if v != 0.0 {
        out.push(key);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A varint field unless it is 0.
#[inline(always)]
pub(super) fn put_uvarint(out: &mut Vec<u8>, key: &[u8], v: u64) {
    if v != 0 {
        out.extend_from_slice(key);
        put_varint(out, v);
    }
}

/// `string`'s encoded length as a field with a one-byte key, 0 when empty.
#[inline(always)]
pub(super) fn string_len(s: &[u8]) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + varint_len(s.len() as u64) + s.len()
    }
}

/// A nested message: `key`, the length of `body`, `body`.
#[inline]
pub(super) fn put_message(out: &mut Vec<u8>, key: u8, body: &[u8]) {
    put_bytes(out, key, body);
}

/// A oneof of an integer and a double member (the histograms' counts).
#[derive(Debug, Default, Clone, Copy)]
enum Count {
    #[default]
    None,
    Int(u64),
    Float(f64),
}

impl Count {
    /// Written whenever set, 0 included (a oneof member has no default).
    fn put(self, out: &mut Vec<u8>, int_key: u8, float_key: u8) {
        match self {
            Count::None => {}
            Count::Int(v) => {
                out.push(int_key);
                put_varint(out, v);
            }
            Count::Float(v) => {
                out.push(float_key);
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
}

/// A 1.0 `Sample` (value 1, timestamp 2). Written canonically into `out` as field `key`,
/// unless `raw` is that encoding already (what encoders write: both fields, in order, neither
/// a default): then nothing is written and `true` returned, for the caller to copy `raw`.
#[inline(always)]
pub(super) fn sample_v1(raw: &[u8], key: u8, out: &mut Vec<u8>) -> Res<bool> {
    if let [0x09, a, b, c, d, e, f, g, h, 0x10, ts @ ..] = raw {
        let value = f64::from_le_bytes([*a, *b, *c, *d, *e, *f, *g, *h]);
        let mut r = Reader::new(ts);
        if let Ok(t) = r.varint() {
            if r.is_empty() && value != 0.0 && t != 0 && varint_len(t) == ts.len() {
                return Ok(true);
            }
        }
    }
    sample_v1_slow(raw, key, out)?;
    Ok(false)
}

#[inline(never)]
fn sample_v1_slow(raw: &[u8], key: u8, out: &mut Vec<u8>) -> Res<()> {
    let (mut value, mut timestamp) = (0.0, 0i64);
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => value = r.double(w)?,
            (2, w) => timestamp = r.varint_field(w)? as i64,
            (tag, w) => r.skip(w, tag, CTX_IN_SERIES)?,
        }
    }
    let len = if value != 0.0 { 9 } else { 0 }
        + if timestamp != 0 {
            1 + varint_len(timestamp as u64)
        } else {
            0
        };
    out.push(key);
    put_varint(out, len as u64);
    put_double(out, 0x09, value);
    put_uvarint(out, &[0x10], timestamp as u64);
    Ok(())
}

/// A 2.0 `Sample` (value 1, timestamp 2, start_timestamp 3), written canonically.
#[inline]
pub(super) fn sample_v2(raw: &[u8], key: u8, out: &mut Vec<u8>) -> Res<()> {
    let (mut value, mut timestamp, mut start) = (0.0, 0i64, 0i64);
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => value = r.double(w)?,
            (2, w) => timestamp = r.varint_field(w)? as i64,
            (3, w) => start = r.varint_field(w)? as i64,
            (tag, w) => r.skip(w, tag, CTX_IN_SERIES)?,
        }
    }
    let len = if value != 0.0 { 9 } else { 0 }
        + if timestamp != 0 {
            1 + varint_len(timestamp as u64)
        } else {
            0
        }
        + if start != 0 {
            1 + varint_len(start as u64)
        } else {
            0
        };
    out.push(key);
    put_varint(out, len as u64);
    put_double(out, 0x09, value);
    put_uvarint(out, &[0x10], timestamp as u64);
    put_uvarint(out, &[0x18], start as u64);
    Ok(())
}

/// A 1.0 `Label` (name 1, value 2) as its two strings, checked to be UTF-8, and whether `raw`
/// is its canonical encoding (name then value, neither empty: what encoders write). `ctx` is
/// prost's recursion budget inside the label.
#[inline(always)]
pub(super) fn label(raw: &[u8], ctx: u32) -> Res<(&[u8], &[u8], bool)> {
    if let [0x0a, n @ 1..=0x7f, rest @ ..] = raw {
        if let Some((name, [0x12, m @ 1..=0x7f, value @ ..])) =
            rest.split_at_checked(usize::from(*n))
        {
            if usize::from(*m) == value.len() {
                if !ascii(raw) {
                    utf8(name)?;
                    utf8(value)?;
                }
                return Ok((name, value, true));
            }
        }
    }
    let (name, value) = label_slow(raw, ctx)?;
    Ok((name, value, false))
}

#[inline(never)]
fn label_slow(raw: &[u8], ctx: u32) -> Res<(&[u8], &[u8])> {
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => name = r.string(w)?,
            (2, w) => value = r.string(w)?,
            (tag, w) => r.skip(w, tag, ctx)?,
        }
    }
    Ok((name, value))
}

/// No byte over 0x7f, eight at a time.
#[inline(always)]
pub(super) fn ascii(s: &[u8]) -> bool {
    let mut chunks = s.chunks_exact(8);
    let mut acc = 0u64;
    for c in &mut chunks {
        if let Ok(c) = <[u8; 8]>::try_from(c) {
            acc |= u64::from_le_bytes(c);
        }
    }
    for &b in chunks.remainder() {
        acc |= u64::from(b);
    }
    acc & 0x8080_8080_8080_8080 == 0
}

/// A label's encoded length inside its message (without its own key and length).
#[inline(always)]
pub(super) fn label_body_len(name: &[u8], value: &[u8]) -> usize {
    string_len(name) + string_len(value)
}

/// A label as a repeated `Label` field (key `0x0a` in both `TimeSeries` and `Exemplar`).
#[inline(always)]
pub(super) fn put_label(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0x0a);
    put_varint(out, label_body_len(name, value) as u64);
    put_string(out, 0x0a, name);
    put_string(out, 0x12, value);
}

/// A label as a repeated field's whole encoded length.
#[inline(always)]
pub(super) fn label_len(name: &[u8], value: &[u8]) -> usize {
    let body = label_body_len(name, value);
    1 + varint_len(body as u64) + body
}

/// Reused buffers for the sub-messages' repeated fields.
#[derive(Default)]
pub(super) struct Scratch<'a> {
    body: Vec<u8>,
    labels: Vec<(&'a [u8], &'a [u8])>,
    refs: Vec<u32>,
    neg_spans: Vec<(i32, u32)>,
    pos_spans: Vec<(i32, u32)>,
    neg_deltas: Vec<i64>,
    pos_deltas: Vec<i64>,
    neg_counts: Vec<f64>,
    pos_counts: Vec<f64>,
    custom: Vec<f64>,
}

/// A 1.0 `Exemplar` (labels 1, value 2, timestamp 3), written canonically as field `key`.
/// The pre-scan walks exemplars: no groups.
pub(super) fn exemplar_v1<'a>(
    raw: &'a [u8],
    key: u8,
    out: &mut Vec<u8>,
    s: &mut Scratch<'a>,
    e: &mut Tally<'_>,
) -> Res<()> {
    let (mut value, mut timestamp) = (0.0, 0i64);
    s.labels.clear();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                let l = r.bytes()?;
                e.add::<v1::Label>(1)?;
                e.add_strings(l.len())?;
                let (name, value, _) = label(l, CTX_IN_SUB)?;
                s.labels.push((name, value));
            }
            (1, _) => return Err(Bad),
            (2, w) => value = r.double(w)?,
            (3, w) => timestamp = r.varint_field(w)? as i64,
            (tag, w) => r.skip_flat(w, tag, CTX_IN_SERIES)?,
        }
    }
    s.body.clear();
    for &(name, value) in &s.labels {
        put_label(&mut s.body, name, value);
    }
    put_double(&mut s.body, 0x11, value);
    put_uvarint(&mut s.body, &[0x18], timestamp as u64);
    put_message(out, key, &s.body);
    Ok(())
}

/// A 2.0 `Exemplar` (labels_refs 1, value 2, timestamp 3), written canonically. Its refs are
/// not resolved (the reference path does not check them either).
pub(super) fn exemplar_v2(
    raw: &[u8],
    key: u8,
    out: &mut Vec<u8>,
    s: &mut Scratch<'_>,
    e: &mut Tally<'_>,
) -> Res<()> {
    let (mut value, mut timestamp) = (0.0, 0i64);
    s.refs.clear();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => {
                let refs = &mut s.refs;
                r.repeated_varint::<u32>(w, e, |v| refs.push(v as u32))?
            }
            (2, w) => value = r.double(w)?,
            (3, w) => timestamp = r.varint_field(w)? as i64,
            (tag, w) => r.skip_flat(w, tag, CTX_IN_SERIES)?,
        }
    }
    s.body.clear();
    put_refs(&mut s.body, 0x0a, &s.refs);
    put_double(&mut s.body, 0x11, value);
    put_uvarint(&mut s.body, &[0x18], timestamp as u64);
    put_message(out, key, &s.body);
    Ok(())
}

/// Packed `uint32`s, unless there are none.
#[inline]
pub(super) fn put_refs(out: &mut Vec<u8>, key: u8, refs: &[u32]) {
    if refs.is_empty() {
        return;
    }
    let len: usize = refs.iter().map(|&r| varint_len(u64::from(r))).sum();
    out.push(key);
    put_varint(out, len as u64);
    for &r in refs {
        put_varint(out, u64::from(r));
    }
}

/// A `BucketSpan` (offset 1 sint32, length 2 uint32); not walked by the pre-scan.
fn span(raw: &[u8]) -> Res<(i32, u32)> {
    let (mut offset, mut length) = (0i32, 0u32);
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => offset = unzigzag32(r.varint_field(w)?),
            (2, w) => length = r.varint_field(w)? as u32,
            (tag, w) => r.skip(w, tag, CTX_IN_SUB)?,
        }
    }
    Ok((offset, length))
}

fn put_spans(out: &mut Vec<u8>, key: u8, spans: &[(i32, u32)]) {
    for &(offset, length) in spans {
        let len = if offset != 0 {
            1 + varint_len(zigzag32(offset))
        } else {
            0
        } + if length != 0 {
            1 + varint_len(u64::from(length))
        } else {
            0
        };
        out.push(key);
        put_varint(out, len as u64);
        put_uvarint(out, &[0x08], zigzag32(offset));
        put_uvarint(out, &[0x10], u64::from(length));
    }
}

fn put_deltas(out: &mut Vec<u8>, key: u8, deltas: &[i64]) {
    if deltas.is_empty() {
        return;
    }
    let len: usize = deltas.iter().map(|&d| varint_len(zigzag64(d))).sum();
    out.push(key);
    put_varint(out, len as u64);
    for &d in deltas {
        put_varint(out, zigzag64(d));
    }
}

fn put_doubles(out: &mut Vec<u8>, key: &[u8], values: &[f64]) {
    if values.is_empty() {
        return;
    }
    out.extend_from_slice(key);
    put_varint(out, (values.len() * 8) as u64);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A `Histogram` (1.0's, or 2.0's with `start_timestamp` 17), written canonically as field
/// `key`. The pre-scan walks histograms: no groups (but in their spans).
pub(super) fn histogram(
    raw: &[u8],
    v2: bool,
    key: u8,
    out: &mut Vec<u8>,
    s: &mut Scratch<'_>,
    e: &mut Tally<'_>,
) -> Res<()> {
    let (mut count, mut zero_count) = (Count::None, Count::None);
    let (mut sum, mut zero_threshold) = (0.0, 0.0);
    let (mut schema, mut reset_hint) = (0i32, 0i32);
    let (mut timestamp, mut start) = (0i64, 0i64);
    s.neg_spans.clear();
    s.pos_spans.clear();
    s.neg_deltas.clear();
    s.pos_deltas.clear();
    s.neg_counts.clear();
    s.pos_counts.clear();
    s.custom.clear();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => count = Count::Int(r.varint_field(w)?),
            (2, w) => count = Count::Float(r.double(w)?),
            (3, w) => sum = r.double(w)?,
            (4, w) => schema = unzigzag32(r.varint_field(w)?),
            (5, w) => zero_threshold = r.double(w)?,
            (6, w) => zero_count = Count::Int(r.varint_field(w)?),
            (7, w) => zero_count = Count::Float(r.double(w)?),
            (8, LEN) => {
                e.add::<v1::BucketSpan>(1)?;
                s.neg_spans.push(span(r.bytes()?)?)
            }
            (9, w) => {
                let deltas = &mut s.neg_deltas;
                r.repeated_varint::<i64>(w, e, |v| deltas.push(unzigzag64(v)))?
            }
            (10, w) => r.repeated_double(w, &mut s.neg_counts, e)?,
            (11, LEN) => {
                e.add::<v1::BucketSpan>(1)?;
                s.pos_spans.push(span(r.bytes()?)?)
            }
            (12, w) => {
                let deltas = &mut s.pos_deltas;
                r.repeated_varint::<i64>(w, e, |v| deltas.push(unzigzag64(v)))?
            }
            (13, w) => r.repeated_double(w, &mut s.pos_counts, e)?,
            (8 | 11, _) => return Err(Bad),
            (14, w) => reset_hint = r.varint_field(w)? as i32,
            (15, w) => timestamp = r.varint_field(w)? as i64,
            (16, w) => r.repeated_double(w, &mut s.custom, e)?,
            (17, w) if v2 => start = r.varint_field(w)? as i64,
            (tag, w) => r.skip_flat(w, tag, CTX_IN_SERIES)?,
        }
    }
    let b = &mut s.body;
    b.clear();
    count.put(b, 0x08, 0x11);
    put_double(b, 0x19, sum);
    put_uvarint(b, &[0x20], zigzag32(schema));
    put_double(b, 0x29, zero_threshold);
    zero_count.put(b, 0x30, 0x39);
    put_spans(b, 0x42, &s.neg_spans);
    put_deltas(b, 0x4a, &s.neg_deltas);
    put_doubles(b, &[0x52], &s.neg_counts);
    put_spans(b, 0x5a, &s.pos_spans);
    put_deltas(b, 0x62, &s.pos_deltas);
    put_doubles(b, &[0x6a], &s.pos_counts);
    // An enum is an int32: negative values are sign-extended to 10 bytes.
    put_uvarint(b, &[0x70], i64::from(reset_hint) as u64);
    put_uvarint(b, &[0x78], timestamp as u64);
    put_doubles(b, &[0x82, 0x01], &s.custom);
    put_uvarint(b, &[0x88, 0x01], start as u64);
    put_message(out, key, b);
    Ok(())
}

/// A 1.0 `MetricMetadata` (type 1, metric_family_name 2, help 4, unit 5), checked, and
/// written canonically as field `key` into `out` if there is one.
pub(super) fn metadata_v1(
    raw: &[u8],
    key: u8,
    out: Option<&mut Vec<u8>>,
    body: &mut Vec<u8>,
) -> Res<()> {
    let mut kind = 0i32;
    let (mut name, mut help, mut unit): (&[u8], &[u8], &[u8]) = (b"", b"", b"");
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => kind = r.varint_field(w)? as i32,
            (2, w) => name = r.string(w)?,
            (4, w) => help = r.string(w)?,
            (5, w) => unit = r.string(w)?,
            (tag, w) => r.skip(w, tag, CTX_SERIES)?,
        }
    }
    if let Some(out) = out {
        body.clear();
        put_uvarint(body, &[0x08], i64::from(kind) as u64);
        put_string(body, 0x12, name);
        put_string(body, 0x22, help);
        put_string(body, 0x2a, unit);
        put_message(out, key, body);
    }
    Ok(())
}

/// A 2.0 series' `Metadata` (type 1, help_ref 3, unit_ref 4): an optional message, so a
/// second one merges into the first.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Metadata2 {
    kind: i32,
    help: u32,
    unit: u32,
}

impl Metadata2 {
    pub(super) fn merge(&mut self, raw: &[u8]) -> Res<()> {
        let mut r = Reader::new(raw);
        while !r.is_empty() {
            match r.key()? {
                (1, w) => self.kind = r.varint_field(w)? as i32,
                (3, w) => self.help = r.varint_field(w)? as u32,
                (4, w) => self.unit = r.varint_field(w)? as u32,
                (tag, w) => r.skip(w, tag, CTX_IN_SERIES)?,
            }
        }
        Ok(())
    }

    pub(super) fn len(&self) -> usize {
        let kind = i64::from(self.kind) as u64;
        let field = |v: u64| if v != 0 { 1 + varint_len(v) } else { 0 };
        field(kind) + field(u64::from(self.help)) + field(u64::from(self.unit))
    }

    pub(super) fn put(&self, out: &mut Vec<u8>, key: u8) {
        out.push(key);
        put_varint(out, self.len() as u64);
        put_uvarint(out, &[0x08], i64::from(self.kind) as u64);
        put_uvarint(out, &[0x18], u64::from(self.help));
        put_uvarint(out, &[0x20], u64::from(self.unit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_as_prost_reads_them() {
        let read = |b: &[u8]| Reader::new(b).varint();
        assert_eq!(read(&[0x00]), Ok(0));
        assert_eq!(read(&[0x80, 0x00]), Ok(0));
        assert_eq!(read(&[0x96, 0x01]), Ok(150));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(read(&max), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(read(&over), Err(Bad));
        assert_eq!(read(&[0x80; 11]), Err(Bad));
        assert_eq!(read(&[0x80]), Err(Bad));
        assert_eq!(read(&[]), Err(Bad));
        for v in [0, 1, 127, 128, 300, 1 << 35, u64::MAX] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v));
            assert_eq!(read(&out), Ok(v));
        }
    }

    #[test]
    fn zigzag() {
        for v in [0, 1, -1, i32::MAX, i32::MIN] {
            assert_eq!(unzigzag32(zigzag32(v)), v);
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag64(zigzag64(v)), v);
        }
    }

    #[test]
    fn groups_skipped_within_the_recursion_limit() {
        // field 7 group { field 1 varint } end group 7
        let group = [0x3b, 0x08, 0x01, 0x3c];
        let mut r = Reader::new(&group);
        let (tag, w) = r.key().unwrap();
        assert_eq!((tag, w), (7, SGROUP));
        assert!(r.skip(w, tag, 2).is_ok() && r.is_empty());
        // The varint inside needs a budget of its own.
        let mut r = Reader::new(&group[1..]);
        assert_eq!(r.skip(SGROUP, 7, 1), Err(Bad));
        // The wrong end.
        let mut r = Reader::new(&[0x08, 0x01, 0x44]);
        assert_eq!(r.skip(SGROUP, 7, 5), Err(Bad));
        assert_eq!(Reader::new(&[0x3b, 0x3c]).skip_flat(SGROUP, 7, 5), Err(Bad));
    }
}
