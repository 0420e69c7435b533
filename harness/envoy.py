"""Envoy configurations, built (the benchmark's proxies and upstreams) or derived from the stack's rendered
envoy/envoy.yaml (the e2e tests' variants), and reading an Envoy's counters."""
import json
import os
import re
import urllib.parse

from harness import REPO
from harness.procs import http_get

ENVOY_BIN = os.path.join(REPO, ".venv", "bin", "envoy")


# ------------------------------------------------------------------------------ building configurations
def hcm(stat, routes, http_filters=()):
    routes = [routes] if isinstance(routes, dict) else routes
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": stat, "codec_type": "AUTO",
        "route_config": {"name": stat, "virtual_hosts": [{"name": stat, "domains": ["*"], "routes": routes}]},
        "http_filters": list(http_filters) + [{"name": "envoy.filters.http.router", "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}]}}


def listener(name, port, hcm_filter):
    return {"name": name, "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
            "filter_chains": [{"filters": [hcm_filter]}]}


def cluster(name, port):
    return {"name": name, "type": "STATIC", "connect_timeout": "1s", "load_assignment": {
        "cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
            "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}


def direct_route(body, path=None):
    match = {"path": path} if path else {"prefix": "/"}
    return {"match": match, "direct_response": {"status": 200, "body": {"inline_string": body}},
            "response_headers_to_add": [{"header": {"key": "content-type", "value": "application/json"}}]}


def wasm_filter(name, path, root_id="", configuration=None):
    cfg = {"name": name, "root_id": root_id, "fail_open": False, "vm_config": {
        "vm_id": name, "runtime": "envoy.wasm.runtime.v8", "code": {"local": {"filename": path}}}}
    if configuration is not None:
        cfg["configuration"] = {"@type": "type.googleapis.com/google.protobuf.StringValue",
                                "value": json.dumps(configuration)}
    return {"name": "envoy.filters.http.wasm", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", "config": cfg}}


def buffer_filter(max_request_bytes):
    """Envoy's buffer filter, after the Wasm filter: the router gets a request's headers only once
    its body is whole and enforced (envoy/envoy.yaml)."""
    return {"name": "envoy.filters.http.buffer", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.buffer.v3.Buffer",
        "max_request_bytes": max_request_bytes}}


def filter_configuration(keystone_port):
    """The filter's configuration: the one of envoy/envoy.yaml (the reference configuration)."""
    return {"keystone": {"url": "http://127.0.0.1:%d/v3" % keystone_port, "upstream": "keystone",
                         "timeout_ms": 2000},
            "project_label": "project", "cache": {"ttl_seconds": 300}}


def proxy_config(kind, admin_port, port, upstream_port, keystone_port, wasm, noop_wasm):
    """kind: plain (router only), noop (no-op Wasm filter + router), filter (keystone_prom + router)."""
    filters = []
    if kind == "noop":
        filters = [wasm_filter("noop", noop_wasm)]
    elif kind == "filter":
        # As envoy/envoy.yaml: the buffer filter holds a request until its body is whole.
        filters = [wasm_filter("keystone_prom", wasm, "keystone_prom", filter_configuration(keystone_port)),
                   buffer_filter(1 << 20)]
    route = {"match": {"prefix": "/"}, "route": {"cluster": "upstream", "timeout": "120s"}}
    clusters = [cluster("upstream", upstream_port)]
    if kind == "filter":
        clusters.append(cluster("keystone", keystone_port))
    return {"admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": admin_port}}},
            "static_resources": {"listeners": [listener("proxy", port, hcm("proxy", route, filters))],
                                 "clusters": clusters}}


# --------------------------------------------------------------------------- deriving from a configuration
def render(template_path, values):
    """A configuration file with its `${NAME}` placeholders (envoy/envoy.yaml's) filled from `values`;
    one left unfilled is an error."""
    with open(template_path) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("${%s}" % k, str(v))
    left = sorted(set(re.findall(r"\$\{([A-Z_]+)\}", text)))
    if left:
        raise ValueError("%s: unfilled placeholders %s" % (template_path, left))
    return text



def merge_config(base, overrides):
    """Deep merge of JSON objects; a None value in overrides deletes the key."""
    out = dict(base)
    for k, v in (overrides or {}).items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge_config(out[k], v)
        else:
            out[k] = v
    return out


def wasm_filter_of(cfg):
    """The PluginConfig of the configuration's Wasm HTTP filter."""
    for lst in cfg["static_resources"]["listeners"]:
        for chain in lst["filter_chains"]:
            for f in chain["filters"]:
                for hf in f.get("typed_config", {}).get("http_filters", []):
                    if hf.get("name") == "envoy.filters.http.wasm":
                        return hf["typed_config"]["config"]
    raise AssertionError("no envoy.filters.http.wasm filter in the configuration")


def cluster_of(cfg, name):
    for c in cfg["static_resources"]["clusters"]:
        if c["name"] == name:
            return c
    raise AssertionError("no cluster %r in the configuration" % name)


def set_cluster_port(cfg, name, port):
    for ep in cluster_of(cfg, name)["load_assignment"]["endpoints"]:
        for lb in ep["lb_endpoints"]:
            lb["endpoint"]["address"]["socket_address"]["port_value"] = int(port)


# ------------------------------------------------------------------------------------------ counters
def stat(admin_url, name, default=None):
    """One counter or gauge of an Envoy by its exact name; `default` while it does not exist yet."""
    code, body = http_get(admin_url + "/stats?filter=" + urllib.parse.quote("^%s$" % name.replace(".", r"\.")))
    if code != 200:
        raise RuntimeError("%s/stats: HTTP %d" % (admin_url, code))
    for line in body.decode().splitlines():
        k, _, v = line.partition(": ")
        if k == name:
            return int(v)
    return default
