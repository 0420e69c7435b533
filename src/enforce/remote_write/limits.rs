//! The limits a request must keep, checked in two passes:
//!
//! 1. [`prescan`], on the decompressed bytes before anything is decoded: a walk over the
//!    protobuf wire format that allocates nothing, counts the series and estimates the memory
//!    the decoded message will take (each message decoded is a struct of its own, and an empty
//!    series of 2 wire bytes is a 96-byte struct: 16 MiB of them would be 800 MiB). Over
//!    `max_series` or `max_memory_bytes`: 413.
//! 2. [`check_series`], on the decoded message: labels per series, bytes per label, and for
//!    2.0 the refs into the symbols table. A series over a limit is invalid data: 400, naming it.

use super::stamp::{print_labels, truncate};
use super::{v1, v2, Decoded, Schema, WriteError};
use std::mem::size_of;

/// What one request may hold. A request over a size limit gets 413, a series over a
/// per-series limit 400 (see the module documentation for why).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest decompressed body; checked against snappy's length prefix before decompressing.
    pub max_decoded_bytes: usize,
    /// Most series (`timeseries` entries) in one request.
    pub max_series: usize,
    /// Most labels on one series (before the tenant label is stamped).
    pub max_labels_per_series: usize,
    /// Longest label: name and value bytes together.
    pub max_label_bytes: usize,
    /// Largest estimated heap of the decoded message (an upper bound: structs, strings and
    /// `Vec` growth), computed before decoding.
    pub max_memory_bytes: usize,
}

impl Default for Limits {
    /// Generous for senders (Prometheus sends at most 2000 samples, well under 1 MiB, per
    /// request by default), small for a Wasm VM.
    fn default() -> Self {
        Limits {
            max_decoded_bytes: 16 << 20,
            max_series: 50_000,
            max_labels_per_series: 128,
            max_label_bytes: 8 << 10,
            max_memory_bytes: 64 << 20,
        }
    }
}

/// A malformed wire format; the decoder would refuse it too, so no detail is needed.
struct Malformed;

/// A protobuf wire-format reader over a slice; never panics.
struct Reader<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint,
    Fixed,
    Bytes(&'a [u8]),
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(Malformed)?;
            self.buf = rest;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    fn skip(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let (head, rest) = self.buf.split_at_checked(n).ok_or(Malformed)?;
        self.buf = rest;
        Ok(head)
    }

    /// The next field's number and content; `None` at the end.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, Malformed> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 {
            return Err(Malformed);
        }
        let field = match key & 7 {
            0 => {
                self.varint()?;
                Field::Varint
            }
            1 => {
                self.skip(8)?;
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                Field::Bytes(self.skip(len)?)
            }
            5 => {
                self.skip(4)?;
                Field::Fixed
            }
            // Groups (3, 4) are not in proto3, and 6, 7 are not wire types.
            _ => return Err(Malformed),
        };
        Ok(Some((number, field)))
    }
}

/// What [`prescan`] found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Estimate {
    pub series: usize,
    /// Bytes of structs and `Vec` elements (which `Vec` growth may double).
    pub elements: usize,
    /// Bytes of strings.
    pub strings: usize,
    /// A top-level field the schema does not have (the decoder would skip it and its data).
    pub foreign_field: Option<u64>,
}

impl Estimate {
    pub fn memory(&self) -> usize {
        self.elements.saturating_mul(2).saturating_add(self.strings)
    }

    /// `n` elements of `T`.
    pub(super) fn add<T>(&mut self, n: usize) {
        self.elements = self.elements.saturating_add(size_of::<T>().saturating_mul(n));
    }

    /// `n` bytes of strings.
    pub(super) fn add_strings(&mut self, n: usize) {
        self.strings = self.strings.saturating_add(n);
    }

    /// Over [`Limits::max_series`] or [`Limits::max_memory_bytes`]: [`prescan`] refuses it (413).
    pub(super) fn over(&self, limits: &Limits) -> bool {
        self.series > limits.max_series || self.memory() > limits.max_memory_bytes
    }
}

/// Varints in a packed field (each ends with a byte under 0x80).
pub(super) fn packed_varints(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b < 0x80).count()
}

/// Counts and sizes `raw` (a decompressed body) without decoding it.
fn estimate(raw: &[u8], schema: Schema) -> Result<Estimate, Malformed> {
    let mut e = Estimate::default();
    let mut r = Reader { buf: raw };
    while let Some((number, field)) = r.field()? {
        match (schema, number, field) {
            (Schema::V1, 1, Field::Bytes(series)) => {
                e.series += 1;
                e.add::<v1::TimeSeries>(1);
                v1_series(series, &mut e)?;
            }
            (Schema::V1, 3, Field::Bytes(metadata)) => {
                e.add::<v1::MetricMetadata>(1);
                e.strings = e.strings.saturating_add(metadata.len());
            }
            (Schema::V2, 4, Field::Bytes(symbol)) => {
                e.add::<String>(1);
                e.strings = e.strings.saturating_add(symbol.len());
            }
            (Schema::V2, 5, Field::Bytes(series)) => {
                e.series += 1;
                e.add::<v2::TimeSeries>(1);
                v2_series(series, &mut e)?;
            }
            // Cortex's `source`, reserved by the 1.0 spec: dropped.
            (Schema::V1, 2, _) => {}
            // The other message's fields, or a message of neither: the decoder would skip
            // them, and with them the data (a 2.0 body read as 1.0 is an empty request).
            (_, number, _) => {
                e.foreign_field.get_or_insert(number);
            }
        }
    }
    Ok(e)
}

fn v1_series(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader { buf: bytes };
    while let Some((number, field)) = r.field()? {
        let Field::Bytes(b) = field else { continue };
        match number {
            1 => {
                e.add::<v1::Label>(1);
                e.strings = e.strings.saturating_add(b.len());
            }
            2 => e.add::<v1::Sample>(1),
            3 => {
                e.add::<v1::Exemplar>(1);
                let mut r = Reader { buf: b };
                while let Some((number, field)) = r.field()? {
                    if let (1, Field::Bytes(label)) = (number, field) {
                        e.add::<v1::Label>(1);
                        e.strings = e.strings.saturating_add(label.len());
                    }
                }
            }
            4 => {
                e.add::<v1::Histogram>(1);
                histogram(b, e)?;
            }
            _ => {}
        }
    }
    Ok(())
}

fn v2_series(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader { buf: bytes };
    while let Some((number, field)) = r.field()? {
        match (number, field) {
            (1, Field::Bytes(b)) => e.add::<u32>(packed_varints(b)),
            (1, Field::Varint) => e.add::<u32>(1),
            (2, Field::Bytes(_)) => e.add::<v2::Sample>(1),
            (3, Field::Bytes(b)) => {
                e.add::<v2::Histogram>(1);
                histogram(b, e)?;
            }
            (4, Field::Bytes(b)) => {
                e.add::<v2::Exemplar>(1);
                let mut r = Reader { buf: b };
                while let Some((number, field)) = r.field()? {
                    match (number, field) {
                        (1, Field::Bytes(refs)) => e.add::<u32>(packed_varints(refs)),
                        (1, Field::Varint) => e.add::<u32>(1),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// A histogram's spans (8 bytes from 2 wire bytes) and packed deltas and counts (8 bytes
/// from 1 or 8 wire bytes).
fn histogram(bytes: &[u8], e: &mut Estimate) -> Result<(), Malformed> {
    let mut r = Reader { buf: bytes };
    while let Some((number, field)) = r.field()? {
        match (number, field) {
            (8 | 11, Field::Bytes(_)) => e.add::<v1::BucketSpan>(1),
            (9 | 12, Field::Bytes(b)) => e.add::<i64>(packed_varints(b)),
            (10 | 13 | 16, Field::Bytes(b)) => e.add::<f64>(b.len() / 8),
            (9 | 10 | 12 | 13 | 16, Field::Varint | Field::Fixed) => e.add::<i64>(1),
            _ => {}
        }
    }
    Ok(())
}

/// Pass 1: the request's size limits, on the decompressed bytes, before decoding.
pub fn prescan(raw: &[u8], schema: Schema, limits: &Limits) -> Result<Estimate, WriteError> {
    let e = estimate(raw, schema).map_err(|Malformed| {
        WriteError::malformed(format!("the body is not a valid {} protobuf message", schema.proto()))
    })?;
    if let Some(number) = e.foreign_field {
        let other = match schema {
            Schema::V1 => Schema::V2,
            Schema::V2 => Schema::V1,
        };
        return Err(WriteError::malformed(format!(
            "the body is not a {} message (it has a field {number} at the top level, which that \
             message does not have): is it a {}? The Content-Type must name the message the body holds",
            schema.proto(),
            other.proto()
        )));
    }
    if e.series > limits.max_series {
        return Err(WriteError::too_large(format!(
            "the request has {} series, more than the {} this endpoint accepts: send smaller \
             batches (queue_config.max_samples_per_send)",
            e.series, limits.max_series
        )));
    }
    if e.memory() > limits.max_memory_bytes {
        return Err(WriteError::too_large(format!(
            "the request would take about {} bytes of memory decoded, more than the {} this \
             endpoint allows: send smaller batches (queue_config.max_samples_per_send)",
            e.memory(),
            limits.max_memory_bytes
        )));
    }
    Ok(e)
}

/// Pass 2: each series' limits, and for 2.0 its refs (even in number, in the table) and
/// the symbols table (`symbols[0]` is `""`).
pub fn check_series(decoded: &Decoded, limits: &Limits) -> Result<(), WriteError> {
    match decoded {
        Decoded::V1(req) => {
            for series in &req.timeseries {
                let labels = || series.labels.iter().map(|l| (l.name.as_str(), l.value.as_str()));
                check_labels(labels, limits)?;
            }
        }
        Decoded::V2(req) => {
            if req.symbols.first().is_some_and(|s| !s.is_empty()) {
                return Err(WriteError::malformed(format!(
                    "symbols[0] is \"{}\": the Remote-Write 2.0 symbols table must start with \
                     the empty string",
                    truncate(req.symbols.first().map_or("", String::as_str), 60)
                )));
            }
            for (i, series) in req.timeseries.iter().enumerate() {
                let Some(resolved) = req.labels(series) else {
                    return Err(bad_refs(req.symbols.len(), i, series));
                };
                check_labels(|| resolved.iter().copied(), limits)?;
            }
        }
    }
    Ok(())
}

/// The error for a series whose refs are odd in number or out of the table.
pub(super) fn bad_refs(symbols: usize, i: usize, series: &v2::TimeSeries) -> WriteError {
    let refs: Vec<String> = series.labels_refs.iter().take(16).map(u32::to_string).collect();
    let more = if series.labels_refs.len() > 16 { ", …" } else { "" };
    let why = if !series.labels_refs.len().is_multiple_of(2) {
        "an odd number of refs (they are name, value pairs)".to_string()
    } else {
        format!("a ref past the end of the {symbols}-entry symbols table")
    };
    WriteError::malformed(format!("timeseries[{i}] has labels_refs [{}{more}] with {why}", refs.join(", ")))
}

fn check_labels<'a, I>(labels: impl Fn() -> I, limits: &Limits) -> Result<(), WriteError>
where
    I: Iterator<Item = (&'a str, &'a str)>,
{
    let count = labels().count();
    if count > limits.max_labels_per_series {
        return Err(WriteError::invalid(format!(
            "series {} has {count} labels, more than the {} allowed",
            print_labels(&mut labels()),
            limits.max_labels_per_series
        )));
    }
    if let Some((name, value)) = labels().find(|(n, v)| n.len().saturating_add(v.len()) > limits.max_label_bytes) {
        return Err(WriteError::invalid(format!(
            "series {}: label {} is {} bytes long (name and value), more than the {} allowed",
            print_labels(&mut labels()),
            truncate(name, 60),
            name.len() + value.len(),
            limits.max_label_bytes
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn series(n: usize) -> v1::TimeSeries {
        v1::TimeSeries {
            labels: vec![v1::Label::new("__name__", "up")],
            samples: vec![v1::Sample { value: n as f64, timestamp: 1 }],
            ..Default::default()
        }
    }

    #[test]
    fn estimate_counts_series_and_is_an_upper_bound() {
        let req = v1::WriteRequest { timeseries: (0..10).map(series).collect(), metadata: vec![] };
        let e = estimate(&req.encode_to_vec(), Schema::V1).ok().unwrap();
        assert_eq!(e.series, 10);
        let exact = 10 * (size_of::<v1::TimeSeries>() + size_of::<v1::Label>() + size_of::<v1::Sample>());
        assert!(e.memory() >= exact, "{e:?}");
    }

    #[test]
    fn empty_series_flood_is_too_large_before_decoding() {
        // 4 MiB of empty series (2 bytes each): 2 Mi structs of 96 bytes.
        let raw: Vec<u8> = [0x0a, 0x00].repeat(2 << 20);
        let limits = Limits { max_series: usize::MAX, ..Limits::default() };
        let e = prescan(&raw, Schema::V1, &limits).unwrap_err();
        assert_eq!(e.status(), 413, "{e}");
        assert!(e.message().contains("memory"), "{e}");
        let e = prescan(&raw, Schema::V1, &Limits::default()).unwrap_err();
        assert!(e.message().contains("series"), "{e}");
    }

    #[test]
    fn malformed_wire_refused() {
        for raw in [
            &[0x0a, 0x05, 0x00][..],
            &[0x0b],
            &[0x00, 0x00],
            &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ] {
            assert_eq!(prescan(raw, Schema::V1, &Limits::default()).unwrap_err().status(), 400, "{raw:?}");
        }
    }
}
