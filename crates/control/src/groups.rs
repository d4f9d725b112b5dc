//! Security groups and their rules: create, describe, modify, delete, authorize, revoke,
//! with the ECS constraints checked inside the command's transaction.

use model::{
    AccountId, Direction, GroupType, InnerAccessPolicy, NetworkType, Peer, Permission,
    PermissionFields, SecurityGroupId, SecurityGroupRuleId, VpcId,
};
use rusqlite::{params, params_from_iter, OptionalExtension, Row, ToSql};
use serde_json::json;

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
}

/// `DescribeSecurityGroups` filters.
#[derive(Debug, Clone, Default)]
pub struct GroupFilter {
    /// `SecurityGroupId` / `SecurityGroupIds`.
    pub ids: Option<Vec<SecurityGroupId>>,
    /// `VpcId`.
    pub vpc_id: Option<VpcId>,
    /// `SecurityGroupName` (exact).
    pub name: Option<String>,
    /// `SecurityGroupType`.
    pub group_type: Option<GroupType>,
    /// `NetworkType`.
    pub network: Option<NetworkType>,
    /// `Tag.N.Key` / `Tag.N.Value` (a key without value matches any value).
    pub tags: Vec<(String, Option<String>)>,
}

/// Which rules a revoke removes.
#[derive(Debug, Clone)]
pub enum Revoke {
    /// `SecurityGroupRuleId.N`: each must exist.
    ByIds(Vec<SecurityGroupRuleId>),
    /// `Permissions.N` or the flat fields: every equal rule; none is fine.
    ByFields(Vec<PermissionFields>),
}

fn group_type_wire(t: GroupType) -> &'static str {
    t.as_wire()
}

pub(crate) fn read_group(r: &Row) -> rusqlite::Result<(GroupRecord, i64)> {
    let parse_err = |e: model::ModelError| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    };
    let vpc: Option<String> = r.get("vpc_id")?;
    Ok((
        GroupRecord {
            id: r.get::<_, String>("id")?.parse().map_err(parse_err)?,
            owner: AccountId::new(r.get::<_, i64>("account_id")? as u64),
            region: r.get("region")?,
            name: r.get("name")?,
            description: r.get("description")?,
            group_type: r
                .get::<_, String>("group_type")?
                .parse()
                .map_err(parse_err)?,
            vpc_id: vpc.map(|v| v.parse()).transpose().map_err(parse_err)?,
            inner_access_policy: r
                .get::<_, String>("inner_access")?
                .parse()
                .map_err(parse_err)?,
            created_at: r.get("created_at")?,
            tags: Vec::new(),
        },
        r.get("seq")?,
    ))
}

const PERMISSION_COLUMNS: &str =
    "id, direction, policy, priority, ip_protocol, port_range, source_port_range, \
     source_cidr_ip, ipv6_source_cidr_ip, dest_cidr_ip, ipv6_dest_cidr_ip, peer_group_id, \
     peer_owner_account, peer_owner_id, peer_prefix_list_id, nic_type, description, created_at";

fn read_rule(r: &Row, network: NetworkType) -> rusqlite::Result<RuleRecord> {
    // Columns by position, in PERMISSION_COLUMNS order (looking them up by name costs more
    // than the rest of the row on 200-rule groups).
    let fields = PermissionFields {
        policy: r.get(2)?,
        priority: r.get(3)?,
        ip_protocol: r.get(4)?,
        port_range: r.get(5)?,
        source_port_range: r.get(6)?,
        source_cidr_ip: r.get(7)?,
        ipv6_source_cidr_ip: r.get(8)?,
        dest_cidr_ip: r.get(9)?,
        ipv6_dest_cidr_ip: r.get(10)?,
        group_id: r.get(11)?,
        group_owner_account: r.get(12)?,
        group_owner_id: r.get(13)?,
        prefix_list_id: r.get(14)?,
        nic_type: r.get(15)?,
        description: r.get(16)?,
    };
    let direction = match r.get_ref(1)?.as_str()? {
        "egress" => Direction::Egress,
        _ => Direction::Ingress,
    };
    let id: String = r.get(0)?;
    // Stored rules were validated by the same parser; a failure here is corruption.
    let permission = id
        .parse()
        .and_then(|id| fields.parse(id, direction, network))
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
        })?;
    Ok(RuleRecord {
        permission,
        created_at: r.get(17)?,
    })
}

impl Tx<'_> {
    /// A group of any account in the caller's region (for cross-account references).
    fn any_group(&self, id: &SecurityGroupId) -> Result<Option<GroupRecord>> {
        let g = self
            .tx
            .prepare_cached("SELECT * FROM security_groups WHERE id = ?1 AND region = ?2")?
            .query_row(params![id.as_str(), self.ctx.region], read_group)
            .optional()?;
        Ok(g.map(|(g, _)| g))
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
        let sql = format!(
            "SELECT {PERMISSION_COLUMNS} FROM permissions WHERE group_id = ?1 ORDER BY seq"
        );
        let mut stmt = self.tx.prepare_cached(&sql)?;
        let network = group.network();
        let rows = stmt.query_map([group.id.as_str()], |r| read_rule(r, network))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// `CreateSecurityGroup`.
    pub fn create_group(&self, req: CreateGroup) -> Result<SecurityGroupId> {
        let count: i64 = self.tx.query_row(
            "SELECT COUNT(*) FROM security_groups WHERE account_id = ?1 AND region = ?2",
            params![self.ctx.account.get() as i64, self.ctx.region],
            |r| r.get(0),
        )?;
        if count as usize >= self.limits.groups_per_region {
            return Err(ControlError::GroupQuota);
        }
        if let Some(vpc) = &req.vpc_id {
            self.vpc(vpc)?;
        }
        let id = SecurityGroupId::from_body(&new_id_body())?;
        self.tx.execute(
            "INSERT INTO security_groups (id, account_id, region, name, description, group_type, vpc_id, inner_access, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                id.as_str(),
                self.ctx.account.get() as i64,
                self.ctx.region,
                req.name,
                req.description,
                group_type_wire(req.group_type),
                req.vpc_id.as_ref().map(|v| v.as_str()),
                match req.group_type {
                    GroupType::Enterprise => InnerAccessPolicy::Drop,
                    GroupType::Normal => InnerAccessPolicy::Accept,
                }
                .as_wire(),
                now(),
            ],
        )?;
        for (k, v) in &req.tags {
            self.tx.execute(
                "INSERT OR REPLACE INTO tags (resource_type, resource_id, key, value) VALUES ('securitygroup', ?1, ?2, ?3)",
                params![id.as_str(), k, v],
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
        let referenced: bool = self.tx.query_row(
            "SELECT EXISTS(SELECT 1 FROM permissions WHERE peer_group_id = ?1 AND group_id != ?1)",
            [id.as_str()],
            |r| r.get(0),
        )?;
        if referenced {
            return Err(ControlError::GroupReferenced);
        }
        self.tx
            .execute("DELETE FROM permissions WHERE group_id = ?1", [id.as_str()])?;
        self.tx.execute(
            "DELETE FROM tags WHERE resource_type = 'securitygroup' AND resource_id = ?1",
            [id.as_str()],
        )?;
        self.tx
            .execute("DELETE FROM security_groups WHERE id = ?1", [id.as_str()])?;
        self.log("DeleteSecurityGroup", id.as_str(), json!({}))?;
        Ok(())
    }

    /// `DescribeSecurityGroups`: the matching groups, oldest first.
    pub fn find_groups(&self, filter: &GroupFilter) -> Result<Vec<GroupRecord>> {
        let mut stmt = self.tx.prepare_cached(
            "SELECT * FROM security_groups WHERE account_id = ?1 AND region = ?2 ORDER BY seq",
        )?;
        let rows = stmt.query_map(
            params![self.ctx.account.get() as i64, self.ctx.region],
            read_group,
        )?;
        let mut out = Vec::new();
        for row in rows {
            let (mut g, _) = row?;
            let keep = filter.ids.as_ref().is_none_or(|ids| ids.contains(&g.id))
                && filter
                    .vpc_id
                    .as_ref()
                    .is_none_or(|v| g.vpc_id.as_ref() == Some(v))
                && filter.name.as_ref().is_none_or(|n| &g.name == n)
                && filter.group_type.is_none_or(|t| g.group_type == t)
                && filter.network.is_none_or(|n| g.network() == n);
            if !keep {
                continue;
            }
            g.tags = self.resource_tags(crate::TaggedType::SecurityGroup, g.id.as_str())?;
            let tags_match = filter.tags.iter().all(|(k, v)| {
                g.tags
                    .iter()
                    .any(|(gk, gv)| gk == k && v.as_ref().is_none_or(|v| v == gv))
            });
            if tags_match {
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
        self.tx.execute(
            "UPDATE security_groups SET name = ?2, description = ?3 WHERE id = ?1",
            params![
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
        self.tx.execute(
            "UPDATE security_groups SET inner_access = ?2 WHERE id = ?1",
            params![id.as_str(), policy.as_wire()],
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
        let r = match &p.peer {
            Peer::Group(r) => r,
            Peer::PrefixList(l) => return Err(ControlError::PrefixListNotFound(l.to_string())),
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
    pub fn authorize(
        &self,
        id: &SecurityGroupId,
        direction: Direction,
        rules: &[PermissionFields],
    ) -> Result<()> {
        let group = self.group(id)?;
        let mut new: Vec<Permission> = Vec::with_capacity(rules.len());
        for fields in rules {
            let rule_id = SecurityGroupRuleId::from_body(&new_id_body())?;
            let p = fields.parse(rule_id, direction, group.network())?;
            if new.iter().any(|q| q.same_rule(&p)) {
                return Err(ControlError::DuplicatePermissions);
            }
            self.check_reference(&group, &p)?;
            new.push(p);
        }
        let existing = self.rules(&group)?;
        new.retain(|p| !existing.iter().any(|r| r.permission.same_rule(p)));
        if existing.len() + new.len() > self.limits.rules_per_group {
            return Err(ControlError::AuthorizationLimit);
        }
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

    fn insert_rule(&self, group: &SecurityGroupId, p: &Permission) -> Result<()> {
        let f = p.to_fields();
        let sql = format!(
            "INSERT INTO permissions (group_id, {PERMISSION_COLUMNS}) VALUES \
             (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)"
        );
        let created = now();
        let head: [&dyn ToSql; 3] = [&group.as_str(), &p.id.as_str(), &p.direction.as_wire()];
        let tail: [&dyn ToSql; 3] = [&f.nic_type, &f.description, &created];
        self.tx.execute(
            &sql,
            params_from_iter(head.into_iter().chain(stored_fields(&f)).chain(tail)),
        )?;
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
                for fields in rules {
                    let p = fields.parse(placeholder.clone(), direction, group.network())?;
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
            self.tx
                .execute("DELETE FROM permissions WHERE id = ?1", [rule.as_str()])?;
            self.log(
                "RevokeSecurityGroup",
                id.as_str(),
                json!({"SecurityGroupRuleId": rule.as_str()}),
            )?;
        }
        Ok(())
    }
}

/// The stored wire fields that `INSERT` and `UPDATE` of a rule share, in column order from
/// `policy` to `peer_prefix_list_id`.
fn stored_fields(f: &PermissionFields) -> [&dyn ToSql; 13] {
    [
        &f.policy,
        &f.priority,
        &f.ip_protocol,
        &f.port_range,
        &f.source_port_range,
        &f.source_cidr_ip,
        &f.ipv6_source_cidr_ip,
        &f.dest_cidr_ip,
        &f.ipv6_dest_cidr_ip,
        &f.group_id,
        &f.group_owner_account,
        &f.group_owner_id,
        &f.prefix_list_id,
    ]
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

/// Lays the given (present) fields over the rule's current ones.
fn overlay(current: PermissionFields, changes: &PermissionFields) -> PermissionFields {
    let pick = |new: &Option<String>, old: Option<String>| match new.as_deref() {
        Some(v) if !v.is_empty() => Some(v.to_string()),
        _ => old,
    };
    PermissionFields {
        policy: pick(&changes.policy, current.policy),
        priority: pick(&changes.priority, current.priority),
        ip_protocol: pick(&changes.ip_protocol, current.ip_protocol),
        port_range: pick(&changes.port_range, current.port_range),
        source_port_range: pick(&changes.source_port_range, current.source_port_range),
        source_cidr_ip: pick(&changes.source_cidr_ip, current.source_cidr_ip),
        ipv6_source_cidr_ip: pick(&changes.ipv6_source_cidr_ip, current.ipv6_source_cidr_ip),
        dest_cidr_ip: pick(&changes.dest_cidr_ip, current.dest_cidr_ip),
        ipv6_dest_cidr_ip: pick(&changes.ipv6_dest_cidr_ip, current.ipv6_dest_cidr_ip),
        group_id: pick(&changes.group_id, current.group_id),
        group_owner_account: pick(&changes.group_owner_account, current.group_owner_account),
        group_owner_id: pick(&changes.group_owner_id, current.group_owner_id),
        prefix_list_id: pick(&changes.prefix_list_id, current.prefix_list_id),
        nic_type: current.nic_type,
        description: match &changes.description {
            Some(d) => Some(d.clone()),
            None => current.description,
        },
    }
}

impl Tx<'_> {
    /// `ModifySecurityGroupRule(Egress)`: changes the given fields of one rule, keeping its
    /// id, creation time and place in the creation order. The kind of authorization object
    /// and the NicType cannot change; the result may not duplicate another rule.
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
        let fields = overlay(current.permission.to_fields(), changes);
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
        let f = updated.to_fields();
        self.tx.execute(
            "UPDATE permissions SET policy = ?2, priority = ?3, ip_protocol = ?4, port_range = ?5, source_port_range = ?6,
                 source_cidr_ip = ?7, ipv6_source_cidr_ip = ?8, dest_cidr_ip = ?9, ipv6_dest_cidr_ip = ?10,
                 peer_group_id = ?11, peer_owner_account = ?12, peer_owner_id = ?13, peer_prefix_list_id = ?14,
                 description = ?15
             WHERE id = ?1",
            params_from_iter(
                std::iter::once(&rule.as_str() as &dyn ToSql)
                    .chain(stored_fields(&f))
                    .chain(std::iter::once(&f.description as &dyn ToSql)),
            ),
        )?;
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
        let mut stmt = self.tx.prepare_cached(
            "SELECT DISTINCT g.id, g.account_id FROM permissions p JOIN security_groups g ON g.id = p.group_id
             WHERE p.peer_group_id = ?1 AND g.id != ?1 ORDER BY g.seq",
        )?;
        let rows = stmt.query_map([id.as_str()], |r| {
            Ok((
                r.get::<_, String>(0)?
                    .parse()
                    .map_err(|e: model::ModelError| {
                        rusqlite::Error::FromSqlConversionFailure(
                            0,
                            rusqlite::types::Type::Text,
                            Box::new(e),
                        )
                    })?,
                AccountId::new(r.get::<_, i64>(1)? as u64),
            ))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
