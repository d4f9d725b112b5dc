//! The implicit rules that decide when no explicit rule matches (DESIGN.md §4, step 5).
//!
//! Shared by both evaluators: it is a handful of lines taken straight from the semantics, and
//! each evaluator supplies its own way of answering "is this address in that group".

use model::{Direction, GroupType, InnerAccessPolicy, Instance, NicType, Policy, SecurityGroupId};

use crate::flow::{Decider, Decision};
use crate::state::State;

/// The default decision for a stage at `instance` when no rule matched.
///
/// Basic groups: egress is accepted; ingress over the intranet from an address of a member of
/// one of the instance's groups whose `InnerAccessPolicy` is `Accept` is accepted (the first
/// such group in the instance's list is named); other ingress is dropped. Enterprise groups:
/// both directions are dropped. Basic and enterprise groups never mix on one instance, so the
/// first group's type is the instance's.
pub(crate) fn default_decision<'a>(
    state: &'a State,
    instance: &'a Instance,
    direction: Direction,
    nic_type: NicType,
    peer_in_group: impl Fn(&SecurityGroupId) -> bool,
) -> Decision<'a> {
    let groups = || {
        instance
            .security_groups
            .iter()
            .filter_map(|g| state.group(g).ok())
    };
    let enterprise = groups()
        .next()
        .is_some_and(|g| g.group.group_type == GroupType::Enterprise);
    match direction {
        Direction::Egress if enterprise => Decision {
            verdict: Policy::Drop,
            decided_by: Decider::DefaultEgress,
        },
        Direction::Egress => Decision {
            verdict: Policy::Accept,
            decided_by: Decider::DefaultEgress,
        },
        Direction::Ingress => {
            let inner = (!enterprise && nic_type == NicType::Intranet)
                .then(|| {
                    groups().find(|g| {
                        g.group.inner_access() == InnerAccessPolicy::Accept
                            && peer_in_group(&g.group.id)
                    })
                })
                .flatten();
            match inner {
                Some(g) => Decision {
                    verdict: Policy::Accept,
                    decided_by: Decider::InnerAccessPolicy(&g.group.id),
                },
                None => Decision {
                    verdict: Policy::Drop,
                    decided_by: Decider::DefaultIngress,
                },
            }
        }
    }
}
