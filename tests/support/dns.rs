//! A DNS server on 127.0.0.1 (UDP) whose A records the test changes; answers are built with
//! hickory-proto.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::task::JoinHandle;

/// A DNS server on 127.0.0.1 (UDP) with A records the test sets; every answer has a TTL of
/// one second. Names without records get NXDOMAIN (no SOA, so nobody caches the denial).
pub struct DnsServer {
    pub addr: SocketAddr,
    records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>>,
    task: JoinHandle<()>,
}

impl DnsServer {
    pub async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.expect("bind dns");
        let addr = socket.local_addr().expect("dns address");
        let records: Arc<Mutex<HashMap<String, Vec<Ipv4Addr>>>> = Arc::default();
        let r = records.clone();
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            while let Ok((n, peer)) = socket.recv_from(&mut buf).await {
                let Ok(query) = Message::from_vec(&buf[..n]) else { continue };
                let reply = dns_answer(&query, &r.lock().expect("lock"));
                if let Ok(bytes) = reply.to_vec() {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
        });
        Self { addr, records, task }
    }

    /// Points `name` at `ips` (empty: the name does not exist).
    pub fn set(&self, name: &str, ips: &[&str]) {
        let ips = ips.iter().map(|ip| ip.parse().expect("ipv4")).collect::<Vec<_>>();
        let mut records = self.records.lock().expect("lock");
        if ips.is_empty() {
            records.remove(name);
        } else {
            records.insert(name.to_owned(), ips);
        }
    }

    /// Stops answering: queries go unanswered from now on.
    pub fn stop(&self) {
        self.task.abort();
    }
}

fn dns_answer(query: &Message, records: &HashMap<String, Vec<Ipv4Addr>>) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.authoritative = true;
    for q in &query.queries {
        reply.add_query(q.clone());
        let name = q.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
        match records.get(&name) {
            None => reply.metadata.response_code = ResponseCode::NXDomain,
            Some(ips) if q.query_type() == RecordType::A => {
                for ip in ips {
                    reply.add_answer(Record::from_rdata(q.name().clone(), 1, RData::A(A(*ip))));
                }
            }
            // The name exists, but has no records of this type (AAAA): an empty answer.
            Some(_) => {}
        }
    }
    reply
}
