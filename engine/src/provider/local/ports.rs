//! Loopback port blocks: ten per server, chosen once from a hash of `workspace/server`, skipping
//! blocks other servers hold or that are in use.

use super::*;

pub(super) fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind((ADDRESS, port)).is_ok()
}

pub(super) fn hash64(text: &str) -> u64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(bytes)
}

impl LocalProvider {
    /// Port bases recorded by every server under `root`.
    pub(super) fn used_port_bases(&self) -> BTreeSet<u16> {
        let mut used = BTreeSet::new();
        for ws in std::fs::read_dir(&self.root)
            .into_iter()
            .flatten()
            .flatten()
        {
            for server in std::fs::read_dir(ws.path()).into_iter().flatten().flatten() {
                if let Ok(Some(rec)) = read_json::<ServerRecord>(&server.path().join(SERVER_FILE)) {
                    used.insert(rec.port_base);
                }
            }
        }
        used
    }

    /// A free block of ports, the first one probing from the hash of `workspace/server`.
    pub(super) fn allocate_ports(&self, workspace: &str, server: &str) -> ProviderResult<u16> {
        let used = self.used_port_bases();
        let start = hash64(&format!("{workspace}/{server}")) % u64::from(PORT_BLOCKS);
        let start = u16::try_from(start).unwrap_or(0);
        for i in 0..PORT_BLOCKS {
            let block = (start + i) % PORT_BLOCKS;
            let base = PORT_START + block * PORTS_PER_SERVER;
            if used.contains(&base) {
                continue;
            }
            if (base..base + PORTS_PER_SERVER).all(port_free) {
                return Ok(base);
            }
        }
        Err(transient(format!(
            "no free block of {PORTS_PER_SERVER} loopback ports between {PORT_START} and {}",
            PORT_START + PORT_BLOCKS * PORTS_PER_SERVER - 1
        )))
    }
}
