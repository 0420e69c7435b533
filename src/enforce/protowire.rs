//! A walk over the protobuf wire format that allocates nothing: the pre-scans of remote write
//! and remote read count and check a body with it before prost decodes anything.
//!
//! prost has no public reader of raw fields (its `encoding` module decodes into messages), so
//! this is the filter's own; it reads exactly what prost's decoder accepts (see the tests).

/// A wire format prost would refuse too: no detail is needed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

/// A field's wire type (proto3 has no groups).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Varint,
    Fixed64,
    Bytes,
    Fixed32,
}

/// One field: its number, wire type and, for a length-delimited field, its bytes (empty for
/// the other wire types).
pub type Field<'a> = (u64, Wire, &'a [u8]);

/// A reader over one message's bytes; never panics.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    /// A varint of at most 10 bytes whose 10th byte is 0 or 1, as prost and Go read them.
    pub fn varint(&mut self) -> Result<u64, Malformed> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().enumerate().take(10) {
            if i == 9 && b > 1 {
                return Err(Malformed);
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.buf = self.buf.get(i + 1..).ok_or(Malformed)?;
                return Ok(value);
            }
        }
        Err(Malformed)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        let (head, tail) = self.buf.split_at_checked(n).ok_or(Malformed)?;
        self.buf = tail;
        Ok(head)
    }

    /// The next field; `None` at the end of the message.
    #[allow(clippy::should_implement_trait)] // a fallible step, not an `Iterator`
    pub fn field(&mut self) -> Result<Option<Field<'a>>, Malformed> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || key > u64::from(u32::MAX) {
            return Err(Malformed);
        }
        let field = match key & 7 {
            0 => {
                self.varint()?;
                (number, Wire::Varint, &[][..])
            }
            1 => (number, Wire::Fixed64, self.take(8)?),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Malformed)?;
                (number, Wire::Bytes, self.take(len)?)
            }
            5 => (number, Wire::Fixed32, self.take(4)?),
            // Groups (3, 4) are not in proto3, and 6, 7 are not wire types.
            _ => return Err(Malformed),
        };
        Ok(Some(field))
    }
}

/// How many varints a packed repeated field holds: one ends at each byte under 0x80 (prost
/// checks the rest when it decodes).
pub fn packed_varints(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b < 0x80).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::encoding::{decode_key, decode_varint};

    fn read(b: &[u8]) -> Option<u64> {
        Reader::new(b).varint().ok()
    }

    #[test]
    fn varints_like_prost() {
        let cases: [&[u8]; 8] = [
            &[0x00],
            &[0xac, 0x02],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            // An 11-byte varint, a 10th byte over 1, a truncated one, none.
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
            ],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[0x80],
            &[],
            &[0x96, 0x01, 0x05],
        ];
        for b in cases {
            let mut slice = b;
            assert_eq!(read(b), decode_varint(&mut slice).ok(), "{b:?}");
        }
        assert_eq!(read(&[0xac, 0x02]), Some(300));
        assert_eq!(
            read(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
            Some(u64::MAX)
        );
    }

    #[test]
    fn keys_like_prost() {
        // Field 0, a key over u32, groups and wire types 6 and 7 are refused, as prost does.
        for key in [
            0x00u64,
            0x08,
            0x0b,
            0x0c,
            0x0e,
            0x0f,
            1 << 32,
            (1 << 32) | 2,
            0xffff_fff8,
        ] {
            let mut buf = Vec::new();
            prost::encoding::encode_varint(key, &mut buf);
            buf.extend_from_slice(&[0; 8]);
            let mut slice = &buf[..];
            let prost_ok = decode_key(&mut slice).is_ok_and(|(_, w)| {
                !matches!(
                    w,
                    prost::encoding::WireType::StartGroup | prost::encoding::WireType::EndGroup
                )
            });
            assert_eq!(Reader::new(&buf).field().is_ok(), prost_ok, "key {key:#x}");
        }
    }

    #[test]
    fn fields_and_their_bytes() {
        // 1: varint 150; 2: "hi"; 3: fixed64; 4: fixed32.
        let raw = [
            0x08, 0x96, 0x01, 0x12, 0x02, b'h', b'i', 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 9, 9, 9,
            9,
        ];
        let mut r = Reader::new(&raw);
        assert_eq!(r.field(), Ok(Some((1, Wire::Varint, &[][..]))));
        assert_eq!(r.field(), Ok(Some((2, Wire::Bytes, &b"hi"[..]))));
        assert_eq!(
            r.field(),
            Ok(Some((3, Wire::Fixed64, &[1, 2, 3, 4, 5, 6, 7, 8][..])))
        );
        assert_eq!(r.field(), Ok(Some((4, Wire::Fixed32, &[9, 9, 9, 9][..]))));
        assert_eq!(r.field(), Ok(None));
        // A length past the end, a short fixed64.
        assert_eq!(Reader::new(&[0x12, 0x05, 0x00]).field(), Err(Malformed));
        assert_eq!(Reader::new(&[0x19, 0x00]).field(), Err(Malformed));
        assert_eq!(packed_varints(&[0x96, 0x01, 0x05, 0x80, 0x01]), 3);
    }
}
