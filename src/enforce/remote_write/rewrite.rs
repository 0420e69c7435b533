//! [`rewrite`]: [`decode`](super::decode), [`enforce`](super::enforce) and
//! [`encode`](super::encode) in one pass over the decompressed body, without building the
//! messages: what the filter runs on every write.
//!
//! The body is read in place ([`super::proto`]): labels are slices of it, checked to be
//! UTF-8 once; samples, exemplars, histograms and metadata are read into plain values and
//! written again in prost's encoding. Each series is read whole (so that every check prost
//! and [`super::limits`] make is made), stamped as [`super::stamp`] stamps it, and written at
//! once into the output; the parts of it that are in their canonical encoding already (a
//! Prometheus series' labels and samples) are copied as they are, adjacent ones in one copy.
//! The pre-scan's counts (series, estimated memory) are kept as the body is read, and the
//! pass stops as soon as they are over the limits: the output stays within a few times the
//! body.
//!
//! The output is exactly the bytes `encode(enforce(decode(body)))` gives, and a body that
//! path refuses is refused here: when this pass finds a body wrong it runs that path to say
//! why, so that a refusal's status and message are the reference path's own (a refused body
//! costs what it cost before, an accepted one a fifth of it).
//!
//! Why the filter's own code and not prost's decode and encode alone: measured on realistic
//! batches (2,000 series of ~11 labels, `bench/stages`), prost's owned messages cost ~4.5 ms a
//! batch natively, a third of it in the allocator (two `String`s per label), which held one
//! Envoy worker to ~350k samples/s; this pass takes ~0.9 ms (2.3 M samples/s). prost stays the
//! reference the equivalence tests hold this pass to.

use super::proto::{
    self, put_bytes, put_refs, put_varint, varint_len, Bad, Reader, Res, Scratch, Tally,
};
use super::proto::{CTX_IN_SERIES, CTX_SERIES, CTX_TOP, LEN};
use super::{
    v1, v2, wire, Enforced, Limits, MetadataPolicy, Policy, Schema, Stamp, Tenancy, WriteError,
};
use std::cmp::Ordering;

/// What [`rewrite`] made of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// The body to forward (snappy block format), empty when [`Rewritten::empty`].
    pub body: Vec<u8>,
    pub enforced: Enforced,
    /// No series and no metadata are left: there is nothing to forward (e.g. a metadata-only
    /// request after [`MetadataPolicy::Drop`]).
    pub empty: bool,
}

/// Decodes `body` within `limits`, applies `policy` and encodes the result: the same bytes,
/// the same [`Enforced`] and the same refusals as [`super::decode`], [`super::enforce`],
/// [`super::Decoded::is_empty`] and [`super::encode`] in turn, several times faster.
pub fn rewrite(
    body: &[u8],
    schema: Schema,
    limits: &Limits,
    policy: &Policy,
) -> Result<Rewritten, WriteError> {
    let reused = BUFFERS.try_with(|cell| {
        let mut b = cell.try_borrow_mut().ok()?;
        let r = rewrite_with(body, schema, limits, policy, &mut b);
        b.trim();
        Some(r)
    });
    match reused {
        Ok(Some(r)) => r,
        // Re-entered, or the thread is going away: buffers of its own.
        _ => rewrite_with(body, schema, limits, policy, &mut Buffers::default()),
    }
}

/// The large buffers of a rewrite, kept for the next one (each worker is one thread): the
/// decompressed body, the rewritten message and snappy's output, hundreds of KiB each for a
/// Prometheus batch, are then neither allocated nor zeroed again.
struct Buffers {
    raw: Vec<u8>,
    message: Vec<u8>,
    snappy: Vec<u8>,
    encoder: snap::raw::Encoder,
}

/// Buffers larger than this are let go after the request.
const KEEP_BYTES: usize = 4 << 20;

impl Default for Buffers {
    fn default() -> Self {
        Buffers {
            raw: Vec::new(),
            message: Vec::new(),
            snappy: Vec::new(),
            encoder: snap::raw::Encoder::new(),
        }
    }
}

impl Buffers {
    fn trim(&mut self) {
        for b in [&mut self.raw, &mut self.message, &mut self.snappy] {
            if b.capacity() > KEEP_BYTES {
                *b = Vec::new();
            }
        }
    }
}

thread_local! {
    static BUFFERS: std::cell::RefCell<Buffers> = std::cell::RefCell::new(Buffers::default());
}

fn rewrite_with(
    body: &[u8],
    schema: Schema,
    limits: &Limits,
    policy: &Policy,
    b: &mut Buffers,
) -> Result<Rewritten, WriteError> {
    let raw = wire::decompress_into(body, limits.max_decoded_bytes, &mut b.raw)?;
    let tenant = match &policy.tenancy {
        // A misconfiguration (500), but only once the body decodes.
        Tenancy::Stamp(s) if s.label.is_empty() || s.value.is_empty() => {
            return Err(refusal(raw, schema, limits, policy))
        }
        Tenancy::Stamp(s) => Some(Tenant::new(s)),
        Tenancy::Unrestricted => None,
    };
    let out = &mut b.message;
    out.clear();
    // The output is the input, give or take the tenant label on each series (about 1 in
    // 20 bytes of a series).
    out.reserve(raw.len().saturating_add(raw.len() / 8).saturating_add(64));
    let drop_metadata = policy.metadata == MetadataPolicy::Drop;
    let done = match schema {
        Schema::V1 => v1(raw, tenant.as_ref(), drop_metadata, limits, out),
        Schema::V2 => v2(raw, tenant.as_ref(), limits, out),
    };
    let Ok((enforced, empty)) = done else {
        return Err(refusal(raw, schema, limits, policy));
    };
    let body = if empty {
        Vec::new()
    } else {
        wire::compress_with(out, &mut b.encoder, &mut b.snappy)?
    };
    Ok(Rewritten {
        body,
        enforced,
        empty,
    })
}

/// Why the reference path refuses `raw` (the one pass found it wrong).
#[cold]
fn refusal(raw: &[u8], schema: Schema, limits: &Limits, policy: &Policy) -> WriteError {
    let reference =
        super::decode_raw(raw, schema, limits).and_then(|mut d| super::enforce(&mut d, policy));
    match reference {
        Err(e) => e,
        // Not expected: the two are tested to agree.
        Ok(_) => WriteError::malformed(format!(
            "the body is not a valid {} protobuf message",
            schema.proto()
        )),
    }
}

/// The stamp as bytes.
struct Tenant<'p> {
    label: &'p [u8],
    value: &'p [u8],
    reject: bool,
    strip: Vec<&'p [u8]>,
    /// The tenant label as a 1.0 series' `labels` field.
    field: Vec<u8>,
}

impl<'p> Tenant<'p> {
    fn new(s: &'p Stamp) -> Self {
        Tenant {
            label: s.label.as_bytes(),
            value: s.value.as_bytes(),
            reject: s.on_conflict == super::OnConflict::Reject,
            strip: s
                .extra_labels_to_strip
                .iter()
                .map(|l| l.as_bytes())
                .collect(),
            field: {
                let mut field = Vec::new();
                proto::put_label(&mut field, s.label.as_bytes(), s.value.as_bytes());
                field
            },
        }
    }

    /// Removed from every series (the tenant label is added again).
    #[inline(always)]
    fn strips(&self, name: &[u8]) -> bool {
        eq(name, self.label) || self.strip.iter().any(|s| eq(s, name))
    }
}

/// Byte strings in order, without a call for short ones (label names mostly differ early).
#[inline(always)]
fn cmp(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

#[inline(always)]
fn eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.first() == b.first() && a == b
}

/// [`super::stamp`]'s `stamp_labels` on borrowed labels: with
/// [`OnConflict::Reject`](super::OnConflict::Reject) a claimed value refuses the series; the
/// tenant's and the stripped labels go, the rest is sorted by name if it is not, and two
/// labels of one name refuse it. Returns where the tenant label goes and whether another
/// value was overwritten. One pass when nothing is stripped and the labels are sorted.
#[inline(always)]
fn stamp_labels<'a, L: Copy>(
    labels: &mut Vec<L>,
    t: &Tenant<'_>,
    name: impl Fn(&L) -> &'a [u8],
    value: impl Fn(&L) -> &'a [u8],
    is_tenant: impl Fn(&L) -> bool,
    strips: impl Fn(&L) -> bool,
) -> Res<(usize, bool)> {
    let (mut claimed, mut stripped, mut sorted) = (false, false, true);
    // Labels kept, and how many of them sort before the tenant label.
    let mut at = 0;
    let mut previous: Option<&[u8]> = None;
    for l in labels.iter() {
        if strips(l) {
            stripped = true;
            if is_tenant(l) {
                let v = value(l);
                claimed |= !v.is_empty() && !eq(v, t.value);
            }
            continue;
        }
        let n = name(l);
        if let Some(p) = previous {
            match cmp(p, n) {
                Ordering::Less => {}
                // Two of one name stay neighbours once sorted.
                Ordering::Equal => return Err(Bad),
                Ordering::Greater => sorted = false,
            }
        }
        previous = Some(n);
        at += usize::from(cmp(n, t.label) == Ordering::Less);
    }
    if claimed && t.reject {
        return Err(Bad);
    }
    if stripped {
        labels.retain(|l| !strips(l));
    }
    if !sorted {
        labels.sort_unstable_by(|a, b| cmp(name(a), name(b)));
        if labels
            .windows(2)
            .any(|w| matches!(w, [a, b] if eq(name(a), name(b))))
        {
            return Err(Bad);
        }
    }
    Ok((at, claimed))
}

/// Where a piece of a series' output comes from: a range of the series' own bytes (written
/// canonically already) or of its buffer.
#[derive(Debug, Clone, Copy)]
enum Piece {
    Raw(usize, usize),
    Buf(usize, usize),
}

/// Copies raw ranges, a run of adjacent ones at once.
struct Copier<'r> {
    raw: &'r [u8],
    run: (usize, usize),
}

impl<'r> Copier<'r> {
    fn new(raw: &'r [u8]) -> Self {
        Copier { raw, run: (0, 0) }
    }

    #[inline(always)]
    fn raw(&mut self, out: &mut Vec<u8>, start: usize, end: usize) {
        if self.run.1 == start && self.run.0 < start {
            self.run.1 = end;
        } else {
            self.flush(out);
            self.run = (start, end);
        }
    }

    #[inline(always)]
    fn flush(&mut self, out: &mut Vec<u8>) {
        if let Some(b) = self.raw.get(self.run.0..self.run.1) {
            out.extend_from_slice(b);
        }
        self.run = (0, 0);
    }

    #[inline(always)]
    fn label(&mut self, out: &mut Vec<u8>, l: &Label<'_>) {
        if l.start < l.end {
            self.raw(out, l.start, l.end);
        } else {
            self.flush(out);
            proto::put_label(out, l.name, l.value);
        }
    }

    #[inline(always)]
    fn piece(&mut self, out: &mut Vec<u8>, buf: &[u8], p: Piece) {
        match p {
            Piece::Raw(start, end) => self.raw(out, start, end),
            Piece::Buf(start, end) => {
                self.flush(out);
                if let Some(b) = buf.get(start..end) {
                    out.extend_from_slice(b);
                }
            }
        }
    }
}

impl Piece {
    fn len(self) -> usize {
        match self {
            Piece::Raw(start, end) | Piece::Buf(start, end) => end - start,
        }
    }
}

/// A 1.0 label: its strings, and where its field is in the series when that is its canonical
/// encoding (`start == end` otherwise).
#[derive(Debug, Clone, Copy)]
struct Label<'a> {
    name: &'a [u8],
    value: &'a [u8],
    start: usize,
    end: usize,
}

impl Label<'_> {
    fn len(&self) -> usize {
        if self.start < self.end {
            self.end - self.start
        } else {
            proto::label_len(self.name, self.value)
        }
    }
}

/// One series' reused buffers: its labels, and its other fields (written canonically in
/// `buf`, or found so in the series).
struct Series<'a, L> {
    labels: Vec<L>,
    buf: Vec<u8>,
    samples: Vec<Piece>,
    histograms: Vec<u8>,
    exemplars: Vec<u8>,
    scratch: Scratch<'a>,
}

impl<L> Default for Series<'_, L> {
    fn default() -> Self {
        Series {
            labels: Vec::new(),
            buf: Vec::new(),
            samples: Vec::new(),
            histograms: Vec::new(),
            exemplars: Vec::new(),
            scratch: Scratch::default(),
        }
    }
}

impl<L> Series<'_, L> {
    fn clear(&mut self) {
        self.labels.clear();
        self.buf.clear();
        self.samples.clear();
        self.histograms.clear();
        self.exemplars.clear();
    }
}

/// Remote-Write 1.0: `WriteRequest { timeseries = 1; metadata = 3; }` (2 is reserved and
/// dropped; any other field is the other message's, which the pre-scan refuses).
fn v1<'a>(
    raw: &'a [u8],
    t: Option<&Tenant<'a>>,
    drop_metadata: bool,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Res<(Enforced, bool)> {
    let mut series: Series<'a, Label<'a>> = Series::default();
    let mut done = Enforced::default();
    let mut e = Tally::new(limits);
    let (mut metadata, mut metadata_out, mut body) = (0usize, Vec::new(), Vec::new());
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, LEN) => {
                e.series()?;
                e.add::<v1::TimeSeries>(1)?;
                let overwritten = series_v1(r.bytes()?, t, limits, &mut series, &mut e, out)?;
                done.overwritten += usize::from(overwritten);
            }
            (3, LEN) => {
                metadata += 1;
                let m = r.bytes()?;
                e.add::<v1::MetricMetadata>(1)?;
                e.add_strings(m.len())?;
                let keep = (!drop_metadata).then_some(&mut metadata_out);
                proto::metadata_v1(m, 0x1a, keep, &mut body)?;
            }
            (2, w) => r.skip_flat(w, 2, CTX_TOP)?,
            _ => return Err(Bad),
        }
    }
    done.series = e.e.series;
    if drop_metadata {
        done.metadata_dropped = metadata;
    } else {
        out.extend_from_slice(&metadata_out);
    }
    let empty = done.series == 0 && (drop_metadata || metadata == 0);
    Ok((done, empty))
}

/// What stamping a 1.0 series found while reading its labels (the checks of
/// [`stamp_labels`], made label by label as they are read).
#[derive(Default)]
struct Stamping<'a> {
    /// Labels read, the stripped ones included.
    count: usize,
    /// Another value of the tenant label.
    claimed: bool,
    /// The kept labels are not sorted by name.
    unsorted: bool,
    /// Kept labels sorting before the tenant label: where it goes.
    at: usize,
    previous: Option<&'a [u8]>,
}

impl<'a> Stamping<'a> {
    /// Whether `name` stays, once checked against the labels before it.
    #[inline(always)]
    fn keep(&mut self, t: &Tenant<'_>, name: &'a [u8], value: &[u8]) -> Res<bool> {
        if t.strips(name) {
            if eq(name, t.label) && !value.is_empty() && !eq(value, t.value) {
                if t.reject {
                    return Err(Bad);
                }
                self.claimed = true;
            }
            return Ok(false);
        }
        if let Some(p) = self.previous {
            match cmp(p, name) {
                Ordering::Less => {}
                // Two of one name stay neighbours once sorted.
                Ordering::Equal => return Err(Bad),
                Ordering::Greater => self.unsorted = true,
            }
        }
        self.previous = Some(name);
        self.at += usize::from(cmp(name, t.label) == Ordering::Less);
        Ok(true)
    }
}

/// A 1.0 `TimeSeries { labels = 1; samples = 2; exemplars = 3; histograms = 4; }`, read,
/// checked, stamped and written to `out`; whether another tenant's value was overwritten.
#[inline(always)]
fn series_v1<'a>(
    raw: &'a [u8],
    t: Option<&Tenant<'a>>,
    limits: &Limits,
    s: &mut Series<'a, Label<'a>>,
    e: &mut Tally<'_>,
    out: &mut Vec<u8>,
) -> Res<bool> {
    s.clear();
    let mut label_bytes = 0;
    // The series' length as it goes out, but for the tenant label.
    let mut len = 0;
    let mut stamping = Stamping::default();
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        let start = raw.len() - r.remaining();
        let field = match r.short_field_1() {
            Some(l) => (1, LEN, Some(l)),
            None => {
                let (tag, wire) = r.key()?;
                (tag, wire, None)
            }
        };
        match field {
            (1, LEN, l) => {
                let l = match l {
                    Some(l) => l,
                    None => r.bytes()?,
                };
                label_bytes += l.len();
                stamping.count += 1;
                if stamping.count > e.labels {
                    return Err(Bad);
                }
                let (name, value, canonical) = proto::label(l, CTX_IN_SERIES)?;
                if name.len().saturating_add(value.len()) > limits.max_label_bytes {
                    return Err(Bad);
                }
                if let Some(t) = t {
                    if !stamping.keep(t, name, value)? {
                        continue;
                    }
                }
                // Copied as it is if the field is canonical too (a one-byte length).
                let end = raw.len() - r.remaining();
                let end = if canonical && end - start == l.len() + 2 {
                    end
                } else {
                    start
                };
                let label = Label {
                    name,
                    value,
                    start,
                    end,
                };
                len += label.len();
                s.labels.push(label);
            }
            (2, LEN, _) => {
                let b = r.bytes()?;
                let at = s.buf.len();
                let end = raw.len() - r.remaining();
                let canonical = proto::sample_v1(b, 0x12, &mut s.buf)?;
                let piece = if canonical && end - start == b.len() + 2 {
                    Piece::Raw(start, end)
                } else if canonical {
                    // The sample as it is, the field's length written anew.
                    s.buf.push(0x12);
                    put_varint(&mut s.buf, b.len() as u64);
                    s.buf.extend_from_slice(b);
                    Piece::Buf(at, s.buf.len())
                } else {
                    Piece::Buf(at, s.buf.len())
                };
                len += piece.len();
                s.samples.push(piece);
                if s.samples.len() > e.samples {
                    return Err(Bad);
                }
            }
            (3, LEN, _) => {
                e.add::<v1::Exemplar>(1)?;
                proto::exemplar_v1(r.bytes()?, 0x1a, &mut s.exemplars, &mut s.scratch, e)?
            }
            (4, LEN, _) => {
                e.add::<v1::Histogram>(1)?;
                proto::histogram(
                    r.bytes()?,
                    false,
                    0x22,
                    &mut s.histograms,
                    &mut s.scratch,
                    e,
                )?
            }
            (1..=4, _, _) => return Err(Bad),
            (tag, w, _) => r.skip_flat(w, tag, CTX_SERIES)?,
        }
    }
    let count = if t.is_some() {
        stamping.count
    } else {
        s.labels.len()
    };
    if count > limits.max_labels_per_series {
        return Err(Bad);
    }
    e.add::<v1::Label>(count)?;
    e.add_strings(label_bytes)?;
    e.add::<v1::Sample>(s.samples.len())?;
    if stamping.unsorted {
        s.labels.sort_unstable_by(|a, b| cmp(a.name, b.name));
        if s.labels
            .windows(2)
            .any(|w| matches!(w, [a, b] if eq(a.name, b.name)))
        {
            return Err(Bad);
        }
    }
    len += s.exemplars.len() + s.histograms.len();
    let tenant = t.map(|t| (stamping.at.min(s.labels.len()), t.field.as_slice()));
    if let Some((_, field)) = tenant {
        len += field.len();
    }
    out.push(0x0a);
    put_varint(out, len as u64);
    let mut copier = Copier::new(raw);
    let (before, after) = s
        .labels
        .split_at(tenant.map_or(s.labels.len(), |(at, _)| at));
    for l in before {
        copier.label(out, l);
    }
    if let Some((_, field)) = tenant {
        copier.flush(out);
        out.extend_from_slice(field);
    }
    for l in after {
        copier.label(out, l);
    }
    for &p in &s.samples {
        copier.piece(out, &s.buf, p);
    }
    copier.flush(out);
    out.extend_from_slice(&s.exemplars);
    out.extend_from_slice(&s.histograms);
    Ok(stamping.claimed)
}

/// The index of `s` in the symbols table, added at the end if it is not there yet.
fn intern<'a>(symbols: &mut Vec<&'a [u8]>, s: &'a [u8]) -> Res<u32> {
    let i = match symbols.iter().position(|x| *x == s) {
        Some(i) => i,
        None => {
            symbols.push(s);
            symbols.len() - 1
        }
    };
    u32::try_from(i).map_err(|_| Bad)
}

/// How the stamp treats a label name of the symbols table.
const PLAIN: u8 = 0;
const TENANT: u8 = 1;
const STRIPPED: u8 = 2;

/// Remote-Write 2.0: `Request { symbols = 4; timeseries = 5; }` (any other field is the
/// other message's, which the pre-scan refuses). The symbols come first in the output, and
/// refs are checked against the whole table: the series are read once the table is.
fn v2<'a>(
    raw: &'a [u8],
    t: Option<&Tenant<'a>>,
    limits: &Limits,
    out: &mut Vec<u8>,
) -> Res<(Enforced, bool)> {
    let mut symbols: Vec<&'a [u8]> = Vec::new();
    let mut timeseries: Vec<&'a [u8]> = Vec::new();
    let mut e = Tally::new(limits);
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (4, LEN) => {
                let s = r.bytes()?;
                proto::utf8(s)?;
                e.add::<String>(1)?;
                e.add_strings(s.len())?;
                symbols.push(s);
            }
            (5, LEN) => {
                e.series()?;
                e.add::<v2::TimeSeries>(1)?;
                timeseries.push(r.bytes()?);
            }
            _ => return Err(Bad),
        }
    }
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(Bad);
    }
    // Refs are checked against the table as it came, before the tenant's strings join it.
    let known = symbols.len();
    let stamp = match t {
        Some(t) if !timeseries.is_empty() => {
            if symbols.is_empty() {
                symbols.push(b"");
            }
            let pair = [
                intern(&mut symbols, t.label)?,
                intern(&mut symbols, t.value)?,
            ];
            let flags: Vec<u8> = symbols
                .iter()
                .take(known)
                .map(|&s| {
                    if s == t.label {
                        TENANT
                    } else if t.strips(s) {
                        STRIPPED
                    } else {
                        PLAIN
                    }
                })
                .collect();
            Some((t, pair, flags))
        }
        _ => None,
    };
    for s in &symbols {
        put_bytes(out, 0x22, s);
    }
    let mut series: Series<'a, [u32; 2]> = Series::default();
    let mut refs: Vec<u32> = Vec::new();
    let mut overwritten = 0;
    for raw in &timeseries {
        let o = series_v2(
            raw,
            &symbols,
            known,
            stamp.as_ref(),
            limits,
            &mut series,
            &mut refs,
            &mut e,
            out,
        )?;
        overwritten += usize::from(o);
    }
    let done = Enforced {
        series: timeseries.len(),
        overwritten,
        metadata_dropped: 0,
    };
    Ok((done, timeseries.is_empty()))
}

type Stamp2<'t, 'a> = (&'t Tenant<'a>, [u32; 2], Vec<u8>);

/// A 2.0 `TimeSeries { labels_refs = 1; samples = 2; histograms = 3; exemplars = 4;
/// metadata = 5; created_timestamp = 6; }`, read, checked, stamped and written to `out`.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn series_v2<'a>(
    raw: &'a [u8],
    symbols: &[&'a [u8]],
    known: usize,
    stamp: Option<&Stamp2<'_, 'a>>,
    limits: &Limits,
    s: &mut Series<'a, [u32; 2]>,
    refs: &mut Vec<u32>,
    e: &mut Tally<'_>,
    out: &mut Vec<u8>,
) -> Res<bool> {
    s.clear();
    refs.clear();
    let mut metadata: Option<proto::Metadata2> = None;
    let mut created = 0i64;
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        match r.key()? {
            (1, w) => r.repeated_varint::<u32>(w, e, |v| refs.push(v as u32))?,
            (2, LEN) => {
                e.add::<v2::Sample>(1)?;
                proto::sample_v2(r.bytes()?, 0x12, &mut s.buf)?
            }
            (3, LEN) => {
                e.add::<v2::Histogram>(1)?;
                proto::histogram(r.bytes()?, true, 0x1a, &mut s.histograms, &mut s.scratch, e)?
            }
            (4, LEN) => {
                e.add::<v2::Exemplar>(1)?;
                proto::exemplar_v2(r.bytes()?, 0x22, &mut s.exemplars, &mut s.scratch, e)?
            }
            (5, LEN) => metadata.get_or_insert_default().merge(r.bytes()?)?,
            (6, w) => created = r.varint_field(w)? as i64,
            (2..=5, _) => return Err(Bad),
            (tag, w) => r.skip_flat(w, tag, CTX_SERIES)?,
        }
    }
    if !refs.len().is_multiple_of(2) || refs.iter().any(|&r| r as usize >= known) {
        return Err(Bad);
    }
    let symbol = |r: u32| symbols.get(r as usize).copied().unwrap_or_default();
    s.labels.extend(
        refs.chunks_exact(2)
            .filter_map(|c| <[u32; 2]>::try_from(c).ok()),
    );
    if s.labels.len() > limits.max_labels_per_series
        || s.labels
            .iter()
            .any(|p| symbol(p[0]).len().saturating_add(symbol(p[1]).len()) > limits.max_label_bytes)
    {
        return Err(Bad);
    }
    let (at, overwritten) = match stamp {
        Some((t, pair, flags)) => {
            let flag = |p: &[u32; 2]| flags.get(p[0] as usize).copied().unwrap_or(PLAIN);
            let (at, overwritten) = stamp_labels(
                &mut s.labels,
                t,
                |p| symbol(p[0]),
                |p| symbol(p[1]),
                |p| flag(p) == TENANT,
                |p| flag(p) != PLAIN,
            )?;
            (Some((at, *pair)), overwritten)
        }
        None => (None, false),
    };
    // The refs as they go out: the pairs, the tenant's among them.
    let (before, after) = s
        .labels
        .split_at(at.map_or(s.labels.len(), |(at, _)| at.min(s.labels.len())));
    refs.clear();
    refs.extend(before.iter().flatten());
    if let Some((_, pair)) = at {
        refs.extend(pair);
    }
    refs.extend(after.iter().flatten());
    let refs_len: usize = refs.iter().map(|&r| varint_len(u64::from(r))).sum();
    let mut len = s.buf.len() + s.histograms.len() + s.exemplars.len();
    if refs_len > 0 {
        len += 1 + varint_len(refs_len as u64) + refs_len;
    }
    if let Some(m) = &metadata {
        len += 1 + varint_len(m.len() as u64) + m.len();
    }
    if created != 0 {
        len += 1 + varint_len(created as u64);
    }
    out.push(0x2a);
    put_varint(out, len as u64);
    put_refs(out, 0x0a, refs);
    out.extend_from_slice(&s.buf);
    out.extend_from_slice(&s.histograms);
    out.extend_from_slice(&s.exemplars);
    if let Some(m) = &metadata {
        m.put(out, 0x2a);
    }
    proto::put_uvarint(out, &[0x30], created as u64);
    Ok(overwritten)
}
