"""Prometheus remote write on the wire, stdlib only: the bodies a sender POSTs and a receiver reads.

- Protobuf encoders AND decoders for Remote-Write 1.0 (`prometheus.WriteRequest`) and 2.0
  (`io.prometheus.write.v2.Request`): series with labels, samples, exemplars, native histograms, and
  metadata (1.0: metric families beside the series; 2.0: per series, with a symbols table). Messages are
  plain dicts and lists (see `v1_request` and `v2_request`); the decoders give the same shapes back, with
  2.0's label refs resolved, so a test can compare what it sent with what reached the upstream.
- Snappy: the block format (what remote write uses), compressing with copies or literal-only, and a full
  decompressor (literals and the three copy forms, overlapping copies included: the filter's output is
  real snappy); the framed ("stream") format, which remote write does NOT accept, for refusal tests;
  bodies whose length prefix lies.
- `post`: one POST with exactly the given headers, answering (status, headers, body).

Field numbers are those of prometheus/prompb/{types,remote}.proto (1.0) and
prometheus/prompb/io/prometheus/write/v2/types.proto (2.0).
"""
import http.client
import math
import struct
import urllib.parse

CT_V1 = "application/x-protobuf"
CT_V1_PROTO = "application/x-protobuf;proto=prometheus.WriteRequest"
CT_V2 = "application/x-protobuf;proto=io.prometheus.write.v2.Request"

# MetricMetadata.MetricType (1.0) and Metadata.MetricType (2.0) have the same numbers
METRIC_TYPES = {"unknown": 0, "counter": 1, "gauge": 2, "histogram": 3, "gaugehistogram": 4, "summary": 5,
                "info": 6, "stateset": 7}
METRIC_TYPE_NAMES = {v: k for k, v in METRIC_TYPES.items()}
STALE_NAN = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]


# ================================================================================== protobuf wire format
def uvarint(n):
    if n < 0:
        raise ValueError("uvarint of a negative number")
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def int64_varint(n):
    """int64/int32 fields: two's complement, so a negative number takes 10 bytes."""
    return uvarint(n & 0xFFFFFFFFFFFFFFFF)


def zigzag(n):
    return (n << 1) ^ (n >> 63)


def unzigzag(n):
    return (n >> 1) ^ -(n & 1)


def key(field, wire):
    return uvarint(field << 3 | wire)


def f_bytes(field, payload):
    if isinstance(payload, str):
        payload = payload.encode()
    return key(field, 2) + uvarint(len(payload)) + payload


def f_uvarint(field, n):
    return key(field, 0) + uvarint(n)


def f_int64(field, n):
    return key(field, 0) + int64_varint(n)


def f_sint(field, n):
    return key(field, 0) + uvarint(zigzag(n))


def f_double(field, x):
    return key(field, 1) + struct.pack("<d", x)


def packed(field, values, enc):
    if not values:
        return b""
    return f_bytes(field, b"".join(enc(v) for v in values))


class ProtoError(ValueError):
    pass


def read_uvarint(buf, i):
    value = shift = 0
    for _ in range(10):
        if i >= len(buf):
            raise ProtoError("truncated varint")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if b < 0x80:
            return value, i
        shift += 7
    raise ProtoError("varint over 10 bytes")


def fields(buf):
    """[(field number, wire type, value)]: ints for varints, bytes for fixed64/fixed32/length-delimited."""
    out, i = [], 0
    buf = bytes(buf)
    while i < len(buf):
        k, i = read_uvarint(buf, i)
        field, wire = k >> 3, k & 7
        if field == 0:
            raise ProtoError("field number 0")
        if wire == 0:
            v, i = read_uvarint(buf, i)
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        elif wire == 2:
            n, i = read_uvarint(buf, i)
            v, i = buf[i:i + n], i + n
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        else:
            raise ProtoError("wire type %d" % wire)
        if i > len(buf):
            raise ProtoError("truncated field %d" % field)
        out.append((field, wire, v))
    return out


def as_int64(n):
    return n - (1 << 64) if n >= 1 << 63 else n


def as_double(v):
    return struct.unpack("<d", v)[0]


def repeated_varints(wire, v):
    """A repeated varint field's values, packed (wire 2) or not (wire 0)."""
    if wire == 0:
        return [v]
    out, i = [], 0
    while i < len(v):
        n, i = read_uvarint(v, i)
        out.append(n)
    return out


def repeated_doubles(wire, v):
    if wire == 1:
        return [as_double(v)]
    return [as_double(v[i:i + 8]) for i in range(0, len(v), 8)]


# ======================================================================================== shared messages
def _labels_list(labels):
    """A dict or a list of (name, value) pairs, in the given order (a dict: as inserted)."""
    return list(labels.items()) if isinstance(labels, dict) else [tuple(x) for x in labels]


def _enc_sample(s):
    """(value, timestamp ms) or (value, timestamp, start_timestamp) for 2.0."""
    out = b""
    if s[0] != 0 or math.copysign(1, s[0]) < 0 or math.isnan(s[0]):
        out += f_double(1, s[0])
    if s[1]:
        out += f_int64(2, s[1])
    if len(s) > 2 and s[2]:
        out += f_int64(3, s[2])
    return out


def _dec_sample(buf):
    value, ts, start = 0.0, 0, 0
    for f, w, v in fields(buf):
        if f == 1 and w == 1:
            value = as_double(v)
        elif f == 2 and w == 0:
            ts = as_int64(v)
        elif f == 3 and w == 0:
            start = as_int64(v)
    return (value, ts, start) if start else (value, ts)


def _enc_span(span):
    offset, length = span
    return (f_sint(1, offset) if offset else b"") + (f_uvarint(2, length) if length else b"")


def _dec_span(buf):
    offset = length = 0
    for f, w, v in fields(buf):
        if f == 1:
            offset = unzigzag(v)
        elif f == 2:
            length = v
    return (offset, length)


def _enc_histogram(h):
    """A native histogram, as a dict with the .proto's field names (1.0 and 2.0 share them; 2.0 adds
    custom_values and start_timestamp). count_int/count_float and zero_count_int/zero_count_float are
    oneofs: written when present, even if 0."""
    out = b""
    if "count_int" in h:
        out += f_uvarint(1, h["count_int"])
    if "count_float" in h:
        out += f_double(2, h["count_float"])
    if h.get("sum"):
        out += f_double(3, h["sum"])
    if h.get("schema"):
        out += f_sint(4, h["schema"])
    if h.get("zero_threshold"):
        out += f_double(5, h["zero_threshold"])
    if "zero_count_int" in h:
        out += f_uvarint(6, h["zero_count_int"])
    if "zero_count_float" in h:
        out += f_double(7, h["zero_count_float"])
    out += b"".join(f_bytes(8, _enc_span(s)) for s in h.get("negative_spans", ()))
    out += packed(9, h.get("negative_deltas", ()), lambda x: uvarint(zigzag(x)))
    out += packed(10, h.get("negative_counts", ()), lambda x: struct.pack("<d", x))
    out += b"".join(f_bytes(11, _enc_span(s)) for s in h.get("positive_spans", ()))
    out += packed(12, h.get("positive_deltas", ()), lambda x: uvarint(zigzag(x)))
    out += packed(13, h.get("positive_counts", ()), lambda x: struct.pack("<d", x))
    if h.get("reset_hint"):
        out += f_uvarint(14, h["reset_hint"])
    if h.get("timestamp"):
        out += f_int64(15, h["timestamp"])
    out += packed(16, h.get("custom_values", ()), lambda x: struct.pack("<d", x))
    if h.get("start_timestamp"):
        out += f_int64(17, h["start_timestamp"])
    return out


def _dec_histogram(buf):
    h = {}
    for f, w, v in fields(buf):
        if f == 1:
            h["count_int"] = v
        elif f == 2:
            h["count_float"] = as_double(v)
        elif f == 3:
            h["sum"] = as_double(v)
        elif f == 4:
            h["schema"] = unzigzag(v)
        elif f == 5:
            h["zero_threshold"] = as_double(v)
        elif f == 6:
            h["zero_count_int"] = v
        elif f == 7:
            h["zero_count_float"] = as_double(v)
        elif f == 8:
            h.setdefault("negative_spans", []).append(_dec_span(v))
        elif f == 9:
            h.setdefault("negative_deltas", []).extend(unzigzag(x) for x in repeated_varints(w, v))
        elif f == 10:
            h.setdefault("negative_counts", []).extend(repeated_doubles(w, v))
        elif f == 11:
            h.setdefault("positive_spans", []).append(_dec_span(v))
        elif f == 12:
            h.setdefault("positive_deltas", []).extend(unzigzag(x) for x in repeated_varints(w, v))
        elif f == 13:
            h.setdefault("positive_counts", []).extend(repeated_doubles(w, v))
        elif f == 14:
            h["reset_hint"] = v
        elif f == 15:
            h["timestamp"] = as_int64(v)
        elif f == 16:
            h.setdefault("custom_values", []).extend(repeated_doubles(w, v))
        elif f == 17:
            h["start_timestamp"] = as_int64(v)
    return h


# =================================================================================== Remote-Write 1.0
def v1_request(timeseries=(), metadata=()):
    """`prometheus.WriteRequest` bytes (not compressed).

    timeseries: [{"labels": {name: value} or [(name, value)], "samples": [(value, ts_ms)],
                  "exemplars": [{"labels": ..., "value": x, "timestamp": ms}], "histograms": [dict]}]
    metadata:   [{"type": "counter", "metric_family_name": "x", "help": "...", "unit": "..."}]
    Labels are written in the order given (a sender must sort them; tests may not)."""
    out = b""
    for ts in timeseries:
        body = b"".join(f_bytes(1, f_bytes(1, n) + f_bytes(2, v)) for n, v in _labels_list(ts.get("labels", ())))
        body += b"".join(f_bytes(2, _enc_sample(s)) for s in ts.get("samples", ()))
        for ex in ts.get("exemplars", ()):
            e = b"".join(f_bytes(1, f_bytes(1, n) + f_bytes(2, v)) for n, v in _labels_list(ex.get("labels", ())))
            e += f_double(2, ex.get("value", 0.0)) + (f_int64(3, ex["timestamp"]) if ex.get("timestamp") else b"")
            body += f_bytes(3, e)
        body += b"".join(f_bytes(4, _enc_histogram(h)) for h in ts.get("histograms", ()))
        out += f_bytes(1, body)
    for md in metadata:
        t = md.get("type", 0)
        t = METRIC_TYPES[t] if isinstance(t, str) else t
        m = (f_uvarint(1, t) if t else b"") + f_bytes(2, md.get("metric_family_name", ""))
        m += (f_bytes(4, md["help"]) if md.get("help") else b"") + (f_bytes(5, md["unit"]) if md.get("unit") else b"")
        out += f_bytes(3, m)
    return out


def _dec_label(buf):
    name = value = ""
    for f, w, v in fields(buf):
        if f == 1 and w == 2:
            name = v.decode()
        elif f == 2 and w == 2:
            value = v.decode()
    return (name, value)


def decode_v1(raw):
    """A decompressed `prometheus.WriteRequest`: {"timeseries": [{"labels": [(n, v)], "samples",
    "exemplars", "histograms"}], "metadata": [{"type": name, "metric_family_name", "help", "unit"}]}."""
    req = {"timeseries": [], "metadata": []}
    for f, w, v in fields(raw):
        if f == 1 and w == 2:
            ts = {"labels": [], "samples": [], "exemplars": [], "histograms": []}
            for g, gw, gv in fields(v):
                if g == 1:
                    ts["labels"].append(_dec_label(gv))
                elif g == 2:
                    ts["samples"].append(_dec_sample(gv))
                elif g == 3:
                    ex = {"labels": [], "value": 0.0, "timestamp": 0}
                    for h, hw, hv in fields(gv):
                        if h == 1:
                            ex["labels"].append(_dec_label(hv))
                        elif h == 2:
                            ex["value"] = as_double(hv)
                        elif h == 3:
                            ex["timestamp"] = as_int64(hv)
                    ts["exemplars"].append(ex)
                elif g == 4:
                    ts["histograms"].append(_dec_histogram(gv))
            req["timeseries"].append(ts)
        elif f == 3 and w == 2:
            md = {"type": "unknown", "metric_family_name": "", "help": "", "unit": ""}
            for g, gw, gv in fields(v):
                if g == 1:
                    md["type"] = METRIC_TYPE_NAMES.get(gv, gv)
                elif g == 2:
                    md["metric_family_name"] = gv.decode()
                elif g == 4:
                    md["help"] = gv.decode()
                elif g == 5:
                    md["unit"] = gv.decode()
            req["metadata"].append(md)
    return req


# =================================================================================== Remote-Write 2.0
class Symbols:
    """2.0's symbols table: "" first, every other string once."""

    def __init__(self):
        self.table, self.index = [""], {"": 0}

    def ref(self, s):
        if s not in self.index:
            self.index[s] = len(self.table)
            self.table.append(s)
        return self.index[s]


def v2_request(timeseries=(), symbols=None):
    """`io.prometheus.write.v2.Request` bytes (not compressed).

    timeseries: [{"labels": {name: value} or [(name, value)], "samples": [(value, ts_ms)],
                  "exemplars": [{"labels": ..., "value": x, "timestamp": ms}], "histograms": [dict],
                  "metadata": {"type": "counter", "help": "...", "unit": "..."}, "created_timestamp": ms}]
    A series may give "labels_refs" instead of "labels" (refs into `symbols`, for broken-ref tests)."""
    sym = Symbols()
    if symbols is not None:          # a table given as it is (e.g. one that does not start with "")
        sym.table = list(symbols)
        sym.index = {}
        for i, s in enumerate(sym.table):
            sym.index.setdefault(s, i)
    series = b""
    for ts in timeseries:
        if "labels_refs" in ts:
            refs = list(ts["labels_refs"])
        else:
            refs = [r for n, v in _labels_list(ts.get("labels", ())) for r in (sym.ref(n), sym.ref(v))]
        body = packed(1, refs, uvarint)
        body += b"".join(f_bytes(2, _enc_sample(s)) for s in ts.get("samples", ()))
        body += b"".join(f_bytes(3, _enc_histogram(h)) for h in ts.get("histograms", ()))
        for ex in ts.get("exemplars", ()):
            erefs = [r for n, v in _labels_list(ex.get("labels", ())) for r in (sym.ref(n), sym.ref(v))]
            e = packed(1, erefs, uvarint) + f_double(2, ex.get("value", 0.0))
            e += f_int64(3, ex["timestamp"]) if ex.get("timestamp") else b""
            body += f_bytes(4, e)
        md = ts.get("metadata")
        if md:
            t = md.get("type", 0)
            t = METRIC_TYPES[t] if isinstance(t, str) else t
            m = (f_uvarint(1, t) if t else b"")
            m += f_uvarint(3, sym.ref(md["help"])) if md.get("help") else b""
            m += f_uvarint(4, sym.ref(md["unit"])) if md.get("unit") else b""
            body += f_bytes(5, m)
        if ts.get("created_timestamp"):
            body += f_int64(6, ts["created_timestamp"])
        series += f_bytes(5, body)
    return b"".join(f_bytes(4, s) for s in sym.table) + series


def _pairs(symbols, refs, what):
    if len(refs) % 2:
        raise ProtoError("%s: odd number of label refs" % what)
    try:
        return [(symbols[refs[i]], symbols[refs[i + 1]]) for i in range(0, len(refs), 2)]
    except IndexError:
        raise ProtoError("%s: a ref outside the symbols table" % what) from None


def decode_v2(raw):
    """A decompressed `io.prometheus.write.v2.Request`: {"symbols": [...], "timeseries": [{"labels":
    [(n, v)] (refs resolved), "labels_refs", "samples", "exemplars", "histograms", "metadata": {"type",
    "help", "unit"}, "created_timestamp"}]}."""
    symbols, raw_series = [], []
    for f, w, v in fields(raw):
        if f == 4 and w == 2:
            symbols.append(v.decode())
        elif f == 5 and w == 2:
            raw_series.append(v)
    req = {"symbols": symbols, "timeseries": []}
    for n, buf in enumerate(raw_series):
        ts = {"labels_refs": [], "samples": [], "exemplars": [], "histograms": [],
              "metadata": {"type": "unknown", "help": "", "unit": ""}, "created_timestamp": 0}
        for g, gw, gv in fields(buf):
            if g == 1:
                ts["labels_refs"].extend(repeated_varints(gw, gv))
            elif g == 2:
                ts["samples"].append(_dec_sample(gv))
            elif g == 3:
                ts["histograms"].append(_dec_histogram(gv))
            elif g == 4:
                refs, ex = [], {"value": 0.0, "timestamp": 0}
                for h, hw, hv in fields(gv):
                    if h == 1:
                        refs.extend(repeated_varints(hw, hv))
                    elif h == 2:
                        ex["value"] = as_double(hv)
                    elif h == 3:
                        ex["timestamp"] = as_int64(hv)
                ex["labels"] = _pairs(symbols, refs, "timeseries[%d] exemplar" % n)
                ts["exemplars"].append(ex)
            elif g == 5:
                for h, hw, hv in fields(gv):
                    if h == 1:
                        ts["metadata"]["type"] = METRIC_TYPE_NAMES.get(hv, hv)
                    elif h == 3:
                        ts["metadata"]["help"] = symbols[hv]
                    elif h == 4:
                        ts["metadata"]["unit"] = symbols[hv]
            elif g == 6:
                ts["created_timestamp"] = as_int64(gv)
        ts["labels"] = _pairs(symbols, ts["labels_refs"], "timeseries[%d]" % n)
        req["timeseries"].append(ts)
    return req


def decode_body(body, content_type):
    """A forwarded remote-write body (snappy block) decoded by its Content-Type: ("v1"|"v2", message)."""
    raw = snappy_decompress(body)
    if "io.prometheus.write.v2.Request" in (content_type or ""):
        return "v2", decode_v2(raw)
    return "v1", decode_v1(raw)


# ============================================================================================ snappy
class SnappyError(ValueError):
    pass


def _literal(chunk):
    n = len(chunk) - 1
    if n < 60:
        return bytes([n << 2]) + chunk
    for nbytes in (1, 2, 3, 4):
        if n < 1 << (8 * nbytes):
            return bytes([(59 + nbytes) << 2]) + n.to_bytes(nbytes, "little") + chunk
    raise ValueError("literal too long")


def _copy(offset, length):
    """Copy elements for a match (split into pieces of at most 64 bytes)."""
    out = b""
    while length > 0:
        n = min(length, 64)
        if length - n and length - n < 4:   # keep every piece at least 4 long for the 1-byte form
            n = length - 4
        if 4 <= n <= 11 and offset < 2048:
            out += bytes([1 | ((n - 4) << 2) | ((offset >> 8) << 5), offset & 0xFF])
        elif offset < 65536:
            out += bytes([2 | ((n - 1) << 2)]) + struct.pack("<H", offset)
        else:
            out += bytes([3 | ((n - 1) << 2)]) + struct.pack("<I", offset)
        length -= n
    return out


def snappy_compress(data, copies=True):
    """Snappy's block format: the uvarint length, then literals and (with `copies`) copies found with a
    small hash table of 4-byte sequences; literal-only otherwise."""
    data = bytes(data)
    out = bytearray(uvarint(len(data)))
    if not copies:
        for i in range(0, len(data), 65536):
            out += _literal(data[i:i + 65536])
        return bytes(out)
    table, i, lit = {}, 0, 0
    while i + 4 <= len(data):
        seq = data[i:i + 4]
        cand = table.get(seq)
        table[seq] = i
        if cand is not None and i - cand < 1 << 32:
            n = 4
            while i + n < len(data) and data[cand + n] == data[i + n]:
                n += 1
            if lit < i:
                for j in range(lit, i, 65536):
                    out += _literal(data[j:min(i, j + 65536)])
            out += _copy(i - cand, n)
            i += n
            lit = i
        else:
            i += 1
    for j in range(lit, len(data), 65536):
        out += _literal(data[j:min(len(data), j + 65536)])
    return bytes(out)


def snappy_decompress(buf, max_len=1 << 30):
    """Snappy's block format, every element form; raises SnappyError on anything malformed."""
    buf = bytes(buf)
    try:
        n, i = read_uvarint(buf, 0)
    except ProtoError as e:
        raise SnappyError("bad length prefix: %s" % e) from None
    if n > max_len:
        raise SnappyError("length prefix %d over %d" % (n, max_len))
    out = bytearray()
    while i < len(buf):
        tag = buf[i]
        i += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                nb = ln - 59
                if i + nb > len(buf):
                    raise SnappyError("truncated literal length")
                ln = int.from_bytes(buf[i:i + nb], "little")
                i += nb
            ln += 1
            if i + ln > len(buf):
                raise SnappyError("truncated literal")
            out += buf[i:i + ln]
            i += ln
            continue
        if kind == 1:
            if i + 1 > len(buf):
                raise SnappyError("truncated copy")
            ln = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | buf[i]
            i += 1
        elif kind == 2:
            if i + 2 > len(buf):
                raise SnappyError("truncated copy")
            ln = 1 + (tag >> 2)
            off = struct.unpack("<H", buf[i:i + 2])[0]
            i += 2
        else:
            if i + 4 > len(buf):
                raise SnappyError("truncated copy")
            ln = 1 + (tag >> 2)
            off = struct.unpack("<I", buf[i:i + 4])[0]
            i += 4
        if off == 0 or off > len(out):
            raise SnappyError("copy offset %d outside the %d bytes decoded so far" % (off, len(out)))
        if len(out) + ln > n:
            raise SnappyError("output over the length prefix")
        start = len(out) - off
        if off >= ln:
            out += out[start:start + ln]
        else:                          # overlapping: byte by byte (a run)
            for k in range(ln):
                out.append(out[start + k])
        if len(out) > n:
            raise SnappyError("output over the length prefix")
    if len(out) != n:
        raise SnappyError("decoded %d bytes, the length prefix says %d" % (len(out), n))
    return bytes(out)


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_CRC32C = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked_crc(data):
    c = crc32c(data)
    return ((((c >> 15) | (c << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def snappy_framed(data, compressed=True):
    """Snappy's framing ("stream") format: the stream identifier chunk, then one chunk per 64 KiB
    (compressed chunks, or uncompressed ones), each with its masked CRC-32C. Remote write uses the block
    format; this is for "refused" tests."""
    out = bytearray(b"\xff\x06\x00\x00sNaPpY")
    for i in range(0, max(len(data), 1), 65536):
        chunk = data[i:i + 65536]
        crc = struct.pack("<I", _masked_crc(chunk))
        if compressed:
            payload, kind = crc + snappy_compress(chunk), 0x00
        else:
            payload, kind = crc + chunk, 0x01
        out += bytes([kind]) + len(payload).to_bytes(3, "little") + payload
    return bytes(out)


def snappy_unframe(buf):
    """The data of a snappy framed stream (checks the CRCs)."""
    if not buf.startswith(b"\xff\x06\x00\x00sNaPpY"):
        raise SnappyError("no stream identifier")
    out, i = bytearray(), 10
    while i < len(buf):
        kind, ln = buf[i], int.from_bytes(buf[i + 1:i + 4], "little")
        payload, i = buf[i + 4:i + 4 + ln], i + 4 + ln
        if kind in (0, 1):
            crc = struct.unpack("<I", payload[:4])[0]
            data = snappy_decompress(payload[4:]) if kind == 0 else payload[4:]
            if _masked_crc(data) != crc:
                raise SnappyError("chunk CRC mismatch")
            out += data
        elif kind <= 0x7F:
            raise SnappyError("unskippable chunk 0x%02x" % kind)
    return bytes(out)


def lying_prefix(claimed_len, payload=b"\x00"):
    """A snappy block whose length prefix claims `claimed_len` bytes (a decompression bomb's header)
    followed by one short literal."""
    return uvarint(claimed_len) + _literal(payload)


# ========================================================================================== sending
def post(url, body, headers=None, timeout=30):
    """POST `body` with exactly `headers` (plus Host and Content-Length, and Connection: close):
    (status, {lower-case name: value, repeated names joined with ", "}, body bytes)."""
    u = urllib.parse.urlsplit(url)
    conn_cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    c = conn_cls(u.hostname, u.port, timeout=timeout)
    try:
        path = u.path or "/"
        if u.query:
            path += "?" + u.query
        h = {"Connection": "close"}
        h.update(headers or {})
        c.request("POST", path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hs = {}
        for k, v in r.getheaders():
            k = k.lower()
            hs[k] = hs[k] + ", " + v if k in hs else v
        return r.status, hs, data
    finally:
        c.close()


def write_headers(version=1, auth=None, **extra):
    """The headers of a remote-write request (what Prometheus sends), plus `auth` (a dict)."""
    h = {"Content-Encoding": "snappy", "User-Agent": "kpw-e2e/1",
         "Content-Type": CT_V2 if version == 2 else CT_V1,
         "X-Prometheus-Remote-Write-Version": "2.0.0" if version == 2 else "0.1.0"}
    h.update(auth or {})
    h.update(extra)
    return h


def _self_test():
    import os
    import random
    rnd = random.Random(7)
    for n in (0, 1, 3, 59, 60, 61, 255, 256, 1000, 70000, 200000):
        for data in (os.urandom(n), bytes(n), (b"abcd" * (n // 4 + 1))[:n],
                     bytes(rnd.choice(b"ab") for _ in range(n))):
            for cp in (True, False):
                assert snappy_decompress(snappy_compress(data, cp)) == data, (n, cp)
            assert snappy_unframe(snappy_framed(data)) == data
    assert crc32c(b"123456789") == 0xE3069283
    body = v1_request([{"labels": {"__name__": "x", "a": "b"}, "samples": [(1.5, 1000), (-2.0, -5)],
                        "exemplars": [{"labels": {"trace_id": "t"}, "value": 3.0, "timestamp": 7}],
                        "histograms": [{"count_int": 3, "sum": 2.5, "schema": -1, "zero_count_int": 0,
                                        "positive_spans": [(-2, 2)], "positive_deltas": [1, -1],
                                        "timestamp": 9}]}],
                      [{"type": "counter", "metric_family_name": "x", "help": "h", "unit": "s"}])
    d = decode_v1(body)
    assert d["timeseries"][0]["labels"] == [("__name__", "x"), ("a", "b")]
    assert d["timeseries"][0]["samples"] == [(1.5, 1000), (-2.0, -5)]
    assert d["timeseries"][0]["histograms"][0]["positive_deltas"] == [1, -1]
    assert d["timeseries"][0]["histograms"][0]["schema"] == -1
    assert d["metadata"] == [{"type": "counter", "metric_family_name": "x", "help": "h", "unit": "s"}]
    body = v2_request([{"labels": {"__name__": "y", "project": "p"}, "samples": [(1.0, 5)],
                        "metadata": {"type": "gauge", "help": "hh", "unit": "u"},
                        "exemplars": [{"labels": {"trace_id": "t"}, "value": 1.0, "timestamp": 5}],
                        "created_timestamp": 3}])
    d = decode_v2(body)
    assert d["symbols"][0] == "" and d["timeseries"][0]["labels"] == [("__name__", "y"), ("project", "p")]
    assert d["timeseries"][0]["metadata"] == {"type": "gauge", "help": "hh", "unit": "u"}
    assert d["timeseries"][0]["exemplars"][0]["labels"] == [("trace_id", "t")]
    print("remote_write self-test ok")


if __name__ == "__main__":
    _self_test()
