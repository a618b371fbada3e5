//! `clientCIDRs`: IPv4 and IPv6 networks (RFC 4632 / RFC 4291 prefix
//! notation), parsed once at configure time, matched against the client
//! address as Envoy computes it (the `source.address` property:
//! `1.2.3.4:5678` or `[::1]:5678`).

use std::net::{IpAddr, SocketAddr};

/// One network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `2001:db8::/32`, or one address (a full-length
    /// prefix). Host bits set below the prefix are an error (`10.0.0.1/8`),
    /// as a likely typo.
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text, None),
        };
        let network: IpAddr = addr.parse().map_err(|_| {
            format!("{text:?} is not an IPv4 or IPv6 network (10.0.0.0/8, 2001:db8::/32)")
        })?;
        let max: u8 = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{text:?}: the prefix length is 0 to {max}")),
            },
        };
        let cidr = Cidr { network, prefix };
        if cidr.masked(network) != bits(network) {
            return Err(format!(
                "{text:?} has bits set past its /{prefix} prefix (write the network address)"
            ));
        }
        Ok(cidr)
    }

    fn masked(&self, addr: IpAddr) -> u128 {
        let width: u32 = if addr.is_ipv4() { 32 } else { 128 };
        let shift = width.saturating_sub(u32::from(self.prefix));
        let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
        bits(addr) & mask
    }

    /// Whether `addr` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:1.2.3.4`) is its IPv4 address.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        addr.is_ipv4() == self.network.is_ipv4() && self.masked(addr) == bits(self.network)
    }
}

fn bits(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of Envoy's `source.address` (`ip:port`, `[v6]:port`, or an
/// address alone); `None` for anything else (a pipe path).
pub fn client_address(source: &str) -> Option<IpAddr> {
    source
        .parse::<SocketAddr>()
        .map(|s| s.ip())
        .or_else(|_| source.parse::<IpAddr>())
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_networks_match_by_prefix() {
        let net = Cidr::parse("198.51.100.0/24").unwrap();
        assert!(net.contains(ip("198.51.100.7")));
        assert!(!net.contains(ip("198.51.101.7")));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains(ip("1.2.3.4")));
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::1")));
        let one = Cidr::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
    }

    #[test]
    fn ipv6_networks_match_and_mapped_ipv4_is_ipv4() {
        let net = Cidr::parse("2001:db8::/32").unwrap();
        assert!(net.contains(ip("2001:db8:1::5")));
        assert!(!net.contains(ip("2001:db9::5")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("::1")));
        assert!(Cidr::parse("10.0.0.0/8")
            .unwrap()
            .contains(ip("::ffff:10.1.2.3")));
    }

    #[test]
    fn bad_networks_are_refused() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "10.0.0/8",
            "x",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn envoy_source_addresses_are_read() {
        assert_eq!(client_address("127.0.0.1:5555"), Some(ip("127.0.0.1")));
        assert_eq!(client_address("[::1]:5555"), Some(ip("::1")));
        assert_eq!(client_address("::1"), Some(ip("::1")));
        assert_eq!(client_address("/tmp/sock"), None);
        assert_eq!(client_address(""), None);
    }
}
