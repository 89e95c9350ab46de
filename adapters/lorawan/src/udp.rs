//! The forwarders' UDP socket: bound with a receive buffer sized for bursts, and the kernel's count
//! of datagrams it dropped at this socket (buffer full), so no loss goes unseen.
//!
//! The drop count is the `drops` column of `/proc/net/udp` (`udp6` for IPv6) on the row whose
//! inode is this socket's (from the `/proc/self/fd` link), the same figure `ss -u -m` shows.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::UdpSocket;

pub struct Bound {
    pub socket: UdpSocket,
    /// What the kernel granted (Linux reports twice the usable size it books).
    pub receive_buffer: usize,
    inode: Option<u64>,
    v6: bool,
}

/// Binds `addr` with a receive buffer of `want` bytes (the kernel may grant less).
pub fn bind(addr: SocketAddr, want: usize) -> std::io::Result<Bound> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    // best effort: past net.core.rmem_max the kernel caps it, which the granted size shows
    let _ = s.set_recv_buffer_size(want);
    s.bind(&addr.into())?;
    s.set_nonblocking(true)?;
    let receive_buffer = s.recv_buffer_size().unwrap_or(0);
    let std: std::net::UdpSocket = s.into();
    let inode = socket_inode(std.as_raw_fd());
    Ok(Bound {
        socket: UdpSocket::from_std(std)?,
        receive_buffer,
        inode,
        v6: addr.is_ipv6(),
    })
}

impl Bound {
    /// Datagrams the kernel dropped at this socket since it was bound; None where the kernel does
    /// not say (no procfs).
    pub fn kernel_drops(&self) -> Option<u64> {
        let table = std::fs::read_to_string(if self.v6 {
            "/proc/net/udp6"
        } else {
            "/proc/net/udp"
        })
        .ok()?;
        drops_of(&table, self.inode?)
    }
}

fn socket_inode(fd: i32) -> Option<u64> {
    let link = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
    let s = link.to_str()?;
    s.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
}

/// The `drops` (last) column of the row with this inode (the tenth column).
fn drops_of(table: &str, inode: u64) -> Option<u64> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(9)?.parse::<u64>().ok()? == inode).then(|| f.last()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_drops_column_of_our_row() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
          1: 0100007F:A5F1 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4242 2 0000000000000000 17\n\
          2: 0100007F:A5F2 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 4243 2 0000000000000000 0\n";
        assert_eq!(drops_of(t, 4242), Some(17));
        assert_eq!(drops_of(t, 4243), Some(0));
        assert_eq!(drops_of(t, 1), None);
        assert_eq!(drops_of("garbage\nno columns here\n", 4242), None);
    }

    #[tokio::test]
    async fn a_bound_socket_finds_its_own_row() {
        let b = bind("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        assert!(b.receive_buffer >= 4096, "{}", b.receive_buffer);
        assert_eq!(b.kernel_drops(), Some(0));
    }
}
