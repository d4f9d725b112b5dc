"""ModifySecurityGroupRule(Egress), DescribeSecurityGroupReferences and the tag actions."""

import json

from aliyunsdkecs.request.v20140526 import (
    DescribeInstancesRequest,
    DescribeSecurityGroupReferencesRequest,
    ListTagResourcesRequest,
    ModifySecurityGroupEgressRuleRequest,
    ModifySecurityGroupRuleRequest,
    TagResourcesRequest,
    UntagResourcesRequest,
)
from alibabacloud_ecs20140526 import models

from conftest import REGION, stockade_action
from test_instances import group, run, vpc_with_vswitch
from test_security_groups import authorize, create_group, rules


def modify(group_id, rule_id, egress=False, **fields):
    r = (ModifySecurityGroupEgressRuleRequest.ModifySecurityGroupEgressRuleRequest() if egress
         else ModifySecurityGroupRuleRequest.ModifySecurityGroupRuleRequest())
    r.set_SecurityGroupId(group_id)
    r.set_SecurityGroupRuleId(rule_id)
    for k, v in fields.items():
        getattr(r, "set_" + k)(v)
    return r


def test_modify_rule_keeps_id_and_order(old):
    sg = create_group(old, "modify")
    old.call(authorize(sg, [
        {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8", "Description": "ssh"},
        {"IpProtocol": "tcp", "PortRange": "80/80", "SourceCidrIp": "0.0.0.0/0"},
    ]))
    first, second = rules(old, sg)
    old.call(modify(sg, first["SecurityGroupRuleId"], PortRange="2222/2222", Priority="7", Policy="drop",
                    SourceCidrIp="192.168.0.0/16"))
    a, b = rules(old, sg)
    assert (a["SecurityGroupRuleId"], a["PortRange"], a["Priority"], a["Policy"], a["SourceCidrIp"], a["Description"], a["CreateTime"]) == (
        first["SecurityGroupRuleId"], "2222/2222", "7", "Drop", "192.168.0.0/16", "ssh", first["CreateTime"])
    assert b == second
    assert old.error(modify(sg, first["SecurityGroupRuleId"], Ipv6SourceCidrIp="2001:db8::/32"))[0] == "InvalidParameter.Conflict"
    assert old.error(modify(sg, first["SecurityGroupRuleId"], SourceGroupId=sg)) == (
        "InvalidOperation.ModifySgRuleEntityType", 400)
    assert old.error(modify(sg, first["SecurityGroupRuleId"], PortRange="80/80", Priority="1", Policy="accept",
                            SourceCidrIp="0.0.0.0/0")) == ("InvalidOperation.RuleDuplicate", 400)
    assert old.error(modify(sg, "sgr-nosuchrule", PortRange="1/1")) == ("InvalidSecurityGroupRuleId.NotFound", 404)
    assert old.error(modify(sg, first["SecurityGroupRuleId"], PortRange="9/1"))[0] == "InvalidParam.PortRange"
    assert rules(old, sg)[0]["PortRange"] == "2222/2222", "a refused modification changes nothing"
    # An ingress rule id is not an egress rule.
    assert old.error(modify(sg, first["SecurityGroupRuleId"], egress=True, PortRange="1/1"))[0] == "InvalidSecurityGroupRuleId.NotFound"


def test_modify_egress_rule_with_the_new_sdk(old, new_v3):
    sg = create_group(old, "modifyegress")
    old.call(authorize(sg, [{"IpProtocol": "udp", "PortRange": "53/53", "DestCidrIp": "8.8.8.8"}], egress=True))
    [rule] = rules(old, sg, "egress")
    new_v3.modify_security_group_egress_rule(models.ModifySecurityGroupEgressRuleRequest(
        region_id=REGION, security_group_id=sg, security_group_rule_id=rule["SecurityGroupRuleId"],
        dest_cidr_ip="1.1.1.1", description="resolver"))
    [after] = rules(old, sg, "egress")
    assert (after["DestCidrIp"], after["Description"], after["PortRange"]) == ("1.1.1.1/32", "resolver", "53/53")


def test_describe_security_group_references(old):
    target = create_group(old, "target", vpc="vpc-refd")
    users = [create_group(old, f"user{i}", vpc="vpc-refd") for i in range(2)]
    for u in users:
        old.call(authorize(u, [{"IpProtocol": "tcp", "PortRange": "5432/5432", "SourceGroupId": target}]))
    lonely = create_group(old, "lonely", vpc="vpc-refd")
    r = DescribeSecurityGroupReferencesRequest.DescribeSecurityGroupReferencesRequest()
    r.set_SecurityGroupIds([target, lonely])
    refs = old.call(r)["SecurityGroupReferences"]["SecurityGroupReference"]
    assert [x["SecurityGroupId"] for x in refs] == [target, lonely]
    assert [x["SecurityGroupId"] for x in refs[0]["ReferencingSecurityGroups"]["ReferencingSecurityGroup"]] == users
    assert refs[1]["ReferencingSecurityGroups"]["ReferencingSecurityGroup"] == []
    r.set_SecurityGroupIds(["sg-missing00"])
    assert old.error(r) == ("InvalidSecurityGroupId.NotFound", 404)


def test_tags_on_groups_and_instances(old):
    vpc, vsw = vpc_with_vswitch(old, "10.70.0.0/16", "10.70.0.0/24")
    sg = group(old, vpc, "tagged")
    [inst] = run(old, vsw, [sg])
    t = TagResourcesRequest.TagResourcesRequest()
    t.set_ResourceType("securitygroup")
    t.set_ResourceIds([sg])
    t.set_Tags([{"Key": "env", "Value": "prod"}, {"Key": "team", "Value": "db"}])
    old.call(t)
    ti = TagResourcesRequest.TagResourcesRequest()
    ti.set_ResourceType("instance")
    ti.set_ResourceIds([inst])
    ti.set_Tags([{"Key": "role", "Value": "primary"}])
    old.call(ti)
    l = ListTagResourcesRequest.ListTagResourcesRequest()
    l.set_ResourceType("securitygroup")
    l.set_ResourceIds([sg])
    got = old.call(l)["TagResources"]["TagResource"]
    assert sorted((x["TagKey"], x["TagValue"], x["ResourceType"]) for x in got) == [
        ("env", "prod", "securitygroup"), ("team", "db", "securitygroup")]
    d = DescribeInstancesRequest.DescribeInstancesRequest()
    d.set_InstanceIds(json.dumps([inst]))
    assert old.call(d)["Instances"]["Instance"][0]["Tags"]["Tag"] == [{"TagKey": "role", "TagValue": "primary"}]
    u = UntagResourcesRequest.UntagResourcesRequest()
    u.set_ResourceType("securitygroup")
    u.set_ResourceIds([sg])
    u.set_TagKeys(["env"])
    old.call(u)
    assert [x["TagKey"] for x in old.call(l)["TagResources"]["TagResource"]] == ["team"]
    t = TagResourcesRequest.TagResourcesRequest()
    t.set_ResourceType("securitygroup")
    t.set_ResourceIds([sg, "sg-notmine00"])
    t.set_Tags([{"Key": "x", "Value": "y"}])
    assert old.error(t) == ("InvalidResourceId.NotFound", 404)
    assert [x["TagKey"] for x in old.call(l)["TagResources"]["TagResource"]] == ["team"], "all or nothing"
    t = TagResourcesRequest.TagResourcesRequest()
    t.set_ResourceType("securitygroup")
    t.set_ResourceIds([sg])
    t.set_Tags([{"Key": f"k{i}", "Value": "v"} for i in range(20)])
    assert old.error(t)[0] == "InvalidTagCount"
    t.set_ResourceType("disk")
    assert old.error(t)[0] == "InvalidResourceType.NotSupported"


def test_new_sdk_drives_instances_membership_and_tags(old, new_v3, new_v2):
    vpc, vsw = vpc_with_vswitch(old, "10.80.0.0/16", "10.80.0.0/24")
    for client in (new_v3, new_v2):
        a = client.create_security_group(models.CreateSecurityGroupRequest(region_id=REGION, vpc_id=vpc)).body.security_group_id
        b = client.create_security_group(models.CreateSecurityGroupRequest(region_id=REGION, vpc_id=vpc)).body.security_group_id
        ids = client.run_instances(models.RunInstancesRequest(
            region_id=REGION, image_id="img", instance_type="t", v_switch_id=vsw, security_group_ids=[a], amount=2,
        )).body.instance_id_sets.instance_id_set
        assert len(ids) == 2
        client.join_security_group(models.JoinSecurityGroupRequest(region_id=REGION, instance_id=ids[0], security_group_id=b))
        described = client.describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, instance_ids=json.dumps(ids))).body.instances.instance
        assert [i.security_group_ids.security_group_id for i in described] == [[a, b], [a]]
        client.leave_security_group(models.LeaveSecurityGroupRequest(region_id=REGION, instance_id=ids[0], security_group_id=a))
        client.modify_instance_attribute(models.ModifyInstanceAttributeRequest(
            instance_id=ids[1], security_group_ids=[b, a]))
        described = client.describe_instances(models.DescribeInstancesRequest(
            region_id=REGION, instance_ids=json.dumps(ids))).body.instances.instance
        assert [i.security_group_ids.security_group_id for i in described] == [[b], [b, a]]
        client.authorize_security_group(models.AuthorizeSecurityGroupRequest(
            region_id=REGION, security_group_id=b,
            permissions=[models.AuthorizeSecurityGroupRequestPermissions(ip_protocol="tcp", port_range="5432/5432", source_group_id=a)]))
        refs = client.describe_security_group_references(models.DescribeSecurityGroupReferencesRequest(
            region_id=REGION, security_group_id=[a])).body.security_group_references.security_group_reference
        assert [r.security_group_id for r in refs[0].referencing_security_groups.referencing_security_group] == [b]
        [rule] = client.describe_security_group_attribute(models.DescribeSecurityGroupAttributeRequest(
            region_id=REGION, security_group_id=b)).body.permissions.permission
        client.revoke_security_group(models.RevokeSecurityGroupRequest(
            region_id=REGION, security_group_id=b, security_group_rule_id=[rule.security_group_rule_id]))
        client.tag_resources(models.TagResourcesRequest(
            region_id=REGION, resource_type="instance", resource_id=[ids[0]],
            tag=[models.TagResourcesRequestTag(key="tier", value="db")]))
        listed = client.list_tag_resources(models.ListTagResourcesRequest(
            region_id=REGION, resource_type="instance", resource_id=[ids[0]])).body.tag_resources.tag_resource
        assert [(t.tag_key, t.tag_value) for t in listed] == [("tier", "db")]
        client.stop_instance(models.StopInstanceRequest(instance_id=ids[0]))
        client.delete_instance(models.DeleteInstanceRequest(instance_id=ids[0]))
        client.delete_instance(models.DeleteInstanceRequest(instance_id=ids[1], force=True))
        client.delete_security_group(models.DeleteSecurityGroupRequest(region_id=REGION, security_group_id=b))


def test_describe_security_group_audit(old):
    from test_instances import group, vpc_with_vswitch

    vpc, vsw = vpc_with_vswitch(old, "10.82.0.0/16", "10.82.1.0/24")
    sg = group(old, vpc, "auditme")
    old.call(authorize(sg, [
        {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0", "Priority": "2"},
        {"IpProtocol": "tcp", "PortRange": "6379/6379", "SourceCidrIp": "0.0.0.0/0", "Priority": "2"},
        {"IpProtocol": "tcp", "PortRange": "6379/6379", "SourceCidrIp": "0.0.0.0/0", "Priority": "1", "Policy": "drop"},
    ]))
    body = stockade_action(old, "DescribeSecurityGroupAudit", **{"SecurityGroupId.1": sg})
    # No member has a public address: reached by nothing on the internet yet, and the
    # finding says so.
    [unreached] = [f for f in body["Findings"]["Finding"] if f["Check"] == "risky-port-open"]
    assert unreached["Severity"] == "Medium" and "no member has a public address" in unreached["Message"]
    from aliyunsdkecs.request.v20140526 import RunInstancesRequest

    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("img")
    r.set_InstanceType("ecs.g7.large")
    r.set_SecurityGroupId(sg)
    r.set_VSwitchId(vsw)
    r.set_InternetMaxBandwidthOut(5)
    [i] = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    # RunInstances with outbound bandwidth gives a VPC instance a public address too, and
    # AllocatePublicIpAddress answers it again.
    from aliyunsdkecs.request.v20140526 import AllocatePublicIpAddressRequest, DescribeInstancesRequest

    d = DescribeInstancesRequest.DescribeInstancesRequest()
    d.set_InstanceIds(json.dumps([i]))
    [described] = old.call(d)["Instances"]["Instance"]
    [public] = described["PublicIpAddress"]["IpAddress"]
    a = AllocatePublicIpAddressRequest.AllocatePublicIpAddressRequest()
    a.set_InstanceId(i)
    assert old.call(a)["IpAddress"] == public
    body = stockade_action(old, "DescribeSecurityGroupAudit", **{"SecurityGroupId.1": sg})
    checks = {(f["Check"], f["Severity"]) for f in body["Findings"]["Finding"]}
    assert ("risky-port-open", "High") in checks
    risky = [f for f in body["Findings"]["Finding"] if f["Check"] == "risky-port-open"]
    assert len(risky) == 1 and "[22]" in risky[0]["Message"], "6379 is covered by the drop"
    assert all(f["SecurityGroupId"] == sg for f in body["Findings"]["Finding"])


def test_modify_rule_by_its_fields_as_terraform_does(old):
    sg = create_group(old, "byfields")
    old.call(authorize(sg, [
        {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8", "Description": "old"},
        {"IpProtocol": "tcp", "PortRange": "80/80", "SourceCidrIp": "0.0.0.0/0"},
    ]))
    before = rules(old, sg)
    r = ModifySecurityGroupRuleRequest.ModifySecurityGroupRuleRequest()
    r.set_SecurityGroupId(sg)
    r.set_IpProtocol("tcp")
    r.set_PortRange("22/22")
    r.set_SourceCidrIp("10.0.0.0/8")
    r.set_NicType("intranet")
    r.set_Description("managed by terraform")
    old.call(r)
    after = rules(old, sg)
    assert after[0]["Description"] == "managed by terraform"
    assert [a["SecurityGroupRuleId"] for a in after] == [b["SecurityGroupRuleId"] for b in before]
    assert after[1] == before[1]
    r.set_PortRange("23/23")
    assert old.error(r) == ("InvalidSecurityGroupRule.RuleNotExist", 404)


def test_older_tag_actions(old, new_v3):
    """AddTags, RemoveTags and DescribeTags (the actions before TagResources), with both
    SDK generations reading DescribeTags' counts."""
    from aliyunsdkecs.request.v20140526 import AddTagsRequest, DescribeTagsRequest, RemoveTagsRequest

    sg = create_group(old, name="old-tags")
    add = AddTagsRequest.AddTagsRequest()
    add.set_ResourceType("securitygroup")
    add.set_ResourceId(sg)
    add.set_Tags([{"Key": "tier", "Value": "web-oldtags"}, {"Key": "owner", "Value": "ops"}])
    old.call(add)

    d = DescribeTagsRequest.DescribeTagsRequest()
    d.set_ResourceType("securitygroup")
    d.set_ResourceId(sg)
    tags = {(t["TagKey"], t["TagValue"]): t["ResourceTypeCount"] for t in old.call(d)["Tags"]["Tag"]}
    assert set(tags) == {("tier", "web-oldtags"), ("owner", "ops")}
    assert tags[("tier", "web-oldtags")]["Securitygroup"] == 1

    got = new_v3.describe_tags(models.DescribeTagsRequest(
        region_id=REGION, tag=[models.DescribeTagsRequestTag(key="tier", value="web-oldtags")]))
    listed = got.body.tags.tag
    assert [(t.tag_key, t.tag_value, t.resource_type_count.securitygroup) for t in listed] == [("tier", "web-oldtags", 1)]

    # A key given with another value removes nothing; with its value, it goes.
    rm = RemoveTagsRequest.RemoveTagsRequest()
    rm.set_ResourceType("securitygroup")
    rm.set_ResourceId(sg)
    rm.set_Tags([{"Key": "tier", "Value": "db"}])
    old.call(rm)
    assert len(old.call(d)["Tags"]["Tag"]) == 2
    rm.set_Tags([{"Key": "tier", "Value": "web-oldtags"}])
    old.call(rm)
    assert [t["TagKey"] for t in old.call(d)["Tags"]["Tag"]] == ["owner"]

    bad = AddTagsRequest.AddTagsRequest()
    bad.set_ResourceType("disk")
    bad.set_ResourceId(sg)
    bad.set_Tags([{"Key": "k", "Value": "v"}])
    assert old.error(bad) == ("InvalidResourceType.NotSupported", 400)
    missing = AddTagsRequest.AddTagsRequest()
    missing.set_ResourceType("securitygroup")
    missing.set_ResourceId("sg-nosuchgroup")
    missing.set_Tags([{"Key": "k", "Value": "v"}])
    assert old.error(missing)[0] == "InvalidResourceId.NotFound"


def test_read_filters_fuzzy_names_tag_filters_and_dry_run(old, new_v3):
    """DescribeSecurityGroups `FuzzyQuery` and `ServiceManaged`, ListTagResources
    `TagFilter.N` (any of several values), and `DryRun` on a read."""
    from aliyunsdkecs.request.v20140526 import DescribeSecurityGroupsRequest, ListTagResourcesRequest

    # A part no other test's group names carry (the server is shared by the session).
    part = "-webfzq"
    a = create_group(old, name="fuzzy-alpha" + part, tags={"env": "prod"})
    b = create_group(old, name="fuzzy-beta" + part, tags={"env": "staging"})
    c = create_group(old, name="fuzzy-gamma-dbfzq", tags={"env": "dev"})
    d = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    d.set_SecurityGroupName(part)
    d.set_PageSize(50)
    assert old.call(d)["SecurityGroups"]["SecurityGroup"] == [], "exact by default"
    d.set_FuzzyQuery(True)
    found = {g["SecurityGroupId"] for g in old.call(d)["SecurityGroups"]["SecurityGroup"]}
    assert found == {a, b}
    typed = new_v3.describe_security_groups(models.DescribeSecurityGroupsRequest(
        region_id=REGION, security_group_name="fuzzy-", fuzzy_query=True, service_managed=True))
    assert typed.body.security_groups.security_group == [], "no group is service-managed here"

    t = ListTagResourcesRequest.ListTagResourcesRequest()
    t.set_ResourceType("securitygroup")
    t.set_TagFilters([{"TagKey": "env", "TagValues": ["prod", "staging"]}])
    ids = {r["ResourceId"] for r in old.call(t)["TagResources"]["TagResource"]}
    assert {a, b} <= ids and c not in ids, "env=dev is neither of the values"

    dry = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    dry.set_DryRun(True)
    assert old.error(dry) == ("DryRunOperation", 400)
    bad = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    bad.set_DryRun(True)
    bad.set_VpcId("not-a-vpc")
    assert old.error(bad)[0] != "DryRunOperation", "a dry run still checks the request"


def test_group_attribute_snapshot_policies(new_v3):
    """`DescribeSecurityGroupAttribute Attribute=snapshotPolicyIds`: no disks here, so no
    snapshot policies; any other attribute is refused."""
    sg = new_v3.create_security_group(models.CreateSecurityGroupRequest(region_id=REGION)).body.security_group_id
    got = new_v3.describe_security_group_attribute(models.DescribeSecurityGroupAttributeRequest(
        region_id=REGION, security_group_id=sg, attribute="snapshotPolicyIds")).body
    assert got.snapshot_policy_ids.snapshot_policy_id == []
    try:
        new_v3.describe_security_group_attribute(models.DescribeSecurityGroupAttributeRequest(
            region_id=REGION, security_group_id=sg, attribute="colour"))
    except Exception as e:
        assert getattr(e, "code", "") == "InvalidParameter", e
    else:
        raise AssertionError("an unknown Attribute was accepted")
