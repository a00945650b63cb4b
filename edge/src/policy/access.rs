//! `allow` and `deny` address lists (CIDR blocks). `deny` wins; a non-empty `allow` admits
//! only its addresses. A request whose address is unknown (no peer address) is refused when
//! either list is set, as nginx's `deny all` after `allow` would.

use std::net::IpAddr;

use stratus_config::IpRange;

/// A site's address lists.
#[derive(Debug)]
pub(super) struct Access {
    allow: Vec<IpRange>,
    deny: Vec<IpRange>,
}

impl Access {
    pub(super) fn new(allow: &[IpRange], deny: &[IpRange]) -> Self {
        Self { allow: allow.to_vec(), deny: deny.to_vec() }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.allow.is_empty() && self.deny.is_empty()
    }

    /// Whether `client` may be served.
    pub(super) fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.is_empty() {
            return true;
        }
        let Some(ip) = client else { return false };
        if self.deny.iter().any(|r| r.contains(ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|r| r.contains(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(list: &[&str]) -> Vec<IpRange> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn deny_wins_and_allow_restricts() {
        let a = Access::new(&ranges(&["10.0.0.0/8", "2001:db8::/32"]), &ranges(&["10.6.6.0/24"]));
        let check = |ip: &str, want: bool| assert_eq!(a.allows(Some(ip.parse().unwrap())), want, "{ip}");
        check("10.1.2.3", true);
        check("10.6.6.6", false);
        check("192.0.2.1", false);
        check("2001:db8::1", true);
        check("::ffff:10.1.2.3", true);
        assert!(!a.allows(None));
        let open = Access::new(&[], &[]);
        assert!(open.allows(None));
        let deny_only = Access::new(&[], &ranges(&["192.0.2.0/24"]));
        assert!(deny_only.allows(Some("198.51.100.1".parse().unwrap())));
        assert!(!deny_only.allows(Some("192.0.2.9".parse().unwrap())));
    }
}
