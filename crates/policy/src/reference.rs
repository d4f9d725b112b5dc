//! The reference evaluator: DESIGN.md §4 written as directly as possible.
//!
//! For every question it collects the instance's rules of the stage's direction and
//! interface, sorts them, and scans for the first match. It is slow and plain on purpose:
//! no index, no cache, nothing to get wrong. The compiled evaluator is tested against it.

use model::{Direction, GroupType, InnerAccessPolicy, Instance, NicType, Policy, SecurityGroupId};

use crate::flow::{Decider, Decision, Evaluator, StageQuery};
use crate::state::{Change, PolicyError, Snapshot, State};

/// Evaluates by sorting and scanning the rules at every question.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    state: State,
}

impl Reference {
    /// Builds from a snapshot.
    pub fn new(snapshot: &Snapshot) -> Result<Reference, PolicyError> {
        Ok(Reference {
            state: State::from_snapshot(snapshot)?,
        })
    }

    /// Applies a change (there is nothing to maintain besides the state).
    pub fn apply(&mut self, change: &Change) -> Result<(), PolicyError> {
        self.state.apply(change)
    }
}

impl Evaluator for Reference {
    fn state(&self) -> &State {
        &self.state
    }

    fn decide<'a>(&'a self, q: &StageQuery<'_>) -> Result<Decision<'a>, PolicyError> {
        let state = &self.state;
        let instance = state.instance(q.instance)?;
        // Steps 2 and 3: this direction's and interface's rules of all the instance's groups,
        // by priority, then drop before accept, then group position, then age.
        let rules =
            state.ordered_permissions(&instance.security_groups, q.direction, q.nic_type)?;
        // Step 4: the first rule that matches every field decides.
        let packet = &q.packet;
        for (group, p) in rules {
            if state.protocol_matches(
                p,
                packet.protocol,
                packet.source_port,
                packet.destination_port,
            ) && p.local_contains(packet.local)
                && state.peer_contains(p, packet.peer)
            {
                return Ok(Decision {
                    verdict: p.policy,
                    decided_by: Decider::Rule {
                        group,
                        rule: &p.id,
                        priority: p.priority,
                        policy: p.policy,
                    },
                });
            }
        }
        // Step 5: the defaults.
        Ok(default_decision(
            state,
            instance,
            q.direction,
            q.nic_type,
            |g| state.address_in_group(packet.peer, g),
        ))
    }
}

/// The default decision for a stage at `instance` when no rule matched.
///
/// Basic groups: egress is accepted; ingress over the intranet from an address of a member of
/// one of the instance's groups whose `InnerAccessPolicy` is `Accept` is accepted (the first
/// such group in the instance's list is named); other ingress is dropped. Enterprise groups:
/// both directions are dropped. Basic and enterprise groups never mix on one instance, so the
/// first group's type is the instance's.
fn default_decision<'a>(
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
