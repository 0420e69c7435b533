"""Deployment files for every host, checked as far as possible without a cluster or NGINX:
they parse, every key is one the host knows, the filter configuration in each validates against
config.schema.json and the filter's own parser (kpw-check-config), and the Envoy files pass
`envoy --mode validate`."""
import json
import os
import re
import subprocess
import tempfile

import jsonschema
import pytest
import yaml

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SCHEMA = json.load(open(os.path.join(REPO, "config.schema.json")))
ENVOY = os.path.join(REPO, ".venv", "bin", "envoy")
WASM = os.path.join(REPO, "target", "wasm32-wasip1", "release", "keystone_prom_wasm.wasm")


def env_keys(cfg):
    """The environment variables a configuration reads its secrets from (`*_env`)."""
    if isinstance(cfg, dict):
        return [v for k, v in cfg.items() if k.endswith("_env")] + [n for v in cfg.values() for n in env_keys(v)]
    return []


def check_config(cfg):
    """The configuration is valid for the schema and for the filter's parser (with the variables that
    hold its secrets set, as the host sets them)."""
    jsonschema.validate(cfg, SCHEMA)
    env = dict(os.environ, **{name: "a-secret" for name in env_keys(cfg)})
    r = subprocess.run(["cargo", "run", "--quiet", "--bin", "kpw-check-config", "--", "-"], cwd=REPO, env=env,
                       input=json.dumps(cfg), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_schema_refuses_what_the_parser_refuses():
    for bad in ({}, {"keystone": {"url": "ftp://x"}}, {"keystone": {"url": "http://k/v3"}, "nope": 1},
                {"keystone": {"url": "http://k/v3"}, "cache": {"ttl_seconds": 0}}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, SCHEMA)
        r = subprocess.run(["cargo", "run", "--quiet", "--bin", "kpw-check-config", "--", "-"], cwd=REPO,
                           input=json.dumps(bad), capture_output=True, text=True, timeout=600)
        assert r.returncode == 1 and "configuration key" in r.stderr, (bad, r.stderr)


# Fields of the Istio resources, from their API references (extensions.istio.io/v1alpha1 WasmPlugin,
# networking.istio.io ServiceEntry and DestinationRule).
WASMPLUGIN_SPEC = {"selector", "targetRef", "targetRefs", "url", "sha256", "imagePullPolicy", "imagePullSecret",
                   "pluginConfig", "pluginName", "phase", "priority", "failStrategy", "vmConfig", "match", "type"}
SERVICEENTRY_SPEC = {"hosts", "addresses", "ports", "location", "resolution", "endpoints", "workloadSelector",
                     "exportTo", "subjectAltNames"}
DESTINATIONRULE_SPEC = {"host", "trafficPolicy", "subsets", "exportTo", "workloadSelector"}
# networking.istio.io/v1alpha3 EnvoyFilter and its EnvoyConfigObjectPatch / match / patch.
ENVOYFILTER_SPEC = {"workloadSelector", "targetRefs", "configPatches", "priority"}
CONFIGPATCH_SPEC = {"applyTo", "match", "patch"}
PATCH_MATCH_SPEC = {"context", "proxy", "listener", "routeConfiguration", "cluster"}
LISTENER_MATCH_SPEC = {"portNumber", "portName", "filterChain", "listenerFilter", "name"}
FILTERCHAIN_MATCH_SPEC = {"name", "sni", "transportProtocol", "applicationProtocols", "filter", "destinationPort"}


def istio_docs():
    docs = []
    for name in ("wasmplugin.yaml", "keystone.yaml", "buffer.yaml"):
        with open(os.path.join(REPO, "examples", "istio", name)) as f:
            docs += [d for d in yaml.safe_load_all(f) if d]
    return {d["kind"]: d for d in docs}


def test_istio_manifests_use_known_fields():
    docs = istio_docs()
    assert set(docs) == {"WasmPlugin", "ServiceEntry", "DestinationRule", "EnvoyFilter"}
    for kind, known in (("WasmPlugin", WASMPLUGIN_SPEC), ("ServiceEntry", SERVICEENTRY_SPEC),
                        ("DestinationRule", DESTINATIONRULE_SPEC), ("EnvoyFilter", ENVOYFILTER_SPEC)):
        unknown = set(docs[kind]["spec"]) - known
        assert not unknown, "%s: unknown fields %s" % (kind, unknown)
        assert docs[kind]["apiVersion"].split("/")[0] in ("extensions.istio.io", "networking.istio.io")
    wp = docs["WasmPlugin"]["spec"]
    assert wp["failStrategy"] == "FAIL_CLOSE" and wp["phase"] == "AUTHN"
    assert wp["url"].startswith(("oci://", "file://", "https://"))
    host = docs["ServiceEntry"]["spec"]["hosts"][0]
    port = docs["ServiceEntry"]["spec"]["ports"][0]["number"]
    assert wp["pluginConfig"]["keystone"]["upstream"] == "outbound|%d||%s" % (port, host)
    assert docs["DestinationRule"]["spec"]["host"] == host


def test_istio_plugin_takes_inbound_traffic_only_and_its_secret_from_a_secret():
    docs = istio_docs()
    wp = docs["WasmPlugin"]["spec"]
    assert [m["mode"] for m in wp["match"]] == ["SERVER"], "the plugin must not meet Prometheus' own outbound calls"
    assert docs["ServiceEntry"]["spec"]["exportTo"] == ["."] and docs["DestinationRule"]["spec"]["exportTo"] == ["."]
    creds = wp["pluginConfig"]["keystone"]["service_credentials"]
    assert "application_credential_secret" not in creds, "a secret inline in pluginConfig"
    var = creds["application_credential_secret_env"]
    assert {"name": var, "valueFrom": "HOST"} in wp["vmConfig"]["env"]
    with open(os.path.join(REPO, "examples", "istio", "prometheus-sidecar.yaml")) as f:
        side = {d["kind"]: d for d in yaml.safe_load_all(f) if d}
    pod = side["Deployment"]["spec"]["template"]
    proxy = [c for c in pod["spec"]["containers"] if c["name"] == "istio-proxy"][0]
    ref = [e for e in proxy["env"] if e["name"] == var][0]["valueFrom"]["secretKeyRef"]
    assert ref["name"] == side["Secret"]["metadata"]["name"] and ref["key"] in side["Secret"]["stringData"]
    assert pod["metadata"]["labels"] == wp["selector"]["matchLabels"]
    stats = yaml.safe_load(pod["metadata"]["annotations"]["proxy.istio.io/config"])["proxyStatsMatcher"]
    assert any(re.fullmatch(r, "wasmcustom.keystone_prom_requests_allowed") for r in stats["inclusionRegexps"])
    ports = [p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])]
    assert [p["number"] for m in wp["match"] for p in m["ports"]] == ports


def test_istio_buffer_filter_goes_after_the_plugin_on_its_port():
    """The buffer filter that keeps a refused body's headers from Prometheus (README, "Hosts and
    deployment"): the plugin's workload and port, inbound, just before the router (after the plugin's
    filter), buffering at least the largest body the filter accepts; its typed_config is one Envoy takes."""
    docs = istio_docs()
    wp, ef = docs["WasmPlugin"]["spec"], docs["EnvoyFilter"]["spec"]
    assert ef["workloadSelector"]["labels"] == wp["selector"]["matchLabels"]
    [patch] = ef["configPatches"]
    assert set(patch) <= CONFIGPATCH_SPEC and set(patch["match"]) <= PATCH_MATCH_SPEC
    assert set(patch["match"]["listener"]) <= LISTENER_MATCH_SPEC
    assert set(patch["match"]["listener"]["filterChain"]) <= FILTERCHAIN_MATCH_SPEC
    assert patch["applyTo"] == "HTTP_FILTER" and patch["match"]["context"] == "SIDECAR_INBOUND"
    assert [patch["match"]["listener"]["portNumber"]] == [p["number"] for m in wp["match"] for p in m["ports"]]
    chain = patch["match"]["listener"]["filterChain"]["filter"]
    assert chain["name"] == "envoy.filters.network.http_connection_manager"
    assert chain["subFilter"]["name"] == "envoy.filters.http.router"
    assert patch["patch"]["operation"] == "INSERT_BEFORE"
    value = patch["patch"]["value"]
    assert value["name"] == "envoy.filters.http.buffer"
    cfg = wp["pluginConfig"]
    largest = max((cfg[s].get("max_body_bytes", 1 << 20) for s in ("write", "read") if cfg.get(s, {}).get("enabled")),
                  default=0)
    assert largest, "the example turns writing on"
    assert value["typed_config"]["max_request_bytes"] >= largest
    envoy_validate(yaml.safe_dump({
        "static_resources": {"listeners": [{
            "name": "inbound", "address": {"socket_address": {"address": "127.0.0.1", "port_value": 9090}},
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
                             ".HttpConnectionManager",
                    "stat_prefix": "inbound",
                    "route_config": {"virtual_hosts": [{"name": "all", "domains": ["*"], "routes": [
                        {"match": {"prefix": "/"}, "direct_response": {"status": 204}}]}]},
                    "http_filters": [value, {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}]}]}]}}))


def test_istio_plugin_config_is_valid():
    check_config(istio_docs()["WasmPlugin"]["spec"]["pluginConfig"])


def test_istio_image_is_scratch_with_plugin_wasm():
    lines = [l.strip() for l in open(os.path.join(REPO, "examples", "istio", "Dockerfile"))
             if l.strip() and not l.startswith("#")]
    assert lines == ["FROM scratch", "COPY plugin.wasm ./"]


def nginx_conf():
    return open(os.path.join(REPO, "examples", "nginx", "nginx.conf")).read()


def block(text, name):
    """The body of the first `name { ... }` block (balanced braces)."""
    start = re.search(r"(?m)^\s*%s\s*\{" % re.escape(name), text).end()
    depth, i = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1]


def test_nginx_conf_follows_the_host_facts():
    conf = re.sub(r"(?m)#.*$", "", nginx_conf())
    wasm, http = block(conf, "wasm"), block(conf, "http")
    assert re.search(r"\bresolver\s+\S+", wasm) and re.search(r"\bresolver\s+\S+", http), "resolver in wasm{} and http{}"
    assert re.search(r"\bshm_kv\s+\*\s+\d+[km];", wasm)
    assert re.search(r"\bmodule\s+keystone_prom\s+\S+\.wasm;", wasm)
    assert "proxy_pass http://prometheus$uri$is_args$args;" in http
    cfg = json.loads(re.search(r"proxy_wasm\s+keystone_prom\s+'([^']*)';", http).group(1))
    # The whole body must stay in memory, for a form and for a remote write the filter reads.
    props = SCHEMA["properties"]
    needed = props["limits"]["properties"]["max_body_bytes"]["default"]
    if cfg.get("write", {}).get("enabled"):
        needed = max(needed, cfg["write"].get("max_body_bytes", props["write"]["properties"]["max_body_bytes"]["default"]))
    units = {"k": 1024, "m": 1 << 20}
    for directive in ("client_body_buffer_size", "client_max_body_size"):
        size = re.search(r"%s\s+(\d+)([km]);" % directive, http)
        assert size and int(size.group(1)) * units[size.group(2)] >= needed, directive
    assert re.fullmatch(r"[\w.-]+:\d+", cfg["keystone"]["upstream"]), "NGINX callouts go to host:port"
    if cfg["keystone"]["url"].startswith("https://"):
        # TLS to Keystone: the certificate checked, and a host name for SNI
        assert re.search(r"\btls_verify_cert\s+on;", wasm) and re.search(r"\btls_verify_host\s+on;", wasm)
        assert re.search(r"\btls_trusted_certificate\s+\S+;", wasm)
        assert not re.fullmatch(r"[\d.]+:\d+", cfg["keystone"]["upstream"]), "SNI needs a host name"
    check_config(cfg)


def test_nginx_conf_routes_alertmanager():
    """Alertmanager's API v2 under /alertmanager/: the same filter configuration as Prometheus' location
    (with the alertmanager section on, its upstream a host:port), and the filter's path passed on with
    the prefix stripped."""
    conf = re.sub(r"(?m)#.*$", "", nginx_conf())
    http = block(conf, "http")
    configs = re.findall(r"proxy_wasm\s+keystone_prom\s+'([^']*)';", http)
    assert len(configs) == 2 and configs[0] == configs[1], "one configuration in every location"
    cfg = json.loads(configs[0])
    am = cfg["alertmanager"]
    assert am["enabled"] and am["path_prefix"] == "/alertmanager"
    assert re.fullmatch(r"[\w.-]+:\d+", am["upstream"]) and re.fullmatch(r"[\w.-]+:\d+", cfg["metadata"]["upstream"])
    loc = block(http, "location /alertmanager/")
    assert "proxy_pass http://alertmanager$am_uri$is_args$args;" in loc
    upstream = block(http, "upstream alertmanager")
    assert re.search(r"\bserver\s+%s;" % re.escape(am["upstream"]), upstream)
    m = re.search(r"map\s+\$uri\s+\$am_uri\s*\{([^}]*)\}", http)
    assert m, "the map that strips the prefix"
    rx, var = re.search(r'"~([^"]+)"\s+\$(\w+);', m.group(1)).groups()
    rx = rx.replace("(?<", "(?P<")
    for path, want in (("/alertmanager/api/v2/alerts", "/api/v2/alerts"), ("/alertmanager/", "/")):
        assert re.match(rx, path).group(var) == want
    check_config(cfg)


def render(path, mapping):
    text = open(path).read()
    for k, v in mapping.items():
        text = text.replace(k, v)
    return text


def wasm_configs(doc):
    out = []
    for l in doc["static_resources"]["listeners"]:
        for chain in l["filter_chains"]:
            for f in chain["filters"]:
                for hf in f["typed_config"].get("http_filters", []):
                    if hf["name"] == "envoy.filters.http.wasm":
                        out.append(hf["typed_config"]["config"])
    return out


def envoy_validate(text):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        r = subprocess.run([ENVOY, "--mode", "validate", "-c", f.name, "--log-level", "warn"],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    finally:
        os.unlink(f.name)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                    "-keyout", str(d / "server.key"), "-out", str(d / "server.crt")], check=True, capture_output=True)
    return d


def test_envoy_production_config(certs):
    assert os.path.exists(WASM), "run make build first"
    text = render(os.path.join(REPO, "envoy", "envoy-production.yaml"), {
        "/etc/envoy/tls/": str(certs) + "/", "/etc/envoy/wasm/keystone_prom_wasm.wasm": WASM})
    doc = yaml.safe_load(text)
    for c in wasm_configs(doc):
        assert c["fail_open"] is False
        check_config(json.loads(c["configuration"]["value"]))
    clusters = {c["name"]: c for c in doc["static_resources"]["clusters"]}
    assert clusters["keystone"]["transport_socket"]["name"] == "envoy.transport_sockets.tls"
    check_alertmanager_routed(doc)
    envoy_validate(text)


def check_alertmanager_routed(doc):
    """The filter's alertmanager section is on, its prefix routed to its upstream cluster with the prefix
    stripped; metadata asks a cluster that exists."""
    clusters = {c["name"] for c in doc["static_resources"]["clusters"]}
    for c in wasm_configs(doc):
        cfg = json.loads(c["configuration"]["value"])
        am = cfg["alertmanager"]
        assert am["enabled"] and am["upstream"] in clusters and cfg["metadata"]["upstream"] in clusters
        assert cfg["read"]["enabled"] and cfg["metadata"]["enabled"]
    routes = [r for l in doc["static_resources"]["listeners"] for ch in l["filter_chains"] for f in ch["filters"]
              for vh in f["typed_config"]["route_config"]["virtual_hosts"] for r in vh["routes"]]
    first = [r for r in routes if r["match"].get("prefix", "").startswith(am["path_prefix"])]
    assert first and routes.index(first[0]) < routes.index([r for r in routes if r["match"].get("prefix") == "/"][0])
    assert first[0]["match"]["prefix"] == am["path_prefix"] + "/"
    assert first[0]["route"]["cluster"] == am["upstream"]
    assert first[0]["route"]["prefix_rewrite"] == (am.get("upstream_path_prefix") or "") + "/"


def test_envoy_demo_config():
    text = render(os.path.join(REPO, "envoy", "envoy.yaml"), {
        "${ENVOY_PORT}": "10000", "${ENVOY_ADMIN_PORT}": "9901", "${KEYSTONE_PORT}": "5000",
        "${PROM_PORT}": "9090", "${ALERTMANAGER_PORT}": "9093", "${WASM_PATH}": WASM})
    doc = yaml.safe_load(text)
    for c in wasm_configs(doc):
        check_config(json.loads(c["configuration"]["value"]))
    check_alertmanager_routed(doc)
    envoy_validate(text)
