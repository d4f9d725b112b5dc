//! The API's actions: the closed [`Action`] type, parsed from (`Version`, `Action`) in one
//! place, and [`execute`], one flat match from action to its handler in the resource module
//! that owns it. Each handler parses its parameters into typed values, runs on the control
//! plane through a [`Call`], and shapes the ECS response (lists wrapped as
//! `{"SecurityGroups":{"SecurityGroup":[...]}}`, empty fields as `""`).
//!
//! Adding an action: one line in the [`actions!`] table (name and handler, under its
//! product), one function in the resource module, one test (see ARCHITECTURE.md).

pub(crate) mod analysis;
mod groups;
mod hits;
mod instances;
mod interfaces;
mod options;
mod placement;
mod port_range_lists;
mod prefix_lists;
mod region;
#[rustfmt::skip]
mod request_parameters;
mod rules;
mod tags;
mod vpc;

use control::InstanceStatus::{Running, Stopped};
use control::{ClientToken, Ctx, Tx};
use model::Direction::{Egress, Ingress};
use serde_json::{json, Value};

use crate::error::{Result, ServerError};
use crate::wire::Params;
use crate::AppState;

pub(crate) use instances::{target, Target};

/// The product an action belongs to, named by the request's `Version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Product {
    /// ECS, `2014-05-26` (and Stockade's own analysis actions).
    Ecs,
    /// VPC, `2016-04-28`.
    Vpc,
}

impl Product {
    /// The `Version` that names the product.
    pub fn version(self) -> &'static str {
        match self {
            Product::Ecs => crate::ECS_VERSION,
            Product::Vpc => crate::VPC_VERSION,
        }
    }
}

/// Declares [`Action`] once: each action's wire name (the variant's name, or the string
/// after `as` where two products share one, like the VPC product's `TagResources`), its
/// product, and the handler [`execute`] runs for it.
macro_rules! actions {
    ($($product:ident { $($name:ident $(as $wire:literal)? => $handler:expr,)* })*) => {
        /// Every action the API serves.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Action {
            $($(
                #[doc = concat!("`", stringify!($name), "`.")]
                $name,
            )*)*
        }

        impl Action {
            /// Every action.
            pub const ALL: &'static [Action] = &[$($(Action::$name,)*)*];

            /// The wire name (`Action=...`).
            pub fn name(self) -> &'static str {
                match self { $($(Action::$name => wire_name!($name $(, $wire)?),)*)* }
            }

            /// The product whose `Version` serves it.
            pub fn product(self) -> Product {
                match self { $($(Action::$name => Product::$product,)*)* }
            }
        }

        /// Runs one action for an authenticated caller: the handler its declaration names.
        pub(crate) fn execute(call: &Call) -> Result<Reply> {
            let handler: Handler = match call.action {
                $($(Action::$name => $handler,)*)*
            };
            // A command refuses unread parameters before it writes (`command_with`); this
            // catches the reads, after which nothing is left to undo.
            let reply = handler(call)?;
            call.refuse_unread()?;
            Ok(reply)
        }
    };
}

/// An action's wire name: the one given, or its variant's name.
macro_rules! wire_name {
    ($name:ident) => {
        stringify!($name)
    };
    ($name:ident, $wire:literal) => {
        $wire
    };
}

/// What runs an action.
type Handler = fn(&Call) -> Result<Reply>;

actions! {
    Ecs {
        DescribeRegions => region::describe_regions,
        DescribeZones => region::describe_zones,
        DescribeAccountAttributes => region::describe_account_attributes,
        CreateSecurityGroup => groups::create,
        DeleteSecurityGroup => groups::delete,
        DescribeSecurityGroups => groups::describe,
        DescribeSecurityGroupAttribute => groups::describe_attribute,
        ModifySecurityGroupAttribute => groups::modify_attribute,
        ModifySecurityGroupPolicy => groups::modify_policy,
        DescribeSecurityGroupReferences => groups::describe_references,
        AuthorizeSecurityGroup => |call| rules::authorize(call, Ingress),
        AuthorizeSecurityGroupEgress => |call| rules::authorize(call, Egress),
        RevokeSecurityGroup => |call| rules::revoke(call, Ingress),
        RevokeSecurityGroupEgress => |call| rules::revoke(call, Egress),
        ModifySecurityGroupRule => |call| rules::modify(call, Ingress),
        ModifySecurityGroupEgressRule => |call| rules::modify(call, Egress),
        RunInstances => |call| instances::create(call, true),
        CreateInstance => |call| instances::create(call, false),
        DescribeInstances => instances::describe,
        DescribeInstanceAttribute => instances::describe_attribute,
        DescribeInstanceStatus => instances::describe_status,
        DescribeUserData => instances::describe_user_data,
        DescribeInstanceRamRole => |call| instances::describe_per_instance(
            call, "InstanceRamRoleSets", "InstanceRamRoleSet", instances::NO_RAM_ROLE),
        DescribeInstanceMaintenanceAttributes => |call| instances::describe_per_instance(
            call, "MaintenanceAttributes", "MaintenanceAttribute", instances::MAINTENANCE),
        DescribeInstanceAttachmentAttributes => |call| instances::describe_per_instance(
            call, "Instances", "Instance", instances::ATTACHMENT),
        DescribeDisks => instances::describe_disks,
        DescribeInstanceTypes => instances::describe_instance_types,
        StartInstance => |call| instances::set_status(call, Running),
        StopInstance => |call| instances::set_status(call, Stopped),
        DeleteInstance => instances::delete,
        StartInstances => |call| instances::set_status_all(call, Running),
        StopInstances => |call| instances::set_status_all(call, Stopped),
        RebootInstance => |call| instances::reboot(call, false),
        RebootInstances => |call| instances::reboot(call, true),
        DeleteInstances => instances::delete_all,
        ModifyInstanceAttribute => instances::modify_attribute,
        JoinSecurityGroup => instances::join,
        CreateNetworkInterface => interfaces::create,
        DeleteNetworkInterface => interfaces::delete,
        AttachNetworkInterface => interfaces::attach,
        DetachNetworkInterface => interfaces::detach,
        DescribeNetworkInterfaces => interfaces::describe,
        DescribeNetworkInterfaceAttribute => interfaces::describe_attribute,
        ModifyNetworkInterfaceAttribute => interfaces::modify,
        AssignIpv6Addresses => interfaces::assign_ipv6,
        AssignPrivateIpAddresses => interfaces::assign_private_ips,
        UnassignPrivateIpAddresses => interfaces::unassign_private_ips,
        UnassignIpv6Addresses => interfaces::unassign_ipv6,
        CreatePrefixList => prefix_lists::create,
        ModifyPrefixList => prefix_lists::modify,
        DeletePrefixList => prefix_lists::delete,
        DescribePrefixLists => prefix_lists::describe,
        DescribePrefixListAttributes => prefix_lists::describe_attributes,
        DescribePrefixListAssociations => prefix_lists::describe_associations,
        CreatePortRangeList => port_range_lists::create,
        ModifyPortRangeList => port_range_lists::modify,
        DeletePortRangeList => port_range_lists::delete,
        DescribePortRangeLists => port_range_lists::describe,
        DescribePortRangeListEntries => port_range_lists::describe_entries,
        DescribePortRangeListAssociations => port_range_lists::describe_associations,
        LeaveSecurityGroup => instances::leave,
        TagResources => tags::tag,
        UntagResources => tags::untag,
        ListTagResources => tags::list,
        AddTags => tags::add,
        RemoveTags => tags::remove,
        DescribeTags => tags::describe,
        JoinResourceGroup => tags::join_resource_group,
        ModifyInstanceVpcAttribute => instances::modify_vpc,
        AllocatePublicIpAddress => instances::allocate_public_ip,
        DescribeFlowVerdict => analysis::flow_verdict,
        DescribeSecurityGroupAudit => analysis::audit,
        DescribeSecurityGroupRuleHits => hits::describe,
        DescribeInstanceExposure => analysis::exposure,
        DescribeReachability => analysis::reachability,
        PreviewSecurityGroupChange => preview,
        PlaceNetworkInterface => |call| placement::place(call, true),
        UnplaceNetworkInterface => |call| placement::place(call, false),
        DescribeNetworkInterfacePlacements => placement::describe,
        IssueAgentToken => placement::issue_agent_token,
        RevokeAgentToken => placement::revoke_agent_token,
        // The VPC actions the ECS API still documents under its own version (older SDK code
        // calls them there): the VPC product's handlers.
        EcsCreateVpc as "CreateVpc" => vpc::create_vpc,
        EcsDescribeVpcs as "DescribeVpcs" => vpc::describe_vpcs,
        EcsModifyVpcAttribute as "ModifyVpcAttribute" => vpc::modify_vpc_attribute,
        EcsDeleteVpc as "DeleteVpc" => vpc::delete_vpc,
        EcsCreateVSwitch as "CreateVSwitch" => vpc::create_vswitch,
        EcsDescribeVSwitches as "DescribeVSwitches" => vpc::describe_vswitches,
        EcsModifyVSwitchAttribute as "ModifyVSwitchAttribute" => vpc::modify_vswitch_attribute,
        EcsDeleteVSwitch as "DeleteVSwitch" => vpc::delete_vswitch,
    }
    Vpc {
        CreateVpc => vpc::create_vpc,
        DescribeVpcs => vpc::describe_vpcs,
        DescribeVpcAttribute => vpc::describe_vpc_attribute,
        DeleteVpc => vpc::delete_vpc,
        CreateVSwitch => vpc::create_vswitch,
        DescribeVSwitches => vpc::describe_vswitches,
        DescribeVSwitchAttributes => vpc::describe_vswitch_attributes,
        ModifyVpcAttribute => vpc::modify_vpc_attribute,
        ModifyVSwitchAttribute => vpc::modify_vswitch_attribute,
        DescribeRouteTableList => vpc::describe_route_table_list,
        DeleteVSwitch => vpc::delete_vswitch,
        VpcTagResources as "TagResources" => tags::tag,
        VpcUnTagResources as "UnTagResources" => tags::untag,
        VpcListTagResources as "ListTagResources" => tags::list,
    }
}

/// Where a request's region comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionSource {
    /// `RegionId`, required.
    Required,
    /// `RegionId`, or the server's first region (`DescribeRegions`).
    Optional,
    /// `RegionId`, or the region of the instance the request names (by `InstanceId` or
    /// `NetworkInterfaceId`): the SDKs send no region for these, or leave it optional, as
    /// the instance names it.
    OrInstance,
}

impl Action {
    /// The action a request names, or `InvalidAction.NotFound`.
    pub fn parse(version: &str, name: &str) -> Result<Action> {
        Action::ALL
            .iter()
            .copied()
            .find(|a| a.name() == name && a.product().version() == version)
            .ok_or(ServerError::ActionNotFound)
    }

    /// Where the request's region comes from.
    pub fn region_source(self) -> RegionSource {
        use Action::*;
        match self {
            // A host's agent token is the host's, whatever region it serves.
            DescribeRegions | DescribeInstanceTypes | IssueAgentToken | RevokeAgentToken => {
                RegionSource::Optional
            }
            ModifyInstanceAttribute
            | StartInstance
            | StopInstance
            | DeleteInstance
            | RebootInstance
            | DescribeInstanceAttribute
            | DescribeUserData
            | AllocatePublicIpAddress
            | JoinSecurityGroup
            | LeaveSecurityGroup
            | ModifyInstanceVpcAttribute => RegionSource::OrInstance,
            _ => RegionSource::Required,
        }
    }

    /// Whether the answer is a pure function of (account, region, parameters, revision),
    /// rendered once per revision and served again (see `cache`).
    pub fn is_cached(self) -> bool {
        use Action::*;
        matches!(
            self,
            DescribeSecurityGroupAttribute
                | DescribeReachability
                | DescribeTags
                | DescribeSecurityGroups
                | DescribeSecurityGroupReferences
                | DescribeInstances
                | DescribeInstanceAttribute
                | DescribeInstanceStatus
                | DescribeNetworkInterfaces
                | DescribeNetworkInterfaceAttribute
                | DescribePrefixLists
                | DescribePrefixListAttributes
                | DescribePrefixListAssociations
                | DescribePortRangeLists
                | DescribePortRangeListEntries
                | DescribePortRangeListAssociations
        )
    }

    /// Whether `PreviewSecurityGroupChange` can preview it: the commands that change who
    /// can reach whom.
    pub fn is_previewable(self) -> bool {
        use Action::*;
        matches!(
            self,
            AuthorizeSecurityGroup
                | AuthorizeSecurityGroupEgress
                | RevokeSecurityGroup
                | RevokeSecurityGroupEgress
                | ModifySecurityGroupRule
                | ModifySecurityGroupEgressRule
                | JoinSecurityGroup
                | LeaveSecurityGroup
                | ModifySecurityGroupPolicy
                | ModifyInstanceAttribute
                | ModifyInstanceVpcAttribute
                | ModifyNetworkInterfaceAttribute
                | AttachNetworkInterface
                | DetachNetworkInterface
                | ModifyPrefixList
                | ModifyPortRangeList
                | AssignIpv6Addresses
                | UnassignIpv6Addresses
                | AssignPrivateIpAddresses
                | UnassignPrivateIpAddresses
                | DeleteSecurityGroup
        )
    }
}

/// How a command runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Applied and committed durably.
    Commit,
    /// `DryRun=true`: every check runs in a transaction that is rolled back; the answer is
    /// `DryRunOperation`.
    DryRun,
    /// Run by `PreviewSecurityGroupChange`: rolled back, answering the region's policy as
    /// the command would leave it.
    Preview,
}

impl Mode {
    /// `DryRun` when the request says so, `Commit` otherwise.
    pub fn of(params: &Params) -> Result<Mode> {
        Ok(if params.flag("DryRun")? {
            Mode::DryRun
        } else {
            Mode::Commit
        })
    }
}

/// What an action answers.
#[derive(Debug)]
pub enum Reply {
    /// The response fields (without `RequestId`).
    Body(Value),
    /// A command run in [`Mode::Preview`]: the caller's share of the region's policy
    /// before it and the one it would leave.
    Previewed(Box<(policy::Snapshot, policy::Snapshot)>),
}

/// One request on its way through a handler: who asks, what, and how commands run.
pub(crate) struct Call<'a> {
    pub(crate) state: &'a AppState,
    pub(crate) ctx: &'a Ctx,
    pub(crate) params: &'a Params,
    pub(crate) action: Action,
    pub(crate) mode: Mode,
}

impl Call<'_> {
    /// Runs a query in a consistent snapshot of the store.
    pub(crate) fn query<T>(&self, f: impl FnOnce(&Tx) -> control::Result<T>) -> Result<T> {
        Ok(self.state.control.read(self.ctx, f)?)
    }

    /// A read action's answer: the body `f` builds in one snapshot. With `DryRun=true` the
    /// read runs (so its errors are the real ones) and answers `DryRunOperation`, as ECS's
    /// reads do.
    pub(crate) fn read(&self, f: impl FnOnce(&Tx) -> control::Result<Value>) -> Result<Reply> {
        let body = self.query(f)?;
        if self.mode == Mode::DryRun {
            return Err(ServerError::DryRunOperation);
        }
        Ok(Reply::Body(body))
    }

    /// Refuses a request giving a parameter of the action's model that the action has not
    /// read: one it does not honour, which it would otherwise ignore silently. Handlers parse every parameter
    /// before they run a command, so this runs before anything is written.
    pub(crate) fn refuse_unread(&self) -> Result<()> {
        // Of an action with an SDK model, only the model's parameters: ECS ignores names it
        // does not know, and clients send some (footmark adds `on=<Action>` to every
        // request). Stockade's own actions have no model and refuse any name they do not read.
        let model = request_parameters::MODEL_PARAMETERS
            .iter()
            .find(|(version, name, _)| {
                *version == self.action.product().version() && *name == self.action.name()
            })
            .map(|(_, _, names)| *names);
        let unread = self.params.unread().into_iter().find(|name| {
            let top = name.split('.').next().unwrap_or(name);
            model.is_none_or(|names| names.contains(&top))
        });
        match unread {
            Some(name) => Err(ServerError::unsupported(name)),
            None => Ok(()),
        }
    }

    /// A command with an empty answer.
    pub(crate) fn command(&self, f: impl FnOnce(&Tx) -> control::Result<()>) -> Result<Reply> {
        self.command_with(|tx| f(tx).map(|()| json!({})))
    }

    /// A command answering the body it builds, run as the mode says; a `ClientToken`
    /// makes a retry return the first answer.
    pub(crate) fn command_with(
        &self,
        f: impl FnOnce(&Tx) -> control::Result<Value>,
    ) -> Result<Reply> {
        self.refuse_unread()?;
        let control = &self.state.control;
        match self.mode {
            Mode::Preview => {
                // Both sides in the command's own transaction: no other commit falls between.
                let (before, after) = control.dry_run(self.ctx, |tx| {
                    let before = tx.account_policy()?;
                    f(tx)?;
                    Ok((before, tx.account_policy()?))
                })?;
                Ok(Reply::Previewed(Box::new((before, after))))
            }
            Mode::DryRun => {
                control.dry_run(self.ctx, f)?;
                Err(ServerError::DryRunOperation)
            }
            Mode::Commit => {
                let token = self.params.opt("ClientToken").map(|token| ClientToken {
                    token,
                    fingerprint: std::iter::once(self.action.name().to_string())
                        .chain(
                            self.params
                                .request_fields()
                                .map(|(k, v)| format!("{k}={v}")),
                        )
                        .collect::<Vec<_>>()
                        .join("&"),
                });
                Ok(Reply::Body(control.write(self.ctx, token.as_ref(), f)?))
            }
        }
    }
}

/// `PreviewSecurityGroupChange`: `ChangeAction` names a command, the other parameters are
/// that command's. The command's own handler runs in [`Mode::Preview`] (its validation is
/// the real one, its transaction rolled back), and the analysis compares the caller's shares
/// before and after. It lives here, beside [`execute`], because it dispatches.
fn preview(call: &Call) -> Result<Reply> {
    let name = call.params.required("ChangeAction")?;
    let change = Action::parse(crate::ECS_VERSION, &name)
        .ok()
        .filter(|a| a.is_previewable())
        .ok_or_else(|| ServerError::invalid("ChangeAction", name))?;
    let command = Call {
        action: change,
        mode: Mode::Preview,
        ..*call
    };
    match execute(&command)? {
        Reply::Previewed(policies) => analysis::preview(call, &policies.0, &policies.1),
        Reply::Body(_) => Err(ServerError::internal(format!(
            "{} answered a preview without running a command",
            change.name()
        ))),
    }
}

/// Adds `more`'s fields to the object `out` (answers assembled from parts: what Stockade
/// models, then ECS's defaults for what it does not).
pub(super) fn extend(out: &mut Value, more: Value) {
    if let (Some(out), Value::Object(more)) = (out.as_object_mut(), more) {
        out.extend(more);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_action_parses_from_its_own_product_only() {
        for &a in Action::ALL {
            assert_eq!(Action::parse(a.product().version(), a.name()).unwrap(), a);
            let other = match a.product() {
                Product::Ecs => Product::Vpc,
                Product::Vpc => Product::Ecs,
            };
            // Under the other product's `Version` the name is that product's own action
            // (both have `TagResources`), or none.
            if let Ok(b) = Action::parse(other.version(), a.name()) {
                assert!(b != a && b.product() == other, "{a:?} / {b:?}");
            }
        }
        assert_eq!(
            Action::parse(crate::VPC_VERSION, "TagResources").unwrap(),
            Action::VpcTagResources
        );
        assert_eq!(
            Action::parse(crate::ECS_VERSION, "TagResources").unwrap(),
            Action::TagResources
        );
        assert!(Action::parse(crate::VPC_VERSION, "DescribeSecurityGroups").is_err());
        assert!(Action::parse(crate::ECS_VERSION, "describeRegions").is_err());
        assert!(Action::parse("2099-01-01", "DescribeRegions").is_err());
    }

    #[test]
    fn cached_actions_are_reads_and_previews_are_commands() {
        for &a in Action::ALL {
            if a.is_cached() {
                assert!(a.name().starts_with("Describe"), "{a:?}");
            }
            if a.is_previewable() {
                assert!(!a.name().starts_with("Describe"), "{a:?}");
            }
        }
    }
}
