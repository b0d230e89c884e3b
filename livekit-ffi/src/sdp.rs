//! The few facts the engine reads from an SDP: its m-lines and their mids, the
//! transport a BUNDLE shares, and the data channel message size limit.
//!
//! str0m parses descriptions for itself; these scans only answer the questions it
//! does not (which m-line a trickled candidate belongs to).

use crate::data::MAX_MESSAGE_SIZE;

/// One media section of an SDP: its position and its `a=mid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MLine {
    pub index: u32,
    pub mid: String,
}

/// The m-lines of `sdp`, in order, with their mids (empty when a section has none).
pub fn m_lines(sdp: &str) -> Vec<MLine> {
    let mut out: Vec<MLine> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            out.push(MLine {
                index: out.len() as u32,
                mid: String::new(),
            });
        } else if let Some(mid) = line.strip_prefix("a=mid:") {
            if let Some(last) = out.last_mut() {
                last.mid = mid.trim().to_owned();
            }
        }
    }
    out
}

/// The m-line whose transport every bundled section shares: the first mid of the
/// `a=group:BUNDLE` line that names a section of this SDP, or the first section.
/// Our candidates are trickled for it, with its mid and its own index.
pub fn transport_line(sdp: &str) -> Option<MLine> {
    let lines = m_lines(sdp);
    let bundled = sdp
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("a=group:BUNDLE"))
        .into_iter()
        .flat_map(str::split_whitespace)
        .find_map(|mid| lines.iter().find(|m| m.mid == mid));
    bundled.or_else(|| lines.first()).cloned()
}

/// Whether `mid` names a section of `sdp`.
pub fn has_mid(sdp: &str, mid: &str) -> bool {
    m_lines(sdp).iter().any(|m| m.mid == mid)
}

/// Reads `a=max-message-size`; absent means the RFC 8841 default of 64 KiB, and 0
/// means "no limit" (we still cap at [`MAX_MESSAGE_SIZE`]).
pub fn max_message_size(sdp: &str) -> usize {
    let value = sdp
        .lines()
        .find_map(|l| l.trim().strip_prefix("a=max-message-size:"))
        .and_then(|v| v.trim().parse::<usize>().ok());
    match value {
        Some(0) | None => MAX_MESSAGE_SIZE,
        Some(v) => v.min(MAX_MESSAGE_SIZE),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An offer as the server sends it once media arrives: audio first, then data,
    /// bundled with the data section as the tag.
    pub(crate) const THREE_SECTIONS: &str = "v=0\r\n\
        o=- 1 2 IN IP4 127.0.0.1\r\n\
        s=-\r\n\
        t=0 0\r\n\
        a=group:BUNDLE 1 0 2\r\n\
        m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n\
        a=mid:0\r\n\
        m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n\
        a=mid:1\r\n\
        a=max-message-size:16384\r\n\
        m=video 9 UDP/TLS/RTP/SAVPF 96\r\n\
        a=mid:2\r\n";

    #[test]
    fn sections_and_mids_are_read_in_order() {
        let lines = m_lines(THREE_SECTIONS);
        let mids: Vec<_> = lines.iter().map(|m| (m.index, m.mid.as_str())).collect();
        assert_eq!(mids, vec![(0, "0"), (1, "1"), (2, "2")]);
        assert!(has_mid(THREE_SECTIONS, "2"));
        assert!(!has_mid(THREE_SECTIONS, "3"));
    }

    #[test]
    fn the_transport_is_the_bundle_tag_with_its_own_index() {
        assert_eq!(
            transport_line(THREE_SECTIONS),
            Some(MLine {
                index: 1,
                mid: "1".into()
            })
        );
        // Without a BUNDLE group, the first section.
        let plain = "v=0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:data\r\n";
        assert_eq!(transport_line(plain).unwrap().mid, "data");
        assert_eq!(transport_line("v=0\r\n"), None);
    }

    #[test]
    fn max_message_size_comes_from_sdp() {
        assert_eq!(max_message_size(THREE_SECTIONS), 16384);
        assert_eq!(
            max_message_size("a=max-message-size:262144"),
            MAX_MESSAGE_SIZE
        );
        assert_eq!(max_message_size("v=0"), MAX_MESSAGE_SIZE);
        assert_eq!(max_message_size("a=max-message-size:0"), MAX_MESSAGE_SIZE);
    }
}
