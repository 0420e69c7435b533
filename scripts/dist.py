#!/usr/bin/env python3
"""Release files for operators, from the release build (`make dist` runs `make build` first).

Writes into --out (default dist/):
  keystone_prom_wasm.wasm         the filter
  keystone_prom_wasm.wasm.sha256  its checksum, in `sha256sum -c` format
  oci/                            an OCI image layout holding the filter as a Wasm OCI artifact
                                  (the "OCI spec" variant Istio's WasmPlugin pulls with oci://),
                                  tagged with the crate version from Cargo.toml
  keystone-prom-wasm.oci.tar      the same layout as one tar (an `oci-archive:`)

No container daemon is needed, and the output is byte-for-byte the same for the same .wasm.
To push it to a registry, also without a daemon (VERSION is the crate version, e.g. 0.1.0):

  skopeo copy oci:dist/oci:VERSION docker://registry.example/keystone-prom-wasm:VERSION
  # or from the tar:
  skopeo copy oci-archive:dist/keystone-prom-wasm.oci.tar:VERSION docker://registry.example/keystone-prom-wasm:VERSION
  # or with oras:
  oras cp --from-oci-layout dist/oci:VERSION registry.example/keystone-prom-wasm:VERSION

then point the WasmPlugin at it: `url: oci://registry.example/keystone-prom-wasm:VERSION`.
"""
import argparse
import hashlib
import io
import json
import os
import re
import shutil
import tarfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release", "keystone_prom_wasm.wasm")
NAME = "keystone_prom_wasm.wasm"
CREATED = "1970-01-01T00:00:00Z"  # fixed, so that the config blob and the digests are reproducible


def crate_version():
    text = open(os.path.join(REPO, "Cargo.toml")).read()
    package = re.search(r"^\[package\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def blob(files, data, media_type, annotations=None):
    """Stores data as a blob of the layout and returns its OCI descriptor."""
    digest = hashlib.sha256(data).hexdigest()
    files["blobs/sha256/" + digest] = data
    desc = {"mediaType": media_type, "digest": "sha256:" + digest, "size": len(data)}
    if annotations:
        desc["annotations"] = annotations
    return desc


def dumps(obj):
    return json.dumps(obj, indent=2).encode() + b"\n"


def layout(wasm, version):
    """The files of the OCI image layout, path -> bytes, and the manifest's descriptor."""
    files = {}
    config = blob(files, dumps({"created": CREATED, "architecture": "wasm", "os": "wasip1"}),
                  "application/vnd.module.wasm.config.v1+json")
    layer = blob(files, wasm, "application/vnd.module.wasm.content.layer.v1+wasm",
                 {"org.opencontainers.image.title": "plugin.wasm"})
    manifest = blob(files, dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                                  "config": config, "layers": [layer]}),
                    "application/vnd.oci.image.manifest.v1+json",
                    {"org.opencontainers.image.ref.name": version})
    files["oci-layout"] = dumps({"imageLayoutVersion": "1.0.0"})
    files["index.json"] = dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
                                 "manifests": [manifest]})
    return files, manifest


def tar(files):
    """A deterministic tar of the layout: sorted entries, mtime 0, owner 0:0."""
    paths = set(files)
    paths |= {os.path.dirname(p) for p in files if "/" in p} | {"blobs"}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for path in sorted(paths):
            info = tarfile.TarInfo(path)
            info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
            if path in files:
                info.size, info.mode = len(files[path]), 0o644
                t.addfile(info, io.BytesIO(files[path]))
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                t.addfile(info)
    return out.getvalue()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=os.path.join(REPO, "dist"), help="output directory (default: dist)")
    out = ap.parse_args().out
    wasm = open(WASM, "rb").read()
    version = crate_version()
    files, manifest = layout(wasm, version)

    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, NAME), "wb") as f:
        f.write(wasm)
    with open(os.path.join(out, NAME + ".sha256"), "w") as f:
        f.write("%s  %s\n" % (hashlib.sha256(wasm).hexdigest(), NAME))
    oci = os.path.join(out, "oci")
    shutil.rmtree(oci, ignore_errors=True)  # no stale blobs from an earlier build
    for path, data in files.items():
        os.makedirs(os.path.dirname(os.path.join(oci, path)), exist_ok=True)
        with open(os.path.join(oci, path), "wb") as f:
            f.write(data)
    with open(os.path.join(out, "keystone-prom-wasm.oci.tar"), "wb") as f:
        f.write(tar(files))
    print("keystone-prom-wasm:%s %s -> %s" % (version, manifest["digest"], out))


if __name__ == "__main__":
    main()
