//! Arbitrary bytes as what ICE gathering takes from outside: an answer from a STUN
//! server (`ice::mapped_address`, reached by every datagram from a STUN server's
//! address) and ICE server URLs (`ice::ServerUrl::parse`, from the user or the
//! server's join). Neither may panic; a mapped address found is of the family the
//! packet names.
//!
//! The first byte picks how: its low bit 0, the rest is a datagram whose bytes 8 to
//! 20 are replaced by the transaction id of a request of ours (so the fuzzer gets
//! past the id check to the attributes); 1, the rest is text, one URL a line.
#![no_main]

use libfuzzer_sys::fuzz_target;
use livekit_ffi::ice::{self, ServerUrl};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let (id, request) = ice::binding_request();
        let mut packet = rest.to_vec();
        if packet.len() >= 20 {
            packet[8..20].copy_from_slice(&request[8..20]);
        }
        if let Some(addr) = ice::mapped_address(&packet, id) {
            // An XOR-MAPPED-ADDRESS of family 1 is IPv4, 2 IPv6.
            assert!(addr.is_ipv4() || addr.is_ipv6());
        }
    } else if let Ok(text) = std::str::from_utf8(rest) {
        for line in text.lines() {
            if let Ok(ServerUrl::Turn { port, .. } | ServerUrl::Stun { port, .. }) =
                ServerUrl::parse(line, "user", "secret")
            {
                assert!(port > 0);
            }
        }
    }
});
