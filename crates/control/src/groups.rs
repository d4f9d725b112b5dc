//! Security groups and their rules: create, describe, modify, delete, authorize, revoke,
//! with the ECS constraints checked inside the command's transaction.

use crate::sql::{args, Row, Value as SqlValue};
use model::{
    AccountId, Direction, GroupType, InnerAccessPolicy, NetworkType, Peer, Permission,
    PermissionFields, RuleSpec, SecurityGroupId, SecurityGroupRuleId, VpcId,
};
use serde_json::json;
use std::sync::LazyLock;

use crate::{new_id_body, now, ControlError, Result, Tx};

/// A stored security group with what responses show about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    /// `sg-...`
    pub id: SecurityGroupId,
    /// Owner.
    pub owner: AccountId,
    /// Region.
    pub region: String,
    /// `SecurityGroupName`.
    pub name: String,
    /// `Description`.
    pub description: String,
    /// Basic or advanced.
    pub group_type: GroupType,
    /// VPC, `None` for the classic network.
    pub vpc_id: Option<VpcId>,
    /// As set (enterprise groups always behave as `Drop`).
    pub inner_access_policy: InnerAccessPolicy,
    /// `CreationTime`.
    pub created_at: String,
    /// Tags, by key.
    pub tags: Vec<(String, String)>,
    /// `ResourceGroupId`, if it is in one.
    pub resource_group_id: Option<model::ResourceGroupId>,
}

impl GroupRecord {
    /// VPC or classic.
    pub fn network(&self) -> NetworkType {
        if self.vpc_id.is_some() {
            NetworkType::Vpc
        } else {
            NetworkType::Classic
        }
    }
}

/// A stored rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleRecord {
    /// The rule.
    pub permission: Permission,
    /// `CreateTime`.
    pub created_at: String,
}

/// `CreateSecurityGroup` after parameter parsing.
#[derive(Debug, Clone, Default)]
pub struct CreateGroup {
    /// `SecurityGroupName` (validated).
    pub name: String,
    /// `Description` (validated).
    pub description: String,
    /// `SecurityGroupType`.
    pub group_type: GroupType,
    /// `VpcId`.
    pub vpc_id: Option<VpcId>,
    /// `Tag.N.Key` / `Tag.N.Value`.
    pub tags: Vec<(String, String)>,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<model::ResourceGroupId>,
}

/// `DescribeSecurityGroups` filters.
#[derive(Debug, Clone, Default)]
pub struct GroupFilter {
    /// `SecurityGroupId` / `SecurityGroupIds`.
    pub ids: Option<Vec<SecurityGroupId>>,
    /// `VpcId`.
    pub vpc_id: Option<VpcId>,
    /// `SecurityGroupName` (exact, or a part of the name with `fuzzy`).
    pub name: Option<String>,
    /// `FuzzyQuery=true`: `name` matches any group whose name contains it.
    pub fuzzy: bool,
    /// `SecurityGroupType`.
    pub group_type: Option<GroupType>,
    /// `NetworkType`.
    pub network: Option<NetworkType>,
    /// `Tag.N.Key` / `Tag.N.Value` (a key without value matches any value).
    pub tags: Vec<(String, Option<String>)>,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<model::ResourceGroupId>,
}

/// Which rules a revoke removes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// `SecurityGroupRuleId.N`: each must exist.
    ByIds(Vec<SecurityGroupRuleId>),
    /// `Permissions.N` or the flat fields: every equal rule; none is fine.
    ByFields(Vec<RuleSpec>),
}

fn group_type_wire(t: GroupType) -> &'static str {
    t.as_wire()
}

/// A stored `resource_group_id` ('' for none).
pub(crate) fn resource_group(stored: &str) -> Result<Option<model::ResourceGroupId>> {
    if stored.is_empty() {
        return Ok(None);
    }
    stored
        .parse()
        .map(Some)
        .map_err(|_| ControlError::Storage("bad resource_group_id".into()))
}

pub(crate) fn read_group(r: &Row) -> Result<(GroupRecord, i64)> {
    let vpc = r.opt_text("vpc_id")?;
    Ok((
        GroupRecord {
            id: r.parsed("id")?,
            owner: AccountId::new(r.int("account_id")? as u64),
            region: r.text("region")?,
            name: r.text("name")?,
            description: r.text("description")?,
            group_type: r.parsed("group_type")?,
            vpc_id: vpc
                .map(|v| v.parse())
                .transpose()
                .map_err(|_| ControlError::Storage("bad vpc_id".into()))?,
            inner_access_policy: r.parsed("inner_access")?,
            created_at: r.text("created_at")?,
            tags: Vec::new(),
            resource_group_id: resource_group(&r.text("resource_group_id")?)?,
        },
        r.int("seq")?,
    ))
}

/// The columns of a rule, by position: id, direction, the fields
/// ([`PermissionFields::COLUMNS`]), creation time.
fn permission_columns() -> String {
    format!(
        "id, direction, {}, created_at",
        PermissionFields::COLUMNS.join(", ")
    )
}

/// The rule statements, built once from the column list (rule reads are on the hot path).
static SELECT_GROUP_RULES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM permissions WHERE group_id = ?1 ORDER BY seq",
        permission_columns()
    )
});
static SELECT_REGION_RULES: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {}, group_id FROM permissions
         WHERE group_id IN (SELECT id FROM security_groups WHERE region = ?1) ORDER BY seq",
        permission_columns()
    )
});
/// Parameters: group, id, direction, the fields, creation time.
static INSERT_RULE: LazyLock<String> = LazyLock::new(|| {
    let placeholders: Vec<String> = (1..=PermissionFields::COLUMNS.len() + 4)
        .map(|i| format!("?{i}"))
        .collect();
    format!(
        "INSERT INTO permissions (group_id, {}) VALUES ({})",
        permission_columns(),
        placeholders.join(", ")
    )
});
/// Parameters: id, then the fields.
static UPDATE_RULE: LazyLock<String> = LazyLock::new(|| {
    let set: Vec<String> = PermissionFields::COLUMNS
        .iter()
        .enumerate()
        .map(|(i, column)| format!("{column} = ?{}", i + 2))
        .collect();
    format!("UPDATE permissions SET {} WHERE id = ?1", set.join(", "))
});

/// Position of the first field column, and of `created_at`, in [`permission_columns`].
const FIRST_FIELD: usize = 2;
const CREATED_AT: usize = FIRST_FIELD + PermissionFields::COLUMNS.len();

fn read_rule(r: &Row, network: NetworkType) -> Result<RuleRecord> {
    // Columns by position (looking them up by name costs more than the rest of the row on
    // 200-rule groups).
    let fields = PermissionFields::from_columns(|i| r.opt_text(FIRST_FIELD + i))?;
    let direction = match r.text(1)?.as_str() {
        "egress" => Direction::Egress,
        _ => Direction::Ingress,
    };
    let id = r.text(0)?;
    // Stored rules were validated by the same parser; a failure here is corruption.
    let permission = id
        .parse()
        .and_then(|id| fields.parse(id, direction, network))
        .map_err(|e| ControlError::Storage(format!("stored rule {id}: {e}")))?;
    Ok(RuleRecord {
        permission,
        created_at: r.text(CREATED_AT)?,
    })
}

impl Tx<'_> {
    /// A group of any account in the caller's region (for cross-account references).
    pub(crate) fn any_group(&self, id: &SecurityGroupId) -> Result<Option<GroupRecord>> {
        self.db
            .query_opt(
                "SELECT * FROM security_groups WHERE id = ?1 AND region = ?2",
                args![id.as_str(), &self.ctx.region],
            )?
            .map(|r| read_group(&r).map(|(g, _)| g))
            .transpose()
    }

    /// One of the caller's groups in the request's region.
    pub fn group(&self, id: &SecurityGroupId) -> Result<GroupRecord> {
        match self.any_group(id)? {
            Some(mut g) if g.owner == self.ctx.account => {
                g.tags = self.resource_tags(crate::TaggedType::SecurityGroup, id.as_str())?;
                Ok(g)
            }
            _ => Err(ControlError::GroupNotFound(id.clone())),
        }
    }

    /// The rules of a group, oldest first.
    pub fn rules(&self, group: &GroupRecord) -> Result<Vec<RuleRecord>> {
        let network = group.network();
        self.db
            .query(&SELECT_GROUP_RULES, args![group.id.as_str()])?
            .iter()
            .map(|r| read_rule(r, network))
            .collect()
    }

    /// The rules of every group of the region (`groups`), oldest first per group, in one
    /// query.
    pub(crate) fn region_rules(
        &self,
        groups: &[GroupRecord],
    ) -> Result<std::collections::HashMap<SecurityGroupId, Vec<Permission>>> {
        let network: std::collections::HashMap<&str, NetworkType> = groups
            .iter()
            .map(|g| (g.id.as_str(), g.network()))
            .collect();
        let mut out: std::collections::HashMap<SecurityGroupId, Vec<Permission>> =
            std::collections::HashMap::new();
        for r in self
            .db
            .query(&SELECT_REGION_RULES, args![&self.ctx.region])?
        {
            let group: SecurityGroupId = r.parsed(CREATED_AT + 1)?;
            let Some(&network) = network.get(group.as_str()) else {
                continue;
            };
            out.entry(group)
                .or_default()
                .push(read_rule(&r, network)?.permission);
        }
        Ok(out)
    }

    /// `CreateSecurityGroup`.
    pub fn create_group(&self, req: CreateGroup) -> Result<SecurityGroupId> {
        self.check_quota(
            "security_groups",
            1,
            self.limits.groups_per_region,
            ControlError::GroupQuota,
        )?;
        if let Some(vpc) = &req.vpc_id {
            self.vpc(vpc)?;
        }
        let id = SecurityGroupId::from_body(&new_id_body())?;
        self.db.execute(
            "INSERT INTO security_groups (id, account_id, region, name, description, group_type, vpc_id, inner_access, created_at, resource_group_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            args![
                id.as_str(),
                self.ctx.account.get() as i64,
                &self.ctx.region,
                &req.name,
                &req.description,
                group_type_wire(req.group_type),
                req.vpc_id.as_ref().map(|v| v.as_str()),
                match req.group_type {
                    GroupType::Enterprise => InnerAccessPolicy::Drop,
                    GroupType::Normal => InnerAccessPolicy::Accept,
                }
                .as_wire(),
                now(),
                req.resource_group_id.as_ref().map_or("", |r| r.as_str()),
            ],
        )?;
        for (k, v) in &req.tags {
            self.db.execute(
                "INSERT INTO tags (resource_type, resource_id, key, value) VALUES ('securitygroup', ?1, ?2, ?3)
                 ON CONFLICT (resource_type, resource_id, key) DO UPDATE SET value = excluded.value",
                args![id.as_str(), k, v],
            )?;
        }
        self.log(
            "CreateSecurityGroup",
            id.as_str(),
            json!({"GroupType": req.group_type.as_wire(), "VpcId": req.vpc_id.map(|v| v.to_string())}),
        )?;
        Ok(id)
    }

    /// `DeleteSecurityGroup`.
    pub fn delete_group(&self, id: &SecurityGroupId) -> Result<()> {
        self.group(id)?;
        if self.has_members(id)? {
            return Err(ControlError::GroupHasInstances);
        }
        let referenced = self
            .db
            .query_one(
                "SELECT EXISTS(SELECT 1 FROM permissions WHERE peer_group_id = ?1 AND group_id != ?1)",
                args![id.as_str()],
            )?
            .flag(0)?;
        if referenced {
            return Err(ControlError::GroupReferenced);
        }
        self.db.execute(
            "DELETE FROM permissions WHERE group_id = ?1",
            args![id.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM tags WHERE resource_type = 'securitygroup' AND resource_id = ?1",
            args![id.as_str()],
        )?;
        self.db.execute(
            "DELETE FROM security_groups WHERE id = ?1",
            args![id.as_str()],
        )?;
        self.log("DeleteSecurityGroup", id.as_str(), json!({}))?;
        Ok(())
    }

    /// The caller's groups that a rule of another account's group names (ECS lets classic
    /// groups be referenced across accounts; such a group is in use, and `DeleteSecurityGroup`
    /// refuses it, whatever the caller's own rules say).
    pub fn groups_referenced_by_others(
        &self,
    ) -> Result<std::collections::BTreeSet<SecurityGroupId>> {
        self.db
            .query(
                "SELECT DISTINCT p.peer_group_id FROM security_groups g
                 JOIN permissions p ON p.peer_group_id = g.id
                 JOIN security_groups o ON o.id = p.group_id
                 WHERE g.region = ?1 AND g.account_id = ?2 AND o.account_id <> ?2",
                args![&self.ctx.region, self.ctx.account.get() as i64],
            )?
            .iter()
            .map(|r| r.parsed(0))
            .collect()
    }

    /// `DescribeSecurityGroups`: the matching groups, oldest first.
    pub fn find_groups(&self, filter: &GroupFilter) -> Result<Vec<GroupRecord>> {
        let rows = self.db.query(
            "SELECT * FROM security_groups WHERE account_id = ?1 AND region = ?2 ORDER BY seq",
            args![self.ctx.account.get() as i64, &self.ctx.region],
        )?;
        let mut out = Vec::new();
        for row in &rows {
            let (mut g, _) = read_group(row)?;
            let keep = filter.ids.as_ref().is_none_or(|ids| ids.contains(&g.id))
                && filter
                    .vpc_id
                    .as_ref()
                    .is_none_or(|v| g.vpc_id.as_ref() == Some(v))
                && filter.name.as_ref().is_none_or(|n| {
                    if filter.fuzzy {
                        g.name.contains(n.as_str())
                    } else {
                        &g.name == n
                    }
                })
                && filter.group_type.is_none_or(|t| g.group_type == t)
                && filter
                    .resource_group_id
                    .as_ref()
                    .is_none_or(|rg| g.resource_group_id.as_ref() == Some(rg))
                && filter.network.is_none_or(|n| g.network() == n);
            if !keep {
                continue;
            }
            g.tags = self.resource_tags(crate::TaggedType::SecurityGroup, g.id.as_str())?;
            if crate::tags::tags_match(&filter.tags, &g.tags) {
                out.push(g);
            }
        }
        Ok(out)
    }

    /// `ModifySecurityGroupAttribute`.
    pub fn modify_group(
        &self,
        id: &SecurityGroupId,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<()> {
        let g = self.group(id)?;
        self.db.execute(
            "UPDATE security_groups SET name = ?2, description = ?3 WHERE id = ?1",
            args![
                id.as_str(),
                name.unwrap_or(g.name),
                description.unwrap_or(g.description)
            ],
        )?;
        self.log("ModifySecurityGroupAttribute", id.as_str(), json!({}))
    }

    /// `ModifySecurityGroupPolicy`.
    pub fn set_inner_access_policy(
        &self,
        id: &SecurityGroupId,
        policy: InnerAccessPolicy,
    ) -> Result<()> {
        let g = self.group(id)?;
        if g.group_type == GroupType::Enterprise {
            return Err(ControlError::EnterpriseInnerAccessPolicy);
        }
        self.db.execute(
            "UPDATE security_groups SET inner_access = ?2 WHERE id = ?1",
            args![id.as_str(), policy.as_wire()],
        )?;
        self.log(
            "ModifySecurityGroupPolicy",
            id.as_str(),
            json!({"InnerAccessPolicy": policy.as_wire()}),
        )
    }

    /// Checks a group-reference peer: it exists (in the owner's account if one is named),
    /// neither side is enterprise, and the networks agree.
    fn check_reference(&self, group: &GroupRecord, p: &Permission) -> Result<()> {
        // The caller's own port list only, like prefix lists.
        if let Some(list) = &p.port_list {
            self.port_range_list(list)?;
        }
        let r = match &p.peer {
            Peer::Group(r) => r,
            // The caller's own list only (another account's answers as a missing one).
            Peer::PrefixList(l) => return self.prefix_list(l).map(drop),
            Peer::Cidr(_) => return Ok(()),
        };
        let ingress = p.direction == Direction::Ingress;
        let not_found = || {
            if ingress {
                ControlError::SourceGroupNotFound(r.id.clone())
            } else {
                ControlError::DestGroupNotFound(r.id.clone())
            }
        };
        let owner = match (&r.owner_id, &r.owner_account) {
            (Some(id), _) => *id,
            (None, Some(name)) => self.account_by_name(name)?.ok_or_else(not_found)?,
            (None, None) => self.ctx.account,
        };
        let target = self
            .any_group(&r.id)?
            .filter(|t| t.owner == owner)
            .ok_or_else(not_found)?;
        // Another account's group: ECS allows the reference only between basic groups of
        // the classic network (a VPC group can reference its own VPC's groups only, and a
        // VPC is one account's). Every other case answers as a missing group would, so a
        // reference cannot probe another account's groups for their VPC or type.
        if target.owner != self.ctx.account
            && (group.vpc_id.is_some()
                || target.vpc_id.is_some()
                || group.group_type == GroupType::Enterprise
                || target.group_type == GroupType::Enterprise)
        {
            return Err(not_found());
        }
        if group.group_type == GroupType::Enterprise || target.group_type == GroupType::Enterprise {
            return Err(ControlError::EnterpriseGroupReference);
        }
        match (&group.vpc_id, &target.vpc_id) {
            (Some(a), Some(b)) if a != b => Err(if ingress {
                ControlError::SourceGroupMismatch
            } else {
                ControlError::DestGroupMismatch
            }),
            (Some(_), None) | (None, Some(_)) => Err(ControlError::NetworkTypeConflict),
            _ => Ok(()),
        }
    }

    /// `AuthorizeSecurityGroup(Egress)`: adds the rules not already present, all or none.
    pub fn authorize(&self, id: &SecurityGroupId, rules: &[RuleSpec]) -> Result<()> {
        let group = self.group(id)?;
        let mut new: Vec<Permission> = Vec::with_capacity(rules.len());
        for spec in rules {
            let rule_id = SecurityGroupRuleId::from_body(&new_id_body())?;
            let p = spec.resolve(rule_id, group.network())?;
            if new.iter().any(|q| q.same_rule(&p)) {
                return Err(ControlError::DuplicatePermissions);
            }
            self.check_reference(&group, &p)?;
            new.push(p);
        }
        let existing = self.rules(&group)?;
        new.retain(|p| !existing.iter().any(|r| r.permission.same_rule(p)));
        self.check_rule_weight(existing.iter().map(|r| &r.permission).chain(&new))?;
        let group_rules = |ps: &mut dyn Iterator<Item = &Permission>| {
            ps.filter(|p| matches!(p.peer, Peer::Group(_))).count()
        };
        if group.group_type == GroupType::Normal
            && group_rules(&mut existing.iter().map(|r| &r.permission))
                + group_rules(&mut new.iter())
                > self.limits.group_rules_per_group
        {
            return Err(ControlError::GroupRuleLimit);
        }
        for p in &new {
            self.insert_rule(id, p)?;
        }
        Ok(())
    }

    /// A group's rules, weighed as ECS counts them against its rule limit: a rule naming a
    /// prefix list counts as its `MaxEntries` rules, and one naming a port list as that
    /// list's; naming both, as the product (every pair of entries is a rule's worth of
    /// matching, and of the engine's memory). Checked on every path that changes a rule's
    /// weight: authorisation and modification (a list's `MaxEntries` never changes).
    fn check_rule_weight<'p>(&self, rules: impl Iterator<Item = &'p Permission>) -> Result<()> {
        let mut total = 0;
        for p in rules {
            let addresses = match &p.peer {
                Peer::PrefixList(l) => self.prefix_list(l)?.max_entries,
                _ => 1,
            };
            let ports = match &p.port_list {
                Some(l) => self.port_range_list(l)?.max_entries,
                None => 1,
            };
            total += addresses * ports;
        }
        if total > self.limits.rules_per_group {
            return Err(ControlError::AuthorizationLimit);
        }
        Ok(())
    }

    fn insert_rule(&self, group: &SecurityGroupId, p: &Permission) -> Result<()> {
        let fields = p.to_fields();
        let mut values: Vec<SqlValue> =
            args![group.as_str(), p.id.as_str(), p.direction.as_wire()].to_vec();
        values.extend(fields.columns().into_iter().map(SqlValue::from));
        values.push(now().into());
        self.db.execute(&INSERT_RULE, &values)?;
        self.log(
            "AuthorizeSecurityGroup",
            group.as_str(),
            json!({"SecurityGroupRuleId": p.id.as_str(), "Direction": p.direction.as_wire()}),
        )
    }

    /// `RevokeSecurityGroup(Egress)`.
    pub fn revoke(&self, id: &SecurityGroupId, direction: Direction, what: &Revoke) -> Result<()> {
        let group = self.group(id)?;
        let existing = self.rules(&group)?;
        let doomed: Vec<SecurityGroupRuleId> = match what {
            Revoke::ByIds(ids) => {
                for rule in ids {
                    let found = existing
                        .iter()
                        .any(|r| &r.permission.id == rule && r.permission.direction == direction);
                    if !found {
                        return Err(ControlError::RuleNotFound(rule.clone()));
                    }
                }
                ids.clone()
            }
            Revoke::ByFields(rules) => {
                let placeholder = SecurityGroupRuleId::from_body("revoke")?;
                let mut doomed = Vec::new();
                for spec in rules {
                    let p = spec.resolve(placeholder.clone(), group.network())?;
                    doomed.extend(
                        existing
                            .iter()
                            .filter(|r| r.permission.same_rule(&p))
                            .map(|r| r.permission.id.clone()),
                    );
                }
                doomed
            }
        };
        for rule in &doomed {
            self.db.execute(
                "DELETE FROM permissions WHERE id = ?1",
                args![rule.as_str()],
            )?;
            self.log(
                "RevokeSecurityGroup",
                id.as_str(),
                json!({"SecurityGroupRuleId": rule.as_str()}),
            )?;
        }
        Ok(())
    }
}

/// The kind of a rule's authorization object, which `ModifySecurityGroupRule` may not change.
fn peer_kind(p: &Permission) -> u8 {
    match &p.peer {
        Peer::Cidr(ipnet::IpNet::V4(_)) => 0,
        Peer::Cidr(ipnet::IpNet::V6(_)) => 1,
        Peer::Group(_) => 2,
        Peer::PrefixList(_) => 3,
    }
}

impl Tx<'_> {
    /// `ModifySecurityGroupRule(Egress)` without `SecurityGroupRuleId`, as ECS's older
    /// form and Terraform's `alicloud_security_group_rule` update send it: the rule is the
    /// one with all of the given fields (direction, policy, priority, protocol and ports,
    /// peer, local CIDR, NicType), and only its `Description` changes.
    pub fn modify_rule_by_fields(
        &self,
        id: &SecurityGroupId,
        spec: &model::RuleSpec,
    ) -> Result<()> {
        let group = self.group(id)?;
        let wanted = spec.resolve(SecurityGroupRuleId::from_body("modify")?, group.network())?;
        let rule = self
            .rules(&group)?
            .into_iter()
            .find(|r| r.permission.same_rule(&wanted))
            .ok_or(ControlError::RuleNotFoundByFields)?;
        self.db.execute(
            "UPDATE permissions SET description = ?2 WHERE id = ?1",
            args![rule.permission.id.as_str(), &spec.description],
        )?;
        self.log(
            "ModifySecurityGroupRule",
            rule.permission.id.as_str(),
            json!({"Description": spec.description}),
        )
    }

    /// `ModifySecurityGroupRule(Egress)`: changes the given fields of one rule, keeping its
    /// id, creation time and place in the creation order. The kind of authorization object
    /// and the NicType cannot change; the result may not duplicate another rule.
    ///
    /// `changes` stays in wire form, unlike the `RuleSpec`s of `authorize`: it is a patch
    /// whose fields mean something only laid over the stored rule's (a `PortRange` alone
    /// takes the rule's protocol), and the merged fields go through the one rule parser.
    pub fn modify_rule(
        &self,
        id: &SecurityGroupId,
        direction: Direction,
        rule: &SecurityGroupRuleId,
        changes: &PermissionFields,
    ) -> Result<()> {
        let group = self.group(id)?;
        let existing = self.rules(&group)?;
        let current = existing
            .iter()
            .find(|r| &r.permission.id == rule && r.permission.direction == direction)
            .ok_or_else(|| ControlError::RuleNotFound(rule.clone()))?;
        if let Some(nic) = changes.nic_type.as_deref().filter(|n| !n.is_empty()) {
            if nic.parse::<model::NicType>()? != current.permission.nic_type
                && group.network() == NetworkType::Classic
            {
                return Err(ControlError::ModifyNicType);
            }
        }
        let asks_group = changes.group_id.as_deref().is_some_and(|g| !g.is_empty());
        let asks_list = changes
            .prefix_list_id
            .as_deref()
            .is_some_and(|l| !l.is_empty());
        if (asks_group && !matches!(current.permission.peer, Peer::Group(_)))
            || (asks_list && !matches!(current.permission.peer, Peer::PrefixList(_)))
        {
            return Err(ControlError::ModifyEntityType);
        }
        // The NicType stays (a change of it was refused above). A new `PortRange` replaces a
        // port list and a new `PortRangeListId` a range: the two are one field's two forms.
        let mut stored = current.permission.to_fields();
        let given =
            |f: &Option<String>| f.as_deref().is_some_and(|v| !v.is_empty() && v != "-1/-1");
        if given(&changes.port_range) {
            stored.port_range_list_id = None;
        }
        if given(&changes.port_range_list_id) {
            stored.port_range = None;
        }
        let fields = PermissionFields {
            nic_type: stored.nic_type.clone(),
            ..stored.overlay(changes)
        };
        let updated = fields.parse(rule.clone(), direction, group.network())?;
        if peer_kind(&updated) != peer_kind(&current.permission) {
            return Err(ControlError::ModifyEntityType);
        }
        self.check_reference(&group, &updated)?;
        if existing
            .iter()
            .any(|r| &r.permission.id != rule && r.permission.same_rule(&updated))
        {
            return Err(ControlError::RuleDuplicate);
        }
        let others = existing.iter().map(|r| &r.permission);
        self.check_rule_weight(others.filter(|p| &p.id != rule).chain([&updated]))?;
        let fields = updated.to_fields();
        let mut values: Vec<SqlValue> = args![rule.as_str()].to_vec();
        values.extend(fields.columns().into_iter().map(SqlValue::from));
        self.db.execute(&UPDATE_RULE, &values)?;
        self.log(
            "ModifySecurityGroupRule",
            id.as_str(),
            json!({"SecurityGroupRuleId": rule.as_str()}),
        )
    }

    /// `DescribeSecurityGroupReferences`: the groups (of any account in the region) whose
    /// rules reference each of the caller's groups.
    pub fn references(&self, id: &SecurityGroupId) -> Result<Vec<(SecurityGroupId, AccountId)>> {
        self.group(id)?;
        // `g.seq` is selected so that the ordering column is in the DISTINCT list (which
        // PostgreSQL requires).
        self.db
            .query(
                "SELECT DISTINCT g.id, g.account_id, g.seq FROM permissions p JOIN security_groups g ON g.id = p.group_id
                 WHERE p.peer_group_id = ?1 AND g.id != ?1 ORDER BY g.seq",
                args![id.as_str()],
            )?
            .iter()
            .map(|r| Ok((r.parsed(0)?, AccountId::new(r.int(1)? as u64))))
            .collect()
    }
}
