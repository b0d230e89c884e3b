//! Names of STUN and TURN servers, resolved once for every peer connection of the
//! process: each connection asks for the same few servers, a lookup can take
//! seconds (and holds a thread and a socket meanwhile), and a storm of joins must
//! not become a storm of DNS queries. One lookup per name is in flight at a time;
//! its answer, addresses or none, is kept for a minute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::OnceCell;

/// How long an answer is used before the name is looked up again.
const KEEP: Duration = Duration::from_secs(60);

type Entry = Arc<OnceCell<(Instant, Vec<SocketAddr>)>>;

fn cache() -> &'static Mutex<HashMap<(String, u16), Entry>> {
    static CACHE: OnceLock<Mutex<HashMap<(String, u16), Entry>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The addresses of `host` (a name or an IP literal) at `port`; empty when it does
/// not resolve.
pub async fn lookup(host: &str, port: u16) -> Vec<SocketAddr> {
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse() {
        return vec![SocketAddr::new(ip, port)];
    }
    let key = (host.to_ascii_lowercase(), port);
    let entry = {
        let mut cache = cache().lock();
        let fresh = cache
            .get(&key)
            .is_some_and(|e| e.get().is_none_or(|(at, _)| at.elapsed() < KEEP));
        if !fresh {
            cache.insert(key.clone(), Arc::new(OnceCell::new()));
        }
        cache.get(&key).cloned().unwrap_or_default()
    };
    let (_, addrs) = entry
        .get_or_init(|| async {
            let found = match tokio::net::lookup_host((key.0.as_str(), port)).await {
                Ok(a) => a.collect(),
                Err(e) => {
                    log::warn!("cannot resolve {}: {e}", key.0);
                    Vec::new()
                }
            };
            (Instant::now(), found)
        })
        .await;
    addrs.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literals_need_no_lookup_and_names_are_kept() {
        assert_eq!(
            lookup("10.1.2.3", 3478).await,
            vec!["10.1.2.3:3478".parse().unwrap()]
        );
        assert_eq!(
            lookup("[2001:db8::1]", 443).await,
            vec!["[2001:db8::1]:443".parse().unwrap()]
        );
        let first = lookup("localhost", 3478).await;
        assert!(first
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 3478));
        assert!(cache().lock().contains_key(&("localhost".into(), 3478)));
        assert_eq!(lookup("LOCALHOST", 3478).await, first);
    }
}
