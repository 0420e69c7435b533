#!/usr/bin/env python3
"""promwrite.py URL < lines   ;  line: name{k="v",...} value [timestamp_ms]
Hand-encoded prometheus.WriteRequest protobuf in a literal-only snappy block (stdlib only)."""
import re, struct, sys, time, urllib.request, urllib.error
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F; n >>= 7
        if n: out.append(b | 0x80)
        else: out.append(b); return bytes(out)
def ld(field, payload): return varint(field << 3 | 2) + varint(len(payload)) + payload
def snappy_block(data):  # uvarint(len) + one literal (tag 63 = 4-byte length-1)
    return varint(len(data)) + (bytes([63 << 2]) + struct.pack('<I', len(data) - 1) + data if data else b'')
LINE = re.compile(r'^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(?:\{(.*?)\})?\s+(\S+)(?:\s+(-?\d+))?\s*$')
LBL = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*,?')
series, now = {}, int(time.time() * 1000)
for raw in sys.stdin.read().splitlines():
    if not raw.strip() or raw.lstrip().startswith('#'): continue
    m = LINE.match(raw)
    if not m: sys.exit('bad line: %r' % raw)
    name, lbls, val, ts = m.groups()
    labels = {'__name__': name}
    for k, v in LBL.findall(lbls or ''): labels[k] = v.replace('\\"', '"').replace('\\\\', '\\')
    series.setdefault(tuple(sorted(labels.items())), []).append((float(val), int(ts) if ts else now))
body = b''
for labels, samples in series.items():
    ts = b''.join(ld(1, ld(1, k.encode()) + ld(2, v.encode())) for k, v in labels)
    for val, t in sorted(samples, key=lambda s: s[1]):
        ts += ld(2, varint(1 << 3 | 1) + struct.pack('<d', val) + varint(2 << 3) + varint(t & (2**64 - 1)))
    body += ld(1, ts)
req = urllib.request.Request(sys.argv[1], data=snappy_block(body), method='POST', headers={
    'Content-Encoding': 'snappy', 'Content-Type': 'application/x-protobuf',
    'X-Prometheus-Remote-Write-Version': '0.1.0'})
try:
    with urllib.request.urlopen(req, timeout=10) as r:
        print('remote write: HTTP %d, %d series, %d samples' % (r.status, len(series), sum(map(len, series.values()))))
except urllib.error.HTTPError as e:
    sys.exit('remote write failed: HTTP %d %s' % (e.code, e.read().decode(errors='replace')))
