//! A small, synchronous rtnetlink client: links (lookup, veth pairs, bridge ports, up,
//! rename, MTU, MAC, delete), addresses and the default route.
//!
//! It speaks `NETLINK_ROUTE` through `netlink-sys`'s blocking socket with messages from
//! `netlink-packet-route`, asks for an acknowledgement on every request and checks it,
//! and works in the network namespace the calling thread is in when [`Netlink::open`]
//! runs. Every failure names the operation and carries the kernel's errno.

use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL,
    NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};
use nix::errno::Errno;

/// A failed rtnetlink operation.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be made.
    #[error("cannot open a NETLINK_ROUTE socket: {0}")]
    Open(#[source] std::io::Error),
    /// Sending or receiving failed.
    #[error("{operation}: netlink socket error: {source}")]
    Io {
        /// What was being done.
        operation: String,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel refused the request.
    #[error("{operation}: {} (errno {})", errno.desc(), *errno as i32)]
    Kernel {
        /// What was being done.
        operation: String,
        /// The kernel's errno.
        errno: Errno,
    },
    /// The kernel's answer could not be decoded.
    #[error("{operation}: cannot decode the kernel's answer: {detail}")]
    Decode {
        /// What was being done.
        operation: String,
        /// The decoder's complaint.
        detail: String,
    },
    /// A named interface does not exist.
    #[error("{operation}: no network interface named {name}")]
    NoSuchLink {
        /// What was being done.
        operation: String,
        /// The interface name looked for.
        name: String,
    },
}

impl NetlinkError {
    /// The kernel errno, when the kernel refused the request.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetlinkError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, NetlinkError>;

/// An open rtnetlink connection in the network namespace it was opened in.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("fd", &self.socket.as_raw_fd())
            .finish()
    }
}

impl Netlink {
    /// Opens a `NETLINK_ROUTE` socket in the calling thread's network namespace.
    pub fn open() -> Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Open)?;
        socket.bind_auto().map_err(NetlinkError::Open)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Open)?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// Opens a `NETLINK_ROUTE` socket inside the network namespace `netns`, from a
    /// short-lived thread that enters it (the calling thread stays where it is). The
    /// socket keeps working in that namespace from any thread.
    pub fn open_in(netns: BorrowedFd<'_>) -> Result<Netlink> {
        let netns = netns.try_clone_to_owned().map_err(NetlinkError::Open)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    crate::sys::netns::enter_netns_this_thread(netns.as_fd())
                        .map_err(|errno| NetlinkError::Open(std::io::Error::from(errno)))?;
                    Netlink::open()
                })
                .join()
                .unwrap_or_else(|_| {
                    Err(NetlinkError::Open(std::io::Error::other(
                        "the thread entering the namespace panicked",
                    )))
                })
        })
    }

    /// Sends one request with `NLM_F_REQUEST | NLM_F_ACK | extra_flags`, collects the
    /// answers until the acknowledgement, and turns a negative ack into an error.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        extra_flags: u16,
        operation: &str,
    ) -> Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | extra_flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        let io_error = |source| NetlinkError::Io {
            operation: operation.to_string(),
            source,
        };
        self.socket.send(&buffer, 0).map_err(io_error)?;

        let mut answers = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(io_error)?;
            let mut offset = 0;
            while offset < datagram.len() {
                let bytes = &datagram[offset..];
                let reply =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(bytes).map_err(|e| {
                        NetlinkError::Decode {
                            operation: operation.to_string(),
                            detail: e.to_string(),
                        }
                    })?;
                let length = usize::try_from(reply.header.length).unwrap_or(0);
                if length == 0 {
                    return Err(NetlinkError::Decode {
                        operation: operation.to_string(),
                        detail: "a message of length 0".into(),
                    });
                }
                offset += (length + 3) & !3;
                if reply.header.sequence_number != sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(code) => Err(NetlinkError::Kernel {
                                operation: operation.to_string(),
                                errno: Errno::from_raw(-code.get()),
                            }),
                        };
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    NetlinkPayload::Noop | NetlinkPayload::Overrun(_) => {}
                    _ => {}
                }
            }
        }
    }

    /// The kernel's description of the link `name`, or `None` if there is none.
    fn get_link(&mut self, name: &str) -> Result<Option<LinkMessage>> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        let operation = format!("looking up interface {name}");
        match self.request(RouteNetlinkMessage::GetLink(message), 0, &operation) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link),
                _ => None,
            })),
            Err(e) if e.errno() == Some(Errno::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn require_index(&mut self, name: &str, operation: &str) -> Result<u32> {
        self.link_index(name)?
            .ok_or_else(|| NetlinkError::NoSuchLink {
                operation: operation.to_string(),
                name: name.to_string(),
            })
    }

    /// The interface index of `name`, or `None` if no such interface exists.
    pub fn link_index(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.map(|link| link.header.index))
    }

    /// Whether the interface `name` exists and is a bridge (link kind "bridge").
    pub fn is_bridge(&mut self, name: &str) -> Result<bool> {
        Ok(self
            .get_link(name)?
            .is_some_and(|link| link_kind(&link) == Some(InfoKind::Bridge)))
    }

    /// The MTU of the interface `name`, or `None` if no such interface exists.
    pub fn link_mtu(&mut self, name: &str) -> Result<Option<u32>> {
        Ok(self.get_link(name)?.and_then(|link| {
            link.attributes.iter().find_map(|a| match a {
                LinkAttribute::Mtu(mtu) => Some(*mtu),
                _ => None,
            })
        }))
    }

    /// Creates a veth pair: `host` in this namespace (down), and `peer` created directly
    /// inside the network namespace `peer_netns` (with `mtu` and `peer_mac` when given),
    /// so the peer never exists in this namespace; then brings `peer` up through a
    /// socket opened inside `peer_netns`. Fails with `EEXIST` if `host` exists here or
    /// `peer` exists there; if bringing the peer up fails, the pair is deleted again.
    pub fn create_veth_into(
        &mut self,
        host: &str,
        peer: &str,
        peer_netns: BorrowedFd<'_>,
        mtu: Option<u32>,
        peer_mac: Option<[u8; 6]>,
    ) -> Result<()> {
        let message = veth_request(host, peer, peer_netns.as_raw_fd(), mtu, peer_mac);
        self.request(
            RouteNetlinkMessage::NewLink(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("creating veth pair {host} / {peer}"),
        )?;
        // A veth end cannot be brought up before its pair is complete (ENOTCONN), so
        // the peer is brought up afterwards, from inside its namespace.
        let peer_up = Netlink::open_in(peer_netns).and_then(|mut inside| inside.set_up(peer));
        if let Err(e) = peer_up {
            let _ = self.delete_link(host);
            return Err(e);
        }
        Ok(())
    }

    fn set_link(&mut self, name: &str, operation: &str, change: LinkMessage) -> Result<()> {
        let index = self.require_index(name, operation)?;
        let mut message = change;
        message.header.index = index;
        self.request(RouteNetlinkMessage::SetLink(message), 0, operation)?;
        Ok(())
    }

    /// Makes the interface `name` a port of `bridge`.
    pub fn set_master(&mut self, name: &str, bridge: &str) -> Result<()> {
        let operation = format!("attaching {name} to bridge {bridge}");
        let bridge_index = self.require_index(bridge, &operation)?;
        let mut change = LinkMessage::default();
        change
            .attributes
            .push(LinkAttribute::Controller(bridge_index));
        self.set_link(name, &operation, change)
    }

    /// Brings the interface `name` up.
    pub fn set_up(&mut self, name: &str) -> Result<()> {
        let mut change = LinkMessage::default();
        change.header.flags = LinkFlags::Up;
        change.header.change_mask = LinkFlags::Up;
        self.set_link(name, &format!("bringing {name} up"), change)
    }

    /// Brings the interface `name` down (needed before renaming it).
    pub fn set_down(&mut self, name: &str) -> Result<()> {
        let mut change = LinkMessage::default();
        change.header.change_mask = LinkFlags::Up;
        self.set_link(name, &format!("bringing {name} down"), change)
    }

    /// Deletes the interface `name` (for a veth, the kernel removes its peer too).
    pub fn delete_link(&mut self, name: &str) -> Result<()> {
        let operation = format!("deleting interface {name}");
        let index = self.require_index(name, &operation)?;
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0, &operation)?;
        Ok(())
    }

    /// Adds the address `address/prefix_len` to the interface `ifname`.
    pub fn add_address(&mut self, ifname: &str, address: IpAddr, prefix_len: u8) -> Result<()> {
        let operation = format!("adding address {address}/{prefix_len} to {ifname}");
        let index = self.require_index(ifname, &operation)?;
        let message = address_request(index, address, prefix_len);
        self.request(
            RouteNetlinkMessage::NewAddress(message),
            NLM_F_CREATE | NLM_F_EXCL,
            &operation,
        )?;
        Ok(())
    }

    /// Adds a default route (main table) through `gateway`.
    pub fn add_default_route(&mut self, gateway: IpAddr) -> Result<()> {
        self.request(
            RouteNetlinkMessage::NewRoute(default_route_request(gateway)),
            NLM_F_CREATE | NLM_F_EXCL,
            &format!("adding a default route via {gateway}"),
        )?;
        Ok(())
    }

    /// Renames the interface `old` to `new` (the interface must be down).
    pub fn rename_link(&mut self, old: &str, new: &str) -> Result<()> {
        let mut change = LinkMessage::default();
        change
            .attributes
            .push(LinkAttribute::IfName(new.to_string()));
        self.set_link(old, &format!("renaming {old} to {new}"), change)
    }

    /// Sets the MTU of the interface `name`.
    pub fn set_mtu(&mut self, name: &str, mtu: u32) -> Result<()> {
        let mut change = LinkMessage::default();
        change.attributes.push(LinkAttribute::Mtu(mtu));
        self.set_link(name, &format!("setting the MTU of {name} to {mtu}"), change)
    }

    /// Sets the MAC address of the interface `name`.
    pub fn set_mac(&mut self, name: &str, mac: [u8; 6]) -> Result<()> {
        let mut change = LinkMessage::default();
        change.attributes.push(LinkAttribute::Address(mac.to_vec()));
        self.set_link(
            name,
            &format!("setting the MAC address of {name} to {}", format_mac(mac)),
            change,
        )
    }
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn link_kind(link: &LinkMessage) -> Option<InfoKind> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Kind(kind) => Some(kind.clone()),
            _ => None,
        }),
        _ => None,
    })
}

fn veth_request(
    host: &str,
    peer: &str,
    peer_netns_fd: i32,
    mtu: Option<u32>,
    peer_mac: Option<[u8; 6]>,
) -> LinkMessage {
    let mut peer_message = LinkMessage::default();
    peer_message
        .attributes
        .push(LinkAttribute::IfName(peer.to_string()));
    peer_message
        .attributes
        .push(LinkAttribute::NetNsFd(peer_netns_fd));
    if let Some(mtu) = mtu {
        peer_message.attributes.push(LinkAttribute::Mtu(mtu));
    }
    if let Some(mac) = peer_mac {
        peer_message
            .attributes
            .push(LinkAttribute::Address(mac.to_vec()));
    }

    let mut message = LinkMessage::default();
    message
        .attributes
        .push(LinkAttribute::IfName(host.to_string()));
    if let Some(mtu) = mtu {
        message.attributes.push(LinkAttribute::Mtu(mtu));
    }
    message.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
    ]));
    message
}

fn address_request(index: u32, address: IpAddr, prefix_len: u8) -> AddressMessage {
    let mut message = AddressMessage::default();
    message.header.index = index;
    message.header.prefix_len = prefix_len;
    message.header.family = match address {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.attributes.push(AddressAttribute::Address(address));
    if address.is_ipv4() {
        message.attributes.push(AddressAttribute::Local(address));
    }
    message
}

fn default_route_request(gateway: IpAddr) -> RouteMessage {
    let mut message = RouteMessage::default();
    message.header.address_family = match gateway {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    message.header.destination_prefix_length = 0;
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    message.header.protocol = RouteProtocol::Static;
    message.header.scope = RouteScope::Universe;
    message.header.kind = RouteType::Unicast;
    message
        .attributes
        .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn veth_request_puts_name_netns_mtu_and_mac_on_the_peer() {
        let message = veth_request(
            "vc1-abcd",
            "eth0",
            7,
            Some(1400),
            Some([0, 0x16, 0x3e, 1, 2, 3]),
        );
        assert!(message
            .attributes
            .contains(&LinkAttribute::IfName("vc1-abcd".into())));
        assert!(message.attributes.contains(&LinkAttribute::Mtu(1400)));
        let peer = message
            .attributes
            .iter()
            .find_map(|a| match a {
                LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                    LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(p))) => Some(p.clone()),
                    _ => None,
                }),
                _ => None,
            })
            .expect("peer message");
        assert!(peer
            .attributes
            .contains(&LinkAttribute::IfName("eth0".into())));
        assert!(peer.attributes.contains(&LinkAttribute::NetNsFd(7)));
        assert!(peer.attributes.contains(&LinkAttribute::Mtu(1400)));
        assert!(peer
            .attributes
            .contains(&LinkAttribute::Address(vec![0, 0x16, 0x3e, 1, 2, 3])));
        assert!(!message.header.flags.contains(LinkFlags::Up));
        assert_eq!(link_kind(&message), Some(InfoKind::Veth));
        // It serialises without panicking and round-trips through the parser.
        let mut packet = NetlinkMessage::from(RouteNetlinkMessage::NewLink(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buffer).unwrap();
        assert!(matches!(
            parsed.payload,
            NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(_))
        ));
    }

    #[test]
    fn address_and_route_requests_carry_family_and_values() {
        let a = address_request(3, IpAddr::V4(Ipv4Addr::new(10, 0, 3, 5)), 24);
        assert_eq!(a.header.family, AddressFamily::Inet);
        assert_eq!(a.header.prefix_len, 24);
        assert_eq!(a.header.index, 3);
        assert_eq!(a.attributes.len(), 2);
        let v6: IpAddr = "fd00::5".parse().unwrap();
        let a6 = address_request(3, v6, 64);
        assert_eq!(a6.header.family, AddressFamily::Inet6);
        assert_eq!(a6.attributes, vec![AddressAttribute::Address(v6)]);
        let r = default_route_request(IpAddr::V4(Ipv4Addr::new(10, 0, 3, 1)));
        assert_eq!(r.header.table, RouteHeader::RT_TABLE_MAIN);
        assert_eq!(r.header.destination_prefix_length, 0);
        assert!(r
            .attributes
            .contains(&RouteAttribute::Gateway(RouteAddress::Inet(Ipv4Addr::new(
                10, 0, 3, 1
            )))));
    }

    #[test]
    fn kernel_errors_name_the_operation_and_errno() {
        let e = NetlinkError::Kernel {
            operation: "creating veth pair a / b".into(),
            errno: Errno::from_raw(17),
        };
        assert_eq!(e.errno(), Some(Errno::EEXIST));
        assert_eq!(
            e.to_string(),
            "creating veth pair a / b: File exists (errno 17)"
        );
        assert_eq!(format_mac([0, 0x16, 0x3e, 0xab, 0, 1]), "00:16:3e:ab:00:01");
    }
}
