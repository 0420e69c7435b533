//! Remote write 1.0 batches as Prometheus sends them, for `make bench`'s write workload
//! (`examples/write_batches.rs` writes them for wrk) and for the native timing of the same
//! decode → enforce → encode (`benches/stages.rs`, group `write`).
//!
//! A batch is what one shard of Prometheus' queue manager sends: `samples` `TimeSeries` of
//! one sample each (Prometheus 2.x and 3.x put every sample in a series entry of its own,
//! `max_samples_per_send` 2000 by default), in the order the scrapes appended them to the
//! WAL, one shard's share of them (series are sharded by the hash of their labels). The
//! scraped targets are those of a small Kubernetes cluster with OpenStack telemetry beside
//! it: node-exporter on every node, kube-state-metrics, cAdvisor, and Ceilometer's
//! Prometheus exporter, whose series carry a `project` label of their own (another
//! project's, which the filter overwrites: ~18% of the series). Every series has `__name__`,
//! `job`, `instance` and 5 to 10 more (among them the external label `cluster`), sorted by
//! name; counters grow and gauges move from batch to batch, timestamps advance by the scrape
//! interval.

use keystone_prom_wasm::enforce::remote_write::{
    self, v1, Decoded, Limits, MetadataPolicy, OnConflict, Policy, Schema, Stamp, Tenancy,
};

/// The tenant the bench's token belongs to (a Keystone project id's shape).
pub const WRITE_TENANT: &str = "236330d7b278485bbb7f97d3d03965a0";
/// Samples per batch: Prometheus' `max_samples_per_send` default.
pub const BATCH_SAMPLES: usize = 2000;
/// Batches in the set the workload rotates through.
pub const BATCHES: usize = 64;

/// splitmix64: deterministic, so the files wrk sends and the native bench's batches are the same.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn hex(&mut self, len: usize) -> String {
        let mut s = String::with_capacity(len);
        while s.len() < len {
            s.push_str(&format!("{:016x}", self.next()));
        }
        s.truncate(len);
        s
    }
    fn suffix(&mut self, len: usize) -> String {
        const A: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..len).map(|_| A[self.below(A.len() as u64) as usize] as char).collect()
    }
    fn uuid(&mut self) -> String {
        let h = self.hex(32);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

#[derive(Clone, Copy)]
enum Kind {
    /// Grows by a rate per second.
    Counter(f64),
    /// Moves around a level.
    Gauge(f64),
}

/// One series of the cluster: its sorted labels and how its value moves.
struct Series {
    labels: Vec<v1::Label>,
    kind: Kind,
    /// Hash of the labels: the queue-manager shard.
    shard: u64,
}

/// One scrape target: its series, appended together to the WAL on each scrape.
struct Target {
    series: Vec<Series>,
}

fn with<'a>(base: &[(&'a str, &'a str)], extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(extra).copied().collect()
}

fn series(rng: &mut Rng, pairs: &[(&str, &str)], kind: Kind) -> Series {
    let mut labels: Vec<v1::Label> = pairs.iter().map(|(n, v)| v1::Label::new(*n, *v)).collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    Series { labels, kind, shard: rng.next() }
}

const CLUSTER: (&str, &str) = ("cluster", "prod-eu-west-1");
const NAMESPACES: [&str; 8] =
    ["default", "kube-system", "monitoring", "ingress-nginx", "payments", "checkout", "search", "logging"];

/// The cluster: node-exporter and cAdvisor on each of `nodes` nodes, one kube-state-metrics,
/// two Ceilometer exporters; about 8,500 series.
fn cluster(rng: &mut Rng, nodes: usize) -> Vec<Target> {
    let mut targets = Vec::new();
    let node_names: Vec<String> = (0..nodes).map(|i| format!("worker-{:02}.eu-west-1.compute.internal", i)).collect();
    let node_ips: Vec<String> = (0..nodes).map(|i| format!("10.0.{}.{}", 16 + i / 200, 10 + i % 200)).collect();
    // pods spread over the nodes
    let mut pods = Vec::new();
    for (ns_i, ns) in NAMESPACES.iter().enumerate() {
        for d in 0..4 {
            let deploy = format!("{}-svc-{}", ["api", "web", "worker", "cache"][d], ns_i);
            for r in 0..3 {
                let pod = format!("{}-{}-{}", deploy, rng.suffix(10).to_lowercase(), rng.suffix(5));
                let node = rng.below(nodes as u64) as usize;
                pods.push((ns.to_string(), deploy.clone(), pod, rng.uuid(), node, r));
            }
        }
    }
    for n in 0..nodes {
        let inst = format!("{}:9100", node_ips[n]);
        let pod = format!("node-exporter-{}", rng.suffix(5));
        let base = [
            ("job", "node-exporter"),
            ("instance", inst.as_str()),
            CLUSTER,
            ("namespace", "monitoring"),
            ("pod", pod.as_str()),
            ("service", "node-exporter"),
            ("endpoint", "https"),
            ("node", node_names[n].as_str()),
        ];
        let mut ss = Vec::new();
        for cpu in 0..8 {
            let c = cpu.to_string();
            for mode in ["idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user"] {
                let l = with(&base, &[("__name__", "node_cpu_seconds_total"), ("cpu", &c), ("mode", mode)]);
                ss.push(series(rng, &l, Kind::Counter(if mode == "idle" { 0.8 } else { 0.03 })));
            }
        }
        for (dev, fs, mp) in [("/dev/nvme0n1p1", "ext4", "/"), ("/dev/nvme0n1p15", "vfat", "/boot/efi"),
                              ("/dev/nvme1n1", "xfs", "/var/lib/kubelet"), ("tmpfs", "tmpfs", "/run")] {
            for name in ["node_filesystem_avail_bytes", "node_filesystem_size_bytes", "node_filesystem_files_free",
                         "node_filesystem_readonly"] {
                let l = with(&base, &[("__name__", name), ("device", dev), ("fstype", fs), ("mountpoint", mp)]);
                ss.push(series(rng, &l, Kind::Gauge(5.4e10)));
            }
        }
        for dev in ["eth0", "eth1", "lo", "cali4f1c2d9e0a7", "vxlan.calico"] {
            for name in ["node_network_receive_bytes_total", "node_network_transmit_bytes_total",
                         "node_network_receive_packets_total", "node_network_transmit_packets_total",
                         "node_network_receive_errs_total", "node_network_transmit_drop_total"] {
                let l = with(&base, &[("__name__", name), ("device", dev)]);
                ss.push(series(rng, &l, Kind::Counter(125_000.0)));
            }
        }
        for dev in ["nvme0n1", "nvme1n1"] {
            for name in ["node_disk_io_time_seconds_total", "node_disk_read_bytes_total", "node_disk_written_bytes_total",
                         "node_disk_reads_completed_total", "node_disk_writes_completed_total"] {
                let l = with(&base, &[("__name__", name), ("device", dev)]);
                ss.push(series(rng, &l, Kind::Counter(4_096.0)));
            }
        }
        for name in ["node_memory_MemAvailable_bytes", "node_memory_MemTotal_bytes", "node_memory_Buffers_bytes",
                     "node_memory_Cached_bytes", "node_load1", "node_load5", "node_load15", "node_boot_time_seconds",
                     "node_context_switches_total", "node_intr_total", "node_procs_running"] {
            let l = with(&base, &[("__name__", name)]);
            ss.push(series(rng, &l, Kind::Gauge(1.6e10)));
        }
        targets.push(Target { series: ss });
        // cAdvisor (kubelet): per container on this node
        let inst = format!("{}:10250", node_ips[n]);
        let mut ss = Vec::new();
        for (ns, _deploy, pod, _uid, _node, _) in pods.iter().filter(|p| p.4 == n) {
            for container in ["app", "istio-proxy"] {
                let id = format!("/kubepods/burstable/pod{}/{}", rng.uuid(), rng.hex(64));
                for name in ["container_cpu_usage_seconds_total", "container_memory_working_set_bytes",
                             "container_network_receive_bytes_total", "container_fs_writes_bytes_total"] {
                    let l = [("__name__", name), ("job", "kubelet"), ("instance", inst.as_str()), CLUSTER,
                             ("namespace", ns.as_str()), ("pod", pod.as_str()), ("container", container),
                             ("id", id.as_str()), ("image", "registry.example.com/app:1.42.7"),
                             ("metrics_path", "/metrics/cadvisor"), ("node", node_names[n].as_str())];
                    ss.push(series(rng, &l, Kind::Counter(0.25)));
                }
            }
        }
        targets.push(Target { series: ss });
    }
    // kube-state-metrics: the objects' own namespace and pod (honor_labels)
    let mut ss = Vec::new();
    let inst = "10.0.16.250:8080";
    let base = [("job", "kube-state-metrics"), ("instance", inst), CLUSTER, ("service", "kube-state-metrics"),
                ("endpoint", "http-metrics")];
    for (ns, deploy, pod, uid, node, _) in &pods {
        for container in ["app", "istio-proxy"] {
            for name in ["kube_pod_container_status_restarts_total", "kube_pod_container_status_ready",
                         "kube_pod_container_status_running"] {
                let l: Vec<_> = base.iter().copied().chain([("__name__", name), ("namespace", ns.as_str()),
                    ("pod", pod.as_str()), ("uid", uid.as_str()), ("container", container)]).collect();
                ss.push(series(rng, &l, Kind::Gauge(1.0)));
            }
            for resource in ["cpu", "memory"] {
                let unit = if resource == "cpu" { "core" } else { "byte" };
                let l: Vec<_> = base.iter().copied().chain([("__name__", "kube_pod_container_resource_requests"),
                    ("namespace", ns.as_str()), ("pod", pod.as_str()), ("uid", uid.as_str()), ("container", container),
                    ("node", node_names[*node].as_str()), ("resource", resource), ("unit", unit)]).collect();
                ss.push(series(rng, &l, Kind::Gauge(0.5)));
            }
        }
        for phase in ["Pending", "Running", "Succeeded", "Failed", "Unknown"] {
            let l: Vec<_> = base.iter().copied().chain([("__name__", "kube_pod_status_phase"), ("namespace", ns.as_str()),
                ("pod", pod.as_str()), ("uid", uid.as_str()), ("phase", phase)]).collect();
            ss.push(series(rng, &l, Kind::Gauge(1.0)));
        }
        let l: Vec<_> = base.iter().copied().chain([("__name__", "kube_deployment_status_replicas_available"),
            ("namespace", ns.as_str()), ("deployment", deploy.as_str())]).collect();
        ss.push(series(rng, &l, Kind::Gauge(3.0)));
    }
    targets.push(Target { series: ss });
    // Ceilometer's Prometheus exporter (OpenStack telemetry): another project's label on every series
    for t in 0..2 {
        let inst = format!("10.0.32.{}:9101", 5 + t);
        let mut ss = Vec::new();
        for vm in 0..150 {
            let project = rng.hex(32);
            let user = rng.hex(32);
            let resource = rng.uuid();
            let vm_name = format!("vm-{}-{:03}", ["web", "db", "batch", "ci"][vm % 4], vm);
            for (meter, unit, ty) in [("ceilometer_cpu", "ns", "cumulative"), ("ceilometer_memory_usage", "MB", "gauge"),
                                      ("ceilometer_disk_device_read_bytes", "B", "cumulative"),
                                      ("ceilometer_network_incoming_bytes", "B", "cumulative"),
                                      ("ceilometer_vcpus", "vcpu", "gauge")] {
                let l = [("__name__", meter), ("job", "ceilometer"), ("instance", inst.as_str()), CLUSTER,
                         ("project", project.as_str()), ("user", user.as_str()), ("resource", resource.as_str()),
                         ("resource_name", vm_name.as_str()), ("type", ty), ("unit", unit),
                         ("publisher", "ceilometer-agent-compute")];
                ss.push(series(rng, &l, if ty == "gauge" { Kind::Gauge(2048.0) } else { Kind::Counter(1.5e9) }));
            }
        }
        targets.push(Target { series: ss });
    }
    targets
}

/// `batches` batches of `samples` samples each: shard 0 of 8 of the WAL, scrape after scrape
/// (15 s apart), every batch where the last one stopped.
pub fn batches(batches: usize, samples: usize) -> Vec<v1::WriteRequest> {
    let mut out = Vec::with_capacity(batches);
    generate(batches, samples, |b| out.push(b));
    out
}

/// The batches as request bodies: protobuf, snappy block format (the filter's own encoder,
/// the `snap` crate, as Prometheus' Go snappy writes them).
pub fn bodies(n: usize, samples: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(n);
    generate(n, samples, |b| out.push(remote_write::encode(&Decoded::V1(b)).expect("a benchmark batch encodes")));
    out
}

/// Hands the batches to `each` one by one (a Wasm VM holds the bodies, not all batches decoded).
fn generate(batches: usize, samples: usize, mut each: impl FnMut(v1::WriteRequest)) {
    const SHARDS: u64 = 8;
    const T0_MS: i64 = 1_795_266_000_000;
    let mut rng = Rng(0x6b70_772d_7772_6974);
    let targets = cluster(&mut rng, 24);
    let mut done = 0;
    let mut cur: Vec<v1::TimeSeries> = Vec::with_capacity(samples);
    let mut scrape = 0i64;
    loop {
        for (ti, t) in targets.iter().enumerate() {
            // targets are scraped at different offsets inside the interval
            let ts = T0_MS + scrape * 15_000 + (ti as i64 * 397) % 15_000;
            for s in t.series.iter().filter(|s| s.shard % SHARDS == 0) {
                let secs = (ts - T0_MS) as f64 / 1e3 + 86_400.0 * ((s.shard >> 8) % 30) as f64;
                let value = match s.kind {
                    Kind::Counter(rate) => (rate * secs * (1.0 + ((s.shard >> 16) % 100) as f64 / 50.0)).floor(),
                    Kind::Gauge(level) => {
                        let j = ((s.shard >> 20).wrapping_add(scrape as u64 * 2_654_435_761) % 10_000) as f64;
                        (level * (0.5 + j / 10_000.0) * 100.0).round() / 100.0
                    }
                };
                cur.push(v1::TimeSeries {
                    labels: s.labels.clone(),
                    samples: vec![v1::Sample { value, timestamp: ts }],
                    exemplars: vec![],
                    histograms: vec![],
                });
                if cur.len() == samples {
                    each(v1::WriteRequest { timeseries: std::mem::replace(&mut cur, Vec::with_capacity(samples)), metadata: vec![] });
                    done += 1;
                    if done == batches {
                        return;
                    }
                }
            }
        }
        scrape += 1;
    }
}

/// What the filter does with a write by the bench's tenant, with its default `write`
/// configuration: stamp `project`, overwrite another value, drop 1.0 metadata, default limits.
pub fn policy() -> Policy {
    Policy {
        tenancy: Tenancy::Stamp(Stamp {
            label: "project".into(),
            value: WRITE_TENANT.into(),
            on_conflict: OnConflict::Overwrite,
            // the filter strips the other tenant label (`domain_label`) too
            extra_labels_to_strip: vec!["domain".into()],
        }),
        metadata: MetadataPolicy::Drop,
    }
}

/// decode → enforce → encode of one body, as the filter does it (`remote_write::rewrite`, one
/// pass); the forwarded body's length.
pub fn rewrite(body: &[u8], policy: &Policy, limits: &Limits) -> usize {
    remote_write::rewrite(body, Schema::V1, limits, policy).expect("a benchmark batch is rewritten").body.len()
}

/// The same through prost's messages (`decode`, `enforce`, `encode`): the reference path,
/// which `rewrite` matches byte for byte.
pub fn rewrite_prost(body: &[u8], policy: &Policy, limits: &Limits) -> usize {
    let mut d = remote_write::decode(body, Schema::V1, limits).expect("a benchmark batch decodes");
    remote_write::enforce(&mut d, policy).expect("a benchmark batch is enforced");
    remote_write::encode(&d).expect("a benchmark batch re-encodes").len()
}
