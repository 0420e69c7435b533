"""`scripts/dist.py` (`make dist`): the checksum, the OCI image layout of the Wasm artifact Istio pulls
with oci://, and its tar, checked from the produced files only; and the output is reproducible."""
import hashlib
import json
import os
import re
import subprocess
import tarfile

import pytest

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release", "keystone_prom_wasm.wasm")
NAME = "keystone_prom_wasm.wasm"
TAR = "keystone-prom-wasm.oci.tar"


def sha256(data):
    return hashlib.sha256(data).hexdigest()


def read(path):
    with open(path, "rb") as f:
        return f.read()


def dist(out):
    subprocess.run(["python3", os.path.join(REPO, "scripts", "dist.py"), "--out", str(out)], cwd=REPO, check=True)
    return out


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    if not os.path.exists(WASM):
        subprocess.run(["make", "build"], cwd=REPO, check=True)
    return dist(tmp_path_factory.mktemp("dist"))


def layout_files(oci):
    """Every regular file of the layout, relative path -> bytes."""
    files = {}
    for root, _, names in os.walk(oci):
        for n in names:
            p = os.path.join(root, n)
            files[os.path.relpath(p, oci)] = read(p)
    return files


def test_wasm_and_checksum(out):
    wasm = read(out / NAME)
    assert wasm[:4] == b"\0asm"
    assert read(out / (NAME + ".sha256")).decode() == "%s  %s\n" % (sha256(wasm), NAME)


def test_oci_layout(out):
    oci = out / "oci"
    wasm = read(out / NAME)
    assert json.loads(read(oci / "oci-layout")) == {"imageLayoutVersion": "1.0.0"}

    # Every blob is named by the SHA-256 of its content.
    blobs = os.listdir(oci / "blobs" / "sha256")
    for name in blobs:
        assert sha256(read(oci / "blobs" / "sha256" / name)) == name

    def fetch(desc):
        algo, hexdigest = desc["digest"].split(":")
        assert algo == "sha256"
        data = read(oci / "blobs" / "sha256" / hexdigest)
        assert len(data) == desc["size"]
        return data

    index = json.loads(read(oci / "index.json"))
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    [mdesc] = index["manifests"]
    assert mdesc["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    version = re.search(r'^version = "([^"]+)"', read(os.path.join(REPO, "Cargo.toml")).decode(), re.M).group(1)
    assert mdesc["annotations"]["org.opencontainers.image.ref.name"] == version

    manifest = json.loads(fetch(mdesc))
    assert manifest["schemaVersion"] == 2
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    config = manifest["config"]
    assert config["mediaType"] == "application/vnd.module.wasm.config.v1+json"
    cfg = json.loads(fetch(config))
    assert cfg["architecture"] == "wasm" and cfg["os"] == "wasip1" and "created" in cfg

    [layer] = manifest["layers"]
    assert layer["mediaType"] == "application/vnd.module.wasm.content.layer.v1+wasm"
    assert layer["digest"] == "sha256:" + sha256(wasm)
    assert layer["size"] == len(wasm)
    assert layer["annotations"]["org.opencontainers.image.title"] == "plugin.wasm"
    assert fetch(layer) == wasm

    # No blob that nothing references.
    assert sorted(blobs) == sorted(d["digest"].split(":")[1] for d in (mdesc, config, layer))


def test_tar_is_the_layout(out):
    with tarfile.open(out / TAR) as t:
        members = t.getmembers()
        assert [m.name for m in members] == sorted(m.name for m in members)
        for m in members:
            assert (m.mtime, m.uid, m.gid) == (0, 0, 0), m.name
        in_tar = {m.name: t.extractfile(m).read() for m in members if m.isfile()}
    assert in_tar == layout_files(out / "oci")


def test_reproducible(out, tmp_path):
    again = dist(tmp_path / "again")
    assert read(again / TAR) == read(out / TAR)
    assert layout_files(again / "oci") == layout_files(out / "oci")
