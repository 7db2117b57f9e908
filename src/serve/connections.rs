//! Connections per client address: one address may hold only so many of the server's
//! connections, so idle sockets opened from one machine cannot lock everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpStream;
use tracing::debug;

/// The open connections of each client address.
#[derive(Debug, Clone)]
pub struct ClientSlots {
    limit: usize,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One connection's place; given back when dropped.
#[derive(Debug)]
pub struct ClientSlot {
    address: IpAddr,
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl ClientSlots {
    pub fn new(limit: usize) -> Self {
        Self {
            limit,
            open: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A place for one more connection from `address`, unless it holds `limit` already.
    pub fn try_take(&self, address: IpAddr) -> Option<ClientSlot> {
        let mut open = lock(&self.open);
        let count = open.entry(address).or_default();
        if *count >= self.limit {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            address,
            open: self.open.clone(),
        })
    }

    /// Connections open from `address`.
    pub fn open_from(&self, address: IpAddr) -> usize {
        lock(&self.open).get(&address).copied().unwrap_or(0)
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut open = lock(&self.open);
        if let Some(count) = open.get_mut(&self.address) {
            *count -= 1;
            if *count == 0 {
                // Forget the address, so that the map holds only addresses with connections.
                open.remove(&self.address);
            }
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// Answers a connection over its address's limit with 429 (as far as the socket takes it at
/// once, never waiting) and closes it.
pub fn refuse(stream: TcpStream, limit: usize) {
    let body = serde_json::json!({
        "error": format!(
            "too many connections from your address (at most {limit}); close some and retry"
        )
    })
    .to_string();
    let response = format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if let Err(e) = stream.try_write(response.as_bytes()) {
        debug!("could not tell a refused connection why: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_is_capped_and_others_are_not_affected() {
        let slots = ClientSlots::new(2);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.1".parse().unwrap();
        let first = slots.try_take(a).unwrap();
        let _second = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
        let _other = slots.try_take(b).unwrap();
        drop(first);
        assert_eq!(slots.open_from(a), 1);
        let _again = slots.try_take(a).unwrap();
        assert!(slots.try_take(a).is_none());
    }
}
