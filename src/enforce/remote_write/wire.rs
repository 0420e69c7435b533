//! The request's headers and compression: which message the `Content-Type` names, the
//! `Content-Encoding`, and Snappy's block format (never the framed one).

use super::{Schema, WriteError};

/// The media type of both versions.
const MEDIA_TYPE: &str = "application/x-protobuf";
const PROTO_V1: &str = "prometheus.WriteRequest";
const PROTO_V2: &str = "io.prometheus.write.v2.Request";

/// Snappy's framed format starts with this stream identifier chunk; remote write forbids it.
pub const FRAMED_MAGIC: &[u8] = b"\xff\x06\x00\x00sNaPpY";

/// Snappy's block format expands at most 64 bytes out of a 3-byte copy element: a length
/// prefix that claims more than this many times the body lies.
const MAX_EXPANSION: usize = 22;

impl Schema {
    /// The message the `Content-Type` header names, as the Remote-Write 1.0 and 2.0 specs
    /// define it: `application/x-protobuf` alone or with `proto=prometheus.WriteRequest` is
    /// 1.0, with `proto=io.prometheus.write.v2.Request` 2.0. The media type and parameter
    /// names are case-insensitive (RFC 9110), and so is the `proto` value here (the two names
    /// cannot be confused, and the filter forwards [`Schema::content_type`]); whitespace
    /// around `;` and `=` and a quoted value are accepted, other parameters ignored.
    /// A missing header, another media type, another `proto` or two different ones: 415.
    pub fn from_content_type(header: Option<&str>) -> Result<Schema, WriteError> {
        let Some(header) = header else {
            return Err(WriteError::unsupported_media_type(format!(
                "remote write needs a Content-Type header: {MEDIA_TYPE} (Remote-Write 1.0) or \
                 {MEDIA_TYPE};proto={PROTO_V2} (2.0)"
            )));
        };
        let mut parts = header.split(';');
        let media = parts.next().unwrap_or_default().trim();
        if !media.eq_ignore_ascii_case(MEDIA_TYPE) {
            return Err(WriteError::unsupported_media_type(format!(
                "unsupported Content-Type \"{}\": remote write takes {MEDIA_TYPE}, with \
                 proto={PROTO_V1} or proto={PROTO_V2}",
                shorten(header)
            )));
        }
        let mut schema = None;
        for parameter in parts.map(str::trim).filter(|p| !p.is_empty()) {
            let Some((name, value)) = parameter.split_once('=') else {
                return Err(WriteError::unsupported_media_type(format!(
                    "Content-Type \"{}\": parameter \"{}\" is not name=value",
                    shorten(header),
                    shorten(parameter)
                )));
            };
            if !name.trim().eq_ignore_ascii_case("proto") {
                continue;
            }
            let value = unquote(value.trim());
            let named = if value.eq_ignore_ascii_case(PROTO_V1) {
                Schema::V1
            } else if value.eq_ignore_ascii_case(PROTO_V2) {
                Schema::V2
            } else {
                return Err(WriteError::unsupported_media_type(format!(
                    "unsupported remote write message proto=\"{}\": this endpoint takes \
                     proto={PROTO_V1} (Remote-Write 1.0) or proto={PROTO_V2} (2.0)",
                    shorten(&value)
                )));
            };
            if schema.is_some_and(|s| s != named) {
                return Err(WriteError::unsupported_media_type(format!(
                    "Content-Type \"{}\" names two different messages",
                    shorten(header)
                )));
            }
            schema = Some(named);
        }
        Ok(schema.unwrap_or(Schema::V1))
    }

    /// The canonical `Content-Type` of this message, to forward upstream.
    pub fn content_type(self) -> &'static str {
        match self {
            Schema::V1 => "application/x-protobuf",
            Schema::V2 => "application/x-protobuf;proto=io.prometheus.write.v2.Request",
        }
    }

    /// The message's fully qualified protobuf name.
    pub fn proto(self) -> &'static str {
        match self {
            Schema::V1 => PROTO_V1,
            Schema::V2 => PROTO_V2,
        }
    }

    /// The `X-Prometheus-Remote-Write-Version` senders send with it.
    pub fn version_header(self) -> &'static str {
        match self {
            Schema::V1 => "0.1.0",
            Schema::V2 => "2.0.0",
        }
    }
}

/// A quoted-string's content (RFC 9110 5.6.4), or the token as it is.
fn unquote(value: &str) -> String {
    let Some(inner) = value.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return value.to_string();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// A header value cut for an error message.
fn shorten(s: &str) -> String {
    super::stamp::truncate(s, 120)
}

/// Both specs require `Content-Encoding: snappy` (case-insensitive here); anything else,
/// including no header, is 415.
pub fn check_content_encoding(header: Option<&str>) -> Result<(), WriteError> {
    match header.map(str::trim) {
        Some(e) if e.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(e) => Err(WriteError::unsupported_media_type(format!(
            "unsupported Content-Encoding \"{}\": remote write bodies are snappy-compressed \
             (Content-Encoding: snappy, block format)",
            shorten(e)
        ))),
        None => Err(WriteError::unsupported_media_type(
            "remote write needs Content-Encoding: snappy (a snappy block-compressed body)",
        )),
    }
}

/// Decompresses a Snappy block-format body. The length prefix is checked against
/// `max_decoded_bytes` (413) and against what the body can expand to (400) before the output
/// is allocated; the framed format, an empty body and corrupt input are refused (400).
pub fn decompress(body: &[u8], max_decoded_bytes: usize) -> Result<Vec<u8>, WriteError> {
    let claimed = decompressed_len(body, max_decoded_bytes)?;
    let mut out = vec![0; claimed];
    let n = decompress_to(body, &mut out)?;
    out.truncate(n);
    Ok(out)
}

/// [`decompress`] into `buf`, which is grown as needed (never shrunk, so that a buffer used
/// again is not zeroed again); the message is the slice returned.
pub fn decompress_into<'b>(
    body: &[u8],
    max_decoded_bytes: usize,
    buf: &'b mut Vec<u8>,
) -> Result<&'b [u8], WriteError> {
    let claimed = decompressed_len(body, max_decoded_bytes)?;
    if buf.len() < claimed {
        buf.resize(claimed, 0);
    }
    let out = buf.get_mut(..claimed).unwrap_or_default();
    let n = decompress_to(body, out)?;
    Ok(out.get(..n).unwrap_or_default())
}

/// The checks of [`decompress`] before anything is allocated: the length it claims.
fn decompressed_len(body: &[u8], max_decoded_bytes: usize) -> Result<usize, WriteError> {
    if body.is_empty() {
        return Err(WriteError::malformed(
            "empty body: a remote write request is a snappy-compressed protobuf message",
        ));
    }
    if body.starts_with(FRAMED_MAGIC) {
        return Err(WriteError::malformed(
            "the body is in snappy's framed (stream) format: remote write requires the block \
             format (snap::raw / snappy.Encode, not a stream writer)",
        ));
    }
    let claimed = snap::raw::decompress_len(body).map_err(|_| {
        WriteError::malformed(
            "the body is not snappy block-compressed (its length prefix is invalid)",
        )
    })?;
    if claimed > max_decoded_bytes {
        return Err(WriteError::too_large(format!(
            "the request decompresses to {claimed} bytes, more than the {max_decoded_bytes} \
             this endpoint accepts: send smaller batches (queue_config.max_samples_per_send)"
        )));
    }
    if claimed > body.len().saturating_mul(MAX_EXPANSION) {
        return Err(WriteError::malformed(format!(
            "corrupt snappy body: its header claims {claimed} bytes, more than {} compressed \
             bytes can hold",
            body.len()
        )));
    }
    Ok(claimed)
}

fn decompress_to(body: &[u8], out: &mut [u8]) -> Result<usize, WriteError> {
    snap::raw::Decoder::new()
        .decompress(body, out)
        .map_err(|_| WriteError::malformed("corrupt snappy body (snappy block format expected)"))
}

/// Compresses an encoded message in Snappy's block format.
pub fn compress(message: &[u8]) -> Result<Vec<u8>, WriteError> {
    snap::raw::Encoder::new()
        .compress_vec(message)
        .map_err(|_| too_large_to_compress())
}

/// [`compress`] with `encoder`'s tables and `buf` reused (`buf` grown as needed, never shrunk):
/// the same bytes, in a `Vec` of their size.
pub fn compress_with(
    message: &[u8],
    encoder: &mut snap::raw::Encoder,
    buf: &mut Vec<u8>,
) -> Result<Vec<u8>, WriteError> {
    let max = snap::raw::max_compress_len(message.len());
    if max == 0 {
        return Err(too_large_to_compress());
    }
    if buf.len() < max {
        buf.resize(max, 0);
    }
    let out = buf.get_mut(..max).unwrap_or_default();
    let n = encoder
        .compress(message, out)
        .map_err(|_| too_large_to_compress())?;
    Ok(out.get(..n).unwrap_or_default().to_vec())
}

fn too_large_to_compress() -> WriteError {
    WriteError::too_large("the rewritten request is too large to compress")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types() {
        let v1 = Ok(Schema::V1);
        let v2 = Ok(Schema::V2);
        let table: &[(Option<&str>, Result<Schema, u32>)] = &[
            (Some("application/x-protobuf"), Ok(Schema::V1)),
            (Some("application/x-protobuf;proto=prometheus.WriteRequest"), Ok(Schema::V1)),
            (Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"), Ok(Schema::V2)),
            (Some("Application/X-Protobuf; Proto=io.prometheus.write.v2.Request"), Ok(Schema::V2)),
            (Some("  application/x-protobuf ;  proto = prometheus.WriteRequest ; "), Ok(Schema::V1)),
            (Some("application/x-protobuf;proto=\"io.prometheus.write.v2.Request\""), Ok(Schema::V2)),
            (Some("application/x-protobuf;charset=utf-8"), Ok(Schema::V1)),
            (Some("application/x-protobuf;charset=utf-8;proto=io.prometheus.write.v2.Request"), Ok(Schema::V2)),
            (Some("application/x-protobuf;proto=IO.PROMETHEUS.WRITE.V2.REQUEST"), Ok(Schema::V2)),
            (Some("application/x-protobuf;;proto=io.prometheus.write.v2.Request"), Ok(Schema::V2)),
            (None, Err(415)),
            (Some(""), Err(415)),
            (Some("application/json"), Err(415)),
            (Some("application/x-www-form-urlencoded"), Err(415)),
            (Some("application/protobuf"), Err(415)),
            (Some("application/x-protobuf-foo"), Err(415)),
            (Some("application/x-protobuf;proto=prometheus.ReadRequest"), Err(415)),
            (Some("application/x-protobuf;proto=io.prometheus.write.v3.Request"), Err(415)),
            (Some("application/x-protobuf;proto="), Err(415)),
            (Some("application/x-protobuf;proto"), Err(415)),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest;proto=io.prometheus.write.v2.Request"),
                Err(415),
            ),
            (
                Some("application/x-protobuf;proto=prometheus.WriteRequest;proto=prometheus.WriteRequest"),
                Ok(Schema::V1),
            ),
        ];
        for (header, want) in table {
            let got = Schema::from_content_type(*header).map_err(|e| e.status());
            assert_eq!(&got, want, "{header:?}");
        }
        assert_eq!(
            Schema::from_content_type(Some(Schema::V1.content_type())),
            v1
        );
        assert_eq!(
            Schema::from_content_type(Some(Schema::V2.content_type())),
            v2
        );
        let e =
            Schema::from_content_type(Some("application/x-protobuf;proto=foo.Bar")).unwrap_err();
        assert!(
            e.message().contains("foo.Bar")
                && e.message().contains("io.prometheus.write.v2.Request"),
            "{e}"
        );
        let e = Schema::from_content_type(None).unwrap_err();
        assert!(e.message().contains("Content-Type"), "{e}");
    }

    #[test]
    fn content_encodings() {
        assert!(check_content_encoding(Some("snappy")).is_ok());
        assert!(check_content_encoding(Some(" Snappy ")).is_ok());
        for bad in [
            None,
            Some(""),
            Some("gzip"),
            Some("snappy, gzip"),
            Some("identity"),
        ] {
            assert_eq!(
                check_content_encoding(bad).unwrap_err().status(),
                415,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn snappy_round_trip() {
        let data: Vec<u8> = (0..10_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let c = compress(&data).unwrap();
        assert_eq!(decompress(&c, data.len()).unwrap(), data);
        // One byte short of the limit: too large.
        assert_eq!(decompress(&c, data.len() - 1).unwrap_err().status(), 413);
    }

    #[test]
    fn lying_length_prefix_refused_before_allocating() {
        // Varint 1 GiB, then a little literal: decompression bomb.
        let bomb = [0x80, 0x80, 0x80, 0x80, 0x04, 0x00, b'x'];
        assert_eq!(snap::raw::decompress_len(&bomb).unwrap(), 1 << 30);
        let e = decompress(&bomb, 16 << 20).unwrap_err();
        assert_eq!(e.status(), 413, "{e}");
        assert!(e.message().contains("1073741824"), "{e}");
        // Under a (silly) 2 GiB limit the claim is still more than 7 bytes can expand to: no
        // 1 GiB buffer either.
        let e = decompress(&bomb, 2 << 30).unwrap_err();
        assert_eq!(e.status(), 400, "{e}");
        // A claim the body could hold but does not: corrupt.
        let short = [0x20, 0x00, b'x'];
        assert_eq!(decompress(&short, 1 << 20).unwrap_err().status(), 400);
    }

    #[test]
    fn framed_snappy_refused() {
        let mut framed = Vec::new();
        {
            use std::io::Write;
            let mut w = snap::write::FrameEncoder::new(&mut framed);
            w.write_all(b"\x0a\x00").unwrap();
        }
        assert!(framed.starts_with(FRAMED_MAGIC));
        let e = decompress(&framed, 1 << 20).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.message().contains("framed"), "{e}");
    }

    #[test]
    fn garbage_and_empty_refused() {
        assert_eq!(decompress(b"", 1 << 20).unwrap_err().status(), 400);
        assert_eq!(
            decompress(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", 1 << 20)
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            decompress(b"{\"json\": true}", 1 << 20)
                .unwrap_err()
                .status(),
            400
        );
    }
}
