//! The fixed English vocabulary of the drafter: what servers are called, which words name an
//! environment, a count or a size, and the everyday names of catalog taskservs.

/// What a group of servers is for. Decides server names, labels and default taskservs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Role {
    Web,
    App,
    Db,
    Cache,
    Lb,
    Monitoring,
    ControlPlane,
    Worker,
    Primary,
    Replica,
    Builder,
    Registry,
    Git,
    Storage,
    Hypervisor,
    Bastion,
    Node,
    Server,
}

impl Role {
    /// Prefix of server names (`web-1`) and the `role` label.
    pub(crate) fn prefix(self) -> &'static str {
        match self {
            Role::Web => "web",
            Role::App => "app",
            Role::Db | Role::Primary | Role::Replica => "db",
            Role::Cache => "cache",
            Role::Lb => "lb",
            Role::Monitoring => "monitoring",
            Role::ControlPlane => "cp",
            Role::Worker => "worker",
            Role::Builder => "build",
            Role::Registry => "registry",
            Role::Git => "git",
            Role::Storage => "storage",
            Role::Hypervisor => "kvm",
            Role::Bastion => "bastion",
            Role::Node => "node",
            Role::Server => "server",
        }
    }

    /// Taskservs a server of this role runs when the text names none.
    pub(crate) fn default_taskservs(self) -> &'static [&'static str] {
        match self {
            Role::Web | Role::App => &["nginx"],
            Role::Db | Role::Primary | Role::Replica => &["postgres"],
            Role::Cache => &["redis"],
            Role::Lb => &["haproxy"],
            Role::Monitoring => &["prometheus", "grafana"],
            Role::Builder => &["buildkit"],
            Role::Registry => &["registry"],
            Role::Git => &["gitea"],
            Role::Storage => &["external-nfs"],
            Role::Hypervisor => &["kvm"],
            Role::ControlPlane | Role::Worker => &["kubernetes"],
            Role::Bastion | Role::Node | Role::Server => &[],
        }
    }

    /// The role a server gets from its main taskserv when the text only says "server".
    pub(crate) fn of_taskserv(name: &str) -> Role {
        match name {
            "postgres" | "mysql" | "mariadb" | "mongodb" => Role::Db,
            "redis" => Role::Cache,
            "nginx" => Role::Web,
            "haproxy" => Role::Lb,
            "prometheus" | "grafana" | "loki" | "jaeger" => Role::Monitoring,
            "gitea" => Role::Git,
            "registry" => Role::Registry,
            "buildkit" => Role::Builder,
            "kvm" => Role::Hypervisor,
            "external-nfs" | "rook-ceph" => Role::Storage,
            _ => Role::Node,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Env {
    Dev,
    Staging,
    Prod,
}

impl Env {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Env::Dev => "dev",
            Env::Staging => "staging",
            Env::Prod => "prod",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Env> {
        ENV_WORDS
            .iter()
            .find(|(w, _)| *w == s.trim().to_lowercase())
            .map(|(_, e)| *e)
    }
}

pub(crate) const ENV_WORDS: &[(&str, Env)] = &[
    ("prod", Env::Prod),
    ("production", Env::Prod),
    ("production-grade", Env::Prod),
    ("prd", Env::Prod),
    ("staging", Env::Staging),
    ("stage", Env::Staging),
    ("stg", Env::Staging),
    ("preprod", Env::Staging),
    ("pre-prod", Env::Staging),
    ("pre-production", Env::Staging),
    ("qa", Env::Staging),
    ("uat", Env::Staging),
    ("dev", Env::Dev),
    ("development", Env::Dev),
    ("devel", Env::Dev),
    ("test", Env::Dev),
    ("testing", Env::Dev),
    ("sandbox", Env::Dev),
    ("playground", Env::Dev),
    ("demo", Env::Dev),
    ("experiment", Env::Dev),
    ("experiments", Env::Dev),
    ("experimental", Env::Dev),
];

/// Number words, for counts ("three web servers") and sizes ("four cores").
pub(crate) const NUMBER_WORDS: &[(&str, u32)] = &[
    ("zero", 0),
    ("one", 1),
    ("single", 1),
    ("two", 2),
    ("three", 3),
    ("four", 4),
    ("five", 5),
    ("six", 6),
    ("seven", 7),
    ("eight", 8),
    ("nine", 9),
    ("ten", 10),
    ("eleven", 11),
    ("twelve", 12),
    ("thirteen", 13),
    ("fourteen", 14),
    ("fifteen", 15),
    ("sixteen", 16),
    ("seventeen", 17),
    ("eighteen", 18),
    ("nineteen", 19),
    ("twenty", 20),
    ("thirty", 30),
    ("forty", 40),
    ("fifty", 50),
    ("sixty", 60),
    ("seventy", 70),
    ("eighty", 80),
    ("ninety", 90),
    ("hundred", 100),
    ("dozen", 12),
];

/// A number written with digits or words: `12`, `twelve`, `twenty-five`.
pub(crate) fn number(word: &str) -> Option<u32> {
    if !word.is_empty() && word.len() <= 9 && word.bytes().all(|b| b.is_ascii_digit()) {
        return word.parse().ok();
    }
    if let Some((tens, ones)) = word.split_once('-') {
        let t = word_number(tens)?;
        let o = word_number(ones)?;
        return (t >= 20 && t % 10 == 0 && o < 10).then_some(t + o);
    }
    word_number(word)
}

fn word_number(word: &str) -> Option<u32> {
    NUMBER_WORDS
        .iter()
        .find(|(w, _)| *w == word)
        .map(|(_, n)| *n)
}

/// Everyday names of catalog taskservs. Catalog names themselves are always understood.
pub(crate) const SERVICE_ALIASES: &[(&str, &str)] = &[
    ("postgresql", "postgres"),
    ("postgre", "postgres"),
    ("pg", "postgres"),
    ("pgsql", "postgres"),
    ("psql", "postgres"),
    ("mongo", "mongodb"),
    ("k8s", "kubernetes"),
    ("kube", "kubernetes"),
    ("kubeadm", "kubernetes"),
    ("crio", "cri-o"),
    ("core-dns", "coredns"),
    ("rook", "rook-ceph"),
    ("ceph", "rook-ceph"),
    ("nfs", "external-nfs"),
    ("ha-proxy", "haproxy"),
    ("buildkitd", "buildkit"),
    ("qemu", "kvm"),
    ("libvirt", "kvm"),
    ("reverse proxy", "nginx"),
    ("container registry", "registry"),
    ("docker registry", "registry"),
    ("image registry", "registry"),
    ("oci registry", "registry"),
    ("metrics", "prometheus"),
    ("dashboards", "grafana"),
    ("dashboard", "grafana"),
    ("logging", "loki"),
    ("log aggregation", "loki"),
    ("tracing", "jaeger"),
];

/// Software that is not in the catalog but has a close stand-in; using it is an assumption.
pub(crate) const SERVICE_STAND_INS: &[(&str, &str)] = &[
    ("valkey", "redis"),
    ("forgejo", "gitea"),
    ("docker", "containerd"),
    ("k3s", "kubernetes"),
    ("microk8s", "kubernetes"),
    ("rke2", "kubernetes"),
];

/// Well-known software the catalog does not have: named in a warning, never guessed at.
pub(crate) const NOT_IN_CATALOG: &[&str] = &[
    "elasticsearch",
    "opensearch",
    "kafka",
    "rabbitmq",
    "memcached",
    "traefik",
    "apache",
    "httpd",
    "caddy",
    "jenkins",
    "vault",
    "consul",
    "nomad",
    "minio",
    "pgbouncer",
    "patroni",
    "clickhouse",
    "cassandra",
    "zookeeper",
    "nats",
    "keycloak",
    "wordpress",
    "django",
    "rails",
    "nodejs",
    "tomcat",
    "envoy",
    "istio",
    "argocd",
    "gitlab",
    "sonarqube",
    "influxdb",
    "timescaledb",
    "cockroachdb",
    "couchdb",
    "solr",
    "varnish",
    "squid",
    "openvpn",
    "wireguard",
];

/// Role words: (word, role, whether the word names a server on its own).
pub(crate) const ROLE_WORDS: &[(&str, Role, bool)] = &[
    ("web", Role::Web, false),
    ("http", Role::Web, false),
    ("webserver", Role::Web, true),
    ("webservers", Role::Web, true),
    ("web-server", Role::Web, true),
    ("web-servers", Role::Web, true),
    ("frontend", Role::Web, true),
    ("frontends", Role::Web, true),
    ("front-end", Role::Web, true),
    ("front-ends", Role::Web, true),
    ("app", Role::App, false),
    ("apps", Role::App, false),
    ("application", Role::App, false),
    ("api", Role::App, false),
    ("backend", Role::App, true),
    ("backends", Role::App, true),
    ("db", Role::Db, true),
    ("dbs", Role::Db, true),
    ("database", Role::Db, true),
    ("databases", Role::Db, true),
    ("cache", Role::Cache, true),
    ("caches", Role::Cache, true),
    ("caching", Role::Cache, false),
    ("lb", Role::Lb, true),
    ("lbs", Role::Lb, true),
    ("load balancer", Role::Lb, true),
    ("load balancers", Role::Lb, true),
    ("load-balancer", Role::Lb, true),
    ("load-balancers", Role::Lb, true),
    ("loadbalancer", Role::Lb, true),
    ("loadbalancers", Role::Lb, true),
    ("proxy", Role::Lb, true),
    ("proxies", Role::Lb, true),
    ("monitoring", Role::Monitoring, false),
    ("observability", Role::Monitoring, false),
    ("control plane", Role::ControlPlane, true),
    ("control planes", Role::ControlPlane, true),
    ("control-plane", Role::ControlPlane, true),
    ("control-planes", Role::ControlPlane, true),
    ("master", Role::ControlPlane, true),
    ("masters", Role::ControlPlane, true),
    ("worker", Role::Worker, true),
    ("workers", Role::Worker, true),
    ("primary", Role::Primary, true),
    ("leader", Role::Primary, true),
    ("replica", Role::Replica, true),
    ("replicas", Role::Replica, true),
    ("read replica", Role::Replica, true),
    ("read replicas", Role::Replica, true),
    ("standby", Role::Replica, true),
    ("standbys", Role::Replica, true),
    ("follower", Role::Replica, true),
    ("followers", Role::Replica, true),
    ("secondary", Role::Replica, true),
    ("build", Role::Builder, false),
    ("ci", Role::Builder, false),
    ("builder", Role::Builder, true),
    ("builders", Role::Builder, true),
    ("runner", Role::Builder, true),
    ("runners", Role::Builder, true),
    ("git", Role::Git, false),
    ("file", Role::Storage, false),
    ("storage", Role::Storage, false),
    ("fileserver", Role::Storage, true),
    ("hypervisor", Role::Hypervisor, true),
    ("hypervisors", Role::Hypervisor, true),
    ("bastion", Role::Bastion, true),
    ("jumphost", Role::Bastion, true),
    ("jump host", Role::Bastion, true),
];

/// Words for "a server" that say nothing about its role.
pub(crate) const GENERIC_NOUNS: &[&str] = &[
    "server",
    "servers",
    "box",
    "boxes",
    "node",
    "nodes",
    "machine",
    "machines",
    "instance",
    "instances",
    "vm",
    "vms",
    "host",
    "hosts",
    "droplet",
    "droplets",
    "vps",
    "tier",
    "tiers",
];

/// Words that name the local machine or the simulated cloud as the provider.
pub(crate) const PROVIDER_PHRASES: &[(&str, &str)] = &[
    ("hcloud", "hetzner"),
    ("up cloud", "upcloud"),
    ("amazon", "aws"),
    ("amazon web services", "aws"),
    ("ec2", "aws"),
    ("locally", "local"),
    ("localhost", "local"),
    ("my laptop", "local"),
    ("my machine", "local"),
    ("this machine", "local"),
    ("my computer", "local"),
    ("this computer", "local"),
    ("my workstation", "local"),
    ("this host", "local"),
    ("simulated", "sim"),
    ("simulation", "sim"),
    ("simulator", "sim"),
    ("fake cloud", "sim"),
];

/// Size words, smallest first: 0 tiny, 1 small, 2 medium, 3 large, 4 extra large.
pub(crate) const SIZE_WORDS: &[(&str, u8)] = &[
    ("tiny", 0),
    ("micro", 0),
    ("nano", 0),
    ("smallest", 0),
    ("small", 1),
    ("little", 1),
    ("medium", 2),
    ("mid-sized", 2),
    ("mid-size", 2),
    ("large", 3),
    ("big", 3),
    ("xlarge", 4),
    ("x-large", 4),
    ("extra large", 4),
    ("very large", 4),
    ("huge", 4),
    ("beefy", 4),
];

/// (cores, memory GB) a size word asks for on a cloud provider.
pub(crate) fn size_word_spec(tier: u8) -> (u32, u32) {
    match tier {
        0 => (1, 1),
        1 => (1, 2),
        2 => (2, 4),
        3 => (4, 8),
        _ => (8, 16),
    }
}

/// The `local` and `sim` plan a size word names.
pub(crate) fn size_word_plan(tier: u8) -> &'static str {
    match tier {
        0 | 1 => "small",
        2 => "medium",
        _ => "large",
    }
}

pub(crate) const CORE_UNITS: &[&str] = &[
    "core", "cores", "cpu", "cpus", "vcpu", "vcpus", "vcore", "vcores", "c",
];
pub(crate) const GB_UNITS: &[&str] = &[
    "gb",
    "gib",
    "g",
    "gig",
    "gigs",
    "gigabyte",
    "gigabytes",
    "gbs",
];
pub(crate) const TB_UNITS: &[&str] = &["tb", "tib", "terabyte", "terabytes"];
pub(crate) const MB_UNITS: &[&str] = &["mb", "mib", "megabytes"];
pub(crate) const MEMORY_WORDS: &[&str] = &["ram", "memory", "mem"];
pub(crate) const DISK_WORDS: &[&str] = &[
    "disk", "disks", "ssd", "storage", "nvme", "drive", "volume", "hdd",
];

/// Words that are common English and must not be read as a misspelt name.
pub(crate) const PLAIN_WORDS: &[&str] = &[
    "please",
    "could",
    "would",
    "should",
    "there",
    "their",
    "these",
    "those",
    "which",
    "where",
    "while",
    "about",
    "after",
    "again",
    "other",
    "another",
    "every",
    "first",
    "second",
    "third",
    "create",
    "deploy",
    "launch",
    "provision",
    "setup",
    "start",
    "spin",
    "running",
    "runs",
    "needs",
    "need",
    "want",
    "wants",
    "like",
    "give",
    "make",
    "build",
    "plans",
    "plan",
    "small",
    "large",
    "medium",
    "cluster",
    "clusters",
    "stack",
    "stacks",
    "environment",
    "project",
    "team",
    "owner",
    "named",
    "called",
    "workspace",
    "region",
    "regions",
    "zone",
    "zones",
    "both",
    "each",
    "with",
    "without",
    "behind",
    "front",
    "separate",
    "mirror",
    "them",
    "spread",
    "across",
    "split",
    "between",
    "different",
    "highly",
    "available",
    "cheap",
    "dedicated",
    "networking",
    "network",
    "shared",
    "services",
    "service",
    "servers",
    "server",
    "nodes",
    "boxes",
    "instances",
    "machines",
    "hosts",
    "streaming",
    "replicated",
    "everything",
    "monitoring",
    "dashboards",
    "dashboard",
    "tracing",
    "logging",
    "metrics",
    "engine",
    "workflow",
    "request",
    "simple",
    "basic",
    "ready",
    "grade",
    "quick",
    "quickly",
    "right",
    "later",
    "today",
    "things",
    "thing",
    "stuff",
    "setup",
    "using",
    "based",
    "around",
    "under",
    "three",
    "seven",
    "eight",
    "twelve",
    "twenty",
    "thirty",
    "forty",
    "fifty",
];
