//! The example policy (`examples/policy.json`) and its instances' interfaces: what the
//! renderer's snapshot tests and the `netfilter` crate's kernel tests render.

use model::NicType;
use nft::{Attachment, Rendering};
use policy::State;

/// The example policy as a state.
pub(crate) fn example_state() -> State {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../examples/policy.json"
    ))
    .unwrap();
    State::from_snapshot(&policy::document::parse(&text).unwrap()).unwrap()
}

/// One intranet device per instance (`v` and its id's body), in order.
pub(crate) fn attachments(state: &State) -> Vec<Attachment> {
    let mut out: Vec<Attachment> = state
        .instances()
        .map(|i| Attachment {
            instance: i.id.clone(),
            nic_type: NicType::Intranet,
            interface: format!("v{}", &i.id.as_str()[2..]),
        })
        .collect();
    out.sort();
    out
}

/// Both renderings, with the suffix of their snapshot files.
pub(crate) const RENDERINGS: [(Rendering, &str); 2] =
    [(Rendering::Linear, ""), (Rendering::Flat, "_flat")];
