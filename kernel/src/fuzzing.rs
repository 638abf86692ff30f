//! Fuzzing entry points. The cargo-fuzz targets in `fuzz/` are one-line wrappers over these, and
//! `cargo test` replays the checked-in corpus through them on stable Rust.

use crate::config::Config;
use crate::ids::NodeId;
use crate::io::{Input, Node};
use crate::log::{AcceptorSet, GroupGenesis};
use crate::storage::Restored;
use crate::time::Time;
use crate::wire::{decode, encode};
use crate::{Acceptor, Device};

/// Decodes arbitrary bytes; anything that decodes must re-encode to the same bytes.
pub fn decode_message(bytes: &[u8]) {
    let limit = Config::default().message_bytes_max;
    if let Ok(envelope) = decode(bytes, limit) {
        let again = encode(&envelope, limit).expect("a decoded message re-encodes within the limit");
        assert_eq!(decode(&again, limit).as_ref(), Ok(&envelope), "decode(encode(m)) == m");
    }
}

/// Feeds arbitrary frames, split on `0xff 0xff`, to an acceptor and a device that host a group.
/// Nothing may panic.
pub fn handle_frames(bytes: &[u8]) {
    let config = Config::default().validate().expect("default config is valid");
    let acceptors = AcceptorSet::new((1..=3).map(NodeId::from_index).collect(), 16).expect("three acceptors");
    let genesis = GroupGenesis { nonce: 0, acceptors, proposers: vec![NodeId::from_index(10)] };
    let (mut acceptor, _) = Acceptor::new(config.clone(), NodeId::from_index(1), 1, Restored::empty());
    let (mut device, _) = Device::new(config, NodeId::from_index(10), 2, Restored::empty());
    device.handle(Time(0), Input::Command(crate::Command::OpenGroup { genesis }));
    for (i, frame) in bytes.split(|b| *b == 0xff).enumerate() {
        let from = NodeId::from_index((i % 4) as u64 + 1);
        let now = Time(i as u64);
        acceptor.handle(now, Input::Received { from, frame: frame.to_vec() });
        device.handle(now, Input::Received { from, frame: frame.to_vec() });
    }
}
