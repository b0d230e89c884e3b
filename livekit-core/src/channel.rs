//! The two data channels a LiveKit client opens on its publisher connection and
//! the size cap of one message on them.
//!
//! Both the send side ([`crate::outbox`]) and whoever reads received packets need
//! the same names and kinds, so they are defined once here.

use crate::packet::data_packet::Kind;

/// Hard cap on one data channel message, whatever the SDP allows.
pub const MAX_MESSAGE_SIZE: usize = 64_000;

/// Which data channel a packet travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    /// `_reliable`: ordered, retransmitted, numbered for resends and deduplication.
    Reliable,
    /// `_lossy`: unordered, never retransmitted, not numbered.
    Lossy,
}

impl DataKind {
    /// Both kinds, reliable first.
    pub const ALL: [DataKind; 2] = [DataKind::Reliable, DataKind::Lossy];

    /// The data channel's label.
    pub fn label(self) -> &'static str {
        match self {
            DataKind::Reliable => "_reliable",
            DataKind::Lossy => "_lossy",
        }
    }

    /// The kind with this data channel label, if it is one of ours.
    pub fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.label() == label)
    }

    /// The `DataPacket.kind` a packet on this channel carries.
    pub fn packet_kind(self) -> Kind {
        match self {
            DataKind::Reliable => Kind::Reliable,
            DataKind::Lossy => Kind::Lossy,
        }
    }

    /// The kind a `DataPacket.kind` (or a link packet's kind) names; anything but
    /// lossy is reliable, as the protocol's default.
    pub fn from_packet_kind(kind: i32) -> Self {
        if kind == Kind::Lossy as i32 {
            DataKind::Lossy
        } else {
            DataKind::Reliable
        }
    }

    /// Index of the kind, for per-channel arrays (reliable 0, lossy 1).
    pub(crate) fn index(self) -> usize {
        match self {
            DataKind::Reliable => 0,
            DataKind::Lossy => 1,
        }
    }
}

#[cfg(any(test, feature = "selftest"))]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    fn labels_name_the_channels_both_ways() {
        for k in DataKind::ALL {
            assert_eq!(DataKind::from_label(k.label()), Some(k));
            assert_eq!(DataKind::ALL[k.index()], k);
        }
        assert_eq!(DataKind::from_label("_data_track"), None);
        assert_eq!(DataKind::Lossy.packet_kind(), Kind::Lossy);
    }

    /// Every test above, for the bare-metal runner (`selftest` feature).
    pub(crate) const TESTS: &[(&str, fn())] = &[(
        "labels_name_the_channels_both_ways",
        labels_name_the_channels_both_ways,
    )];
}
