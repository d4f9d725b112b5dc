"""Security groups and rules through the official SDKs, as users call them."""

import json
import uuid
import xml.etree.ElementTree as ET

import pytest
from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupEgressRequest,
    AuthorizeSecurityGroupRequest,
    CreateSecurityGroupRequest,
    DeleteSecurityGroupRequest,
    DescribeRegionsRequest,
    DescribeSecurityGroupAttributeRequest,
    DescribeSecurityGroupsRequest,
    ModifySecurityGroupAttributeRequest,
    ModifySecurityGroupPolicyRequest,
    RevokeSecurityGroupEgressRequest,
    RevokeSecurityGroupRequest,
)
from aliyunsdkvpc.request.v20160428 import CreateVpcRequest
from alibabacloud_ecs20140526 import models
from Tea.exceptions import TeaException

from conftest import OldSdk, new_client, raw, signed_v1_url, REGION


_vpcs = {}


def real_vpc(old, name):
    """The VPC a test calls `name`, created on first use in the client's account."""
    key = (old.client.get_access_key(), name)
    if key not in _vpcs:
        _vpcs[key] = old.call(CreateVpcRequest.CreateVpcRequest())["VpcId"]
    return _vpcs[key]


def create_group(old, name="web", vpc="vpc-test1", kind=None, tags=None):
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_SecurityGroupName(name)
    if vpc:
        r.set_VpcId(real_vpc(old, vpc))
    if kind:
        r.set_SecurityGroupType(kind)
    if tags:
        r.set_Tags([{"Key": k, "Value": v} for k, v in tags.items()])
    return old.call(r)["SecurityGroupId"]


def authorize(group, permissions, egress=False):
    r = (AuthorizeSecurityGroupEgressRequest.AuthorizeSecurityGroupEgressRequest() if egress
         else AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest())
    r.set_SecurityGroupId(group)
    r.set_Permissions(permissions)
    return r


def attribute(old, group, direction=None):
    r = DescribeSecurityGroupAttributeRequest.DescribeSecurityGroupAttributeRequest()
    r.set_SecurityGroupId(group)
    if direction:
        r.set_Direction(direction)
    return old.call(r)


def rules(old, group, direction=None):
    return attribute(old, group, direction)["Permissions"]["Permission"]


def test_describe_regions_with_both_sdks(old, new_v3):
    regions = old.call(DescribeRegionsRequest.DescribeRegionsRequest())["Regions"]["Region"]
    assert REGION in [r["RegionId"] for r in regions]
    body = new_v3.describe_regions(models.DescribeRegionsRequest()).body
    assert REGION in [r.region_id for r in body.regions.region]
    # The filters Terraform's data sources send: every region and zone here offers every
    # charge type and spot strategy, so each holds for all; an unknown value is refused.
    body = new_v3.describe_regions(models.DescribeRegionsRequest(
        accept_language="en-US", instance_charge_type="PostPaid", resource_type="instance")).body
    assert REGION in [r.region_id for r in body.regions.region]
    zones = new_v3.describe_zones(models.DescribeZonesRequest(
        region_id=REGION, instance_charge_type="PostPaid", spot_strategy="NoSpot", verbose=True)).body
    assert len(zones.zones.zone) == 11
    from aliyunsdkecs.request.v20140526 import DescribeZonesRequest

    z = DescribeZonesRequest.DescribeZonesRequest()
    z.set_InstanceChargeType("Monthly")
    assert old.error(z) == ("InvalidParameter", 400)


def test_create_describe_modify_delete_group(old):
    sg = create_group(old, "lifecycle", tags={"team": "web", "env": "test"})
    assert sg.startswith("sg-")
    r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    r.set_SecurityGroupIds(json.dumps([sg]))
    found = old.call(r)
    assert found["TotalCount"] == 1
    g = found["SecurityGroups"]["SecurityGroup"][0]
    assert (g["SecurityGroupId"], g["SecurityGroupName"], g["VpcId"], g["SecurityGroupType"]) == (sg, "lifecycle", real_vpc(old, "vpc-test1"), "normal")
    assert {t["TagKey"]: t["TagValue"] for t in g["Tags"]["Tag"]} == {"team": "web", "env": "test"}
    assert g["CreationTime"].endswith("Z")

    m = ModifySecurityGroupAttributeRequest.ModifySecurityGroupAttributeRequest()
    m.set_SecurityGroupId(sg)
    m.set_SecurityGroupName("renamed")
    m.set_Description("the web tier")
    old.call(m)
    a = attribute(old, sg)
    assert (a["SecurityGroupName"], a["Description"], a["InnerAccessPolicy"]) == ("renamed", "the web tier", "Accept")

    p = ModifySecurityGroupPolicyRequest.ModifySecurityGroupPolicyRequest()
    p.set_SecurityGroupId(sg)
    p.set_InnerAccessPolicy("Drop")
    old.call(p)
    assert attribute(old, sg)["InnerAccessPolicy"] == "Drop"

    d = DeleteSecurityGroupRequest.DeleteSecurityGroupRequest()
    d.set_SecurityGroupId(sg)
    old.call(d)
    assert old.error(d) == ("InvalidSecurityGroupId.NotFound", 404)


def test_group_parameter_errors(old):
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_VpcId("vpc-nosuchvpc")
    assert old.error(r) == ("InvalidVpcId.NotFound", 404)
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_SecurityGroupName("1bad")
    assert old.error(r) == ("InvalidSecurityGroupName.Malformed", 400)
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_Description("http://example.com")
    assert old.error(r) == ("InvalidSecurityGroupDiscription.Malformed", 400)
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_Tags([{"Key": "aliyun-reserved", "Value": "x"}])
    assert old.error(r)[0] == "InvalidTagKey.Malformed"
    ent = create_group(old, "ent", kind="enterprise")
    p = ModifySecurityGroupPolicyRequest.ModifySecurityGroupPolicyRequest()
    p.set_SecurityGroupId(ent)
    p.set_InnerAccessPolicy("Accept")
    assert old.error(p) == ("OperationDenied", 403)
    p.set_SecurityGroupId("sg-doesnotexist")
    assert old.error(p) == ("InvalidSecurityGroupId.NotFound", 404)
    p.set_SecurityGroupId("not-an-id")
    assert old.error(p) == ("InvalidSecurityGroupId.Malformed", 400)


def test_describe_security_groups_filters_and_pages(old):
    name = "vpc-pages" + uuid.uuid4().hex[:6]
    ids = [create_group(old, f"page{i}", vpc=name, tags={"batch": "pages"}) for i in range(5)]
    vpc = real_vpc(old, name)
    r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    r.set_VpcId(vpc)
    r.set_PageSize(2)
    r.set_PageNumber(3)
    page = old.call(r)
    assert (page["TotalCount"], page["PageNumber"], page["PageSize"]) == (5, 3, 2)
    assert [g["SecurityGroupId"] for g in page["SecurityGroups"]["SecurityGroup"]] == ids[4:]
    seen, token = [], None
    while True:
        r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
        r.set_VpcId(vpc)
        r.set_MaxResults(2)
        if token:
            r.set_NextToken(token)
        body = old.call(r)
        seen += [g["SecurityGroupId"] for g in body["SecurityGroups"]["SecurityGroup"]]
        token = body["NextToken"]
        if not token:
            break
    assert seen == ids
    r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    r.set_SecurityGroupName("page3")
    r.set_VpcId(vpc)
    assert [g["SecurityGroupId"] for g in old.call(r)["SecurityGroups"]["SecurityGroup"]] == [ids[3]]
    r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    r.set_SecurityGroupIds("not json")
    assert old.error(r) == ("InvalidParameter", 400)


def test_authorize_permissions_and_flat_forms(old):
    sg = create_group(old, "rules")
    old.call(authorize(sg, [
        {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8", "Priority": "5", "Description": "ssh"},
        {"IpProtocol": "udp", "PortRange": "53/53", "SourceCidrIp": "192.168.0.1", "Policy": "drop"},
        {"IpProtocol": "icmp", "PortRange": "-1/-1", "SourceCidrIp": "0.0.0.0/0"},
        {"IpProtocol": "tcp", "PortRange": "443/443", "Ipv6SourceCidrIp": "2001:db8::/32", "SourcePortRange": "1024/65535"},
    ]))
    flat = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    flat.set_SecurityGroupId(sg)
    flat.set_IpProtocol("TCP")
    flat.set_PortRange("80/80")
    flat.set_SourceCidrIp("0.0.0.0/0")
    flat.set_DestCidrIp("172.16.0.0/12")
    old.call(flat)
    got = rules(old, sg)
    assert [(p["IpProtocol"], p["PortRange"]) for p in got] == [
        ("TCP", "22/22"), ("UDP", "53/53"), ("ICMP", "-1/-1"), ("TCP", "443/443"), ("TCP", "80/80")]
    ssh, dns, _, v6, web = got
    assert (ssh["Priority"], ssh["Policy"], ssh["Description"], ssh["NicType"]) == ("5", "Accept", "ssh", "intranet")
    assert (dns["Policy"], dns["SourceCidrIp"], dns["Priority"]) == ("Drop", "192.168.0.1/32", "1")
    assert (v6["Ipv6SourceCidrIp"], v6["SourcePortRange"], v6["SourceCidrIp"]) == ("2001:db8::/32", "1024/65535", "")
    assert web["DestCidrIp"] == "172.16.0.0/12"
    assert all(p["SecurityGroupRuleId"].startswith("sgr-") and p["CreateTime"].endswith("Z") for p in got)
    # The same rule again is a successful no-op.
    old.call(authorize(sg, [{"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8", "Priority": "5"}]))
    assert len(rules(old, sg)) == 5


@pytest.mark.parametrize("permission,code", [
    ({"IpProtocol": "tcp", "PortRange": "200/1", "SourceCidrIp": "0.0.0.0/0"}, "InvalidParam.PortRange"),
    ({"IpProtocol": "tcp", "PortRange": "22", "SourceCidrIp": "0.0.0.0/0"}, "InvalidPortRange.Malformed"),
    ({"IpProtocol": "tcp", "SourceCidrIp": "0.0.0.0/0"}, "InvalidPortRange.Malformed"),
    ({"IpProtocol": "icmp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}, "InvalidParam.ProtocolAndPortRangeMismatch"),
    ({"IpProtocol": "sctp", "PortRange": "1/2", "SourceCidrIp": "0.0.0.0/0"}, "InvalidIpProtocol.ValueNotSupported"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "0.0.0.0/0", "Priority": "101"}, "InvalidPriority.ValueNotSupported"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "0.0.0.0/0", "Priority": "high"}, "InvalidPriority.Malformed"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "0.0.0.0/0", "Policy": "deny"}, "InvalidPolicy.Malformed"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "10.0.0.0/33"}, "InvalidSourceCidrIp.Malformed"),
    ({"IpProtocol": "tcp", "PortRange": "1/2"}, "MissingParameter.Source"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "1.2.3.4", "Ipv6SourceCidrIp": "::1"}, "InvalidParameter.Conflict"),
    ({"IpProtocol": "icmp", "PortRange": "-1/-1", "Ipv6SourceCidrIp": "::/0"}, "InvalidParam.Ipv4ProtocolConflictWithIpv6Address"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceCidrIp": "1.2.3.4", "NicType": "wan"}, "InvalidNicType.ValueNotSupported"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": "sg-nosuchgroup"}, "InvalidSourceGroupId.NotFound"),
    ({"IpProtocol": "tcp", "PortRange": "1/2", "SourcePrefixListId": "pl-nosuchlist"}, "InvalidPrefixListId.NotFound"),
])
def test_authorize_errors_change_nothing(old, permission, code):
    sg = create_group(old, "errors")
    request = authorize(sg, [{"IpProtocol": "tcp", "PortRange": "8080/8080", "SourceCidrIp": "0.0.0.0/0"}, permission])
    assert old.error(request)[0] == code
    assert rules(old, sg) == [], "a refused request changes nothing"


def test_duplicates_and_mixed_forms_are_refused(old):
    sg = create_group(old, "dups")
    same = {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "0.0.0.0/0"}
    assert old.error(authorize(sg, [same, dict(same)])) == ("InvalidParam.DuplicatePermissions", 400)
    mixed = authorize(sg, [same])
    mixed.set_IpProtocol("udp")
    assert old.error(mixed) == ("InvalidParam.Permissions", 400)


def test_revoke_by_ids_and_by_fields(old):
    sg = create_group(old, "revoke")
    old.call(authorize(sg, [
        {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "10.0.0.0/8"},
        {"IpProtocol": "tcp", "PortRange": "80/80", "SourceCidrIp": "0.0.0.0/0"},
    ]))
    old.call(authorize(sg, [{"IpProtocol": "tcp", "PortRange": "443/443", "DestCidrIp": "0.0.0.0/0"}], egress=True))
    ingress = rules(old, sg, "ingress")
    assert len(ingress) == 2 and len(rules(old, sg, "egress")) == 1
    by_id = RevokeSecurityGroupRequest.RevokeSecurityGroupRequest()
    by_id.set_SecurityGroupId(sg)
    by_id.set_SecurityGroupRuleIds([ingress[0]["SecurityGroupRuleId"]])
    old.call(by_id)
    assert [p["PortRange"] for p in rules(old, sg, "ingress")] == ["80/80"]
    assert old.error(by_id) == ("InvalidSecurityGroupRuleId.NotFound", 404)
    # An egress rule id does not name an ingress rule.
    wrong_direction = RevokeSecurityGroupRequest.RevokeSecurityGroupRequest()
    wrong_direction.set_SecurityGroupId(sg)
    wrong_direction.set_SecurityGroupRuleIds([rules(old, sg, "egress")[0]["SecurityGroupRuleId"]])
    assert old.error(wrong_direction)[0] == "InvalidSecurityGroupRuleId.NotFound"
    by_fields = RevokeSecurityGroupRequest.RevokeSecurityGroupRequest()
    by_fields.set_SecurityGroupId(sg)
    by_fields.set_Permissions([{"IpProtocol": "tcp", "PortRange": "81/81", "SourceCidrIp": "0.0.0.0/0"}])
    old.call(by_fields)  # no match: success, nothing deleted
    assert len(rules(old, sg, "ingress")) == 1
    by_fields.set_Permissions([{"IpProtocol": "TCP", "PortRange": "80/80", "SourceCidrIp": "0.0.0.0/0"}])
    old.call(by_fields)
    assert rules(old, sg, "ingress") == []
    egress = RevokeSecurityGroupEgressRequest.RevokeSecurityGroupEgressRequest()
    egress.set_SecurityGroupId(sg)
    egress.set_Permissions([{"IpProtocol": "tcp", "PortRange": "443/443", "DestCidrIp": "0.0.0.0/0"}])
    old.call(egress)
    assert rules(old, sg) == []


def test_group_references_and_dependencies(old):
    web = create_group(old, "refweb", vpc="vpc-refs")
    db = create_group(old, "refdb", vpc="vpc-refs")
    other_vpc = create_group(old, "elsewhere", vpc="vpc-other")
    classic = create_group(old, "classic", vpc=None)
    old.call(authorize(db, [{"IpProtocol": "tcp", "PortRange": "3306/3306", "SourceGroupId": web}]))
    old.call(authorize(web, [{"IpProtocol": "tcp", "PortRange": "3306/3306", "DestGroupId": db}], egress=True))
    [rule] = rules(old, db)
    assert (rule["SourceGroupId"], rule["SourceGroupName"], rule["NicType"]) == (web, "refweb", "intranet")
    [out] = rules(old, web, "egress")
    assert (out["DestGroupId"], out["DestGroupName"]) == (db, "refdb")
    assert old.error(authorize(db, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": other_vpc}]))[0] == "InvalidSourceGroupId.Mismatch"
    assert old.error(authorize(db, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": classic}]))[0] == "InvalidNetworkType.Conflict"
    assert old.error(authorize(web, [{"IpProtocol": "tcp", "PortRange": "1/2", "DestGroupId": other_vpc}], egress=True))[0] == "InvalidDestGroupId.Mismatch"
    d = DeleteSecurityGroupRequest.DeleteSecurityGroupRequest()
    d.set_SecurityGroupId(web)
    assert old.error(d) == ("DependencyViolation", 403)
    ent = create_group(old, "entref", vpc="vpc-refs", kind="enterprise")
    assert old.error(authorize(ent, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": web}]))[0] == "InvalidGroupAuthParameter.OperationDenied"


def test_group_rule_limit(old):
    sg = create_group(old, "manyrefs", vpc="vpc-limit")
    peers = [create_group(old, f"peer{i}", vpc="vpc-limit") for i in range(21)]
    old.call(authorize(sg, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": p} for p in peers[:20]]))
    assert old.error(authorize(sg, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": peers[20]}])) == ("AuthorizedGroupRule.LimitExceed", 400)


def test_rule_limit(old):
    sg = create_group(old, "full")
    batch = lambda start: [{"IpProtocol": "tcp", "PortRange": f"{p}/{p}", "SourceCidrIp": "0.0.0.0/0"} for p in range(start, start + 100)]
    old.call(authorize(sg, batch(1)))
    old.call(authorize(sg, batch(101)))
    assert old.error(authorize(sg, batch(201)[:1]))[0] == "AuthorizationLimitExceed"
    assert len(rules(old, sg)) == 200


def test_new_sdk_v3_and_v2_signatures(server, old, new_v3, new_v2):
    for client in (new_v3, new_v2):
        sg = client.create_security_group(models.CreateSecurityGroupRequest(
            region_id=REGION, security_group_name="newsdk", vpc_id=real_vpc(old, "vpc-new"))).body.security_group_id
        client.authorize_security_group(models.AuthorizeSecurityGroupRequest(
            region_id=REGION, security_group_id=sg,
            permissions=[models.AuthorizeSecurityGroupRequestPermissions(
                ip_protocol="TCP", port_range="8443/8443", source_cidr_ip="198.18.0.0/15", priority="3")]))
        body = client.describe_security_group_attribute(models.DescribeSecurityGroupAttributeRequest(
            region_id=REGION, security_group_id=sg)).body
        [p] = body.permissions.permission
        assert (p.port_range, p.priority, p.source_cidr_ip, p.policy) == ("8443/8443", "3", "198.18.0.0/15", "Accept")
        with pytest.raises(TeaException) as e:
            client.delete_security_group(models.DeleteSecurityGroupRequest(region_id=REGION, security_group_id="sg-missing0"))
        assert e.value.code == "InvalidSecurityGroupId.NotFound"


def test_xml_format(server, old):
    sg = create_group(old, "xmlgroup")
    xml_client = OldSdk(server, server.ak, server.sk, fmt="xml")
    r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    r.set_SecurityGroupIds(json.dumps([sg]))
    root = ET.fromstring(xml_client.call(r))
    assert root.tag == "DescribeSecurityGroupsResponse"
    assert root.find("SecurityGroups/SecurityGroup/SecurityGroupId").text == sg
    assert root.find("RequestId").text
    url, _ = signed_v1_url(server, {"Action": "DeleteSecurityGroup", "SecurityGroupId": "sg-nothere", "Format": "XML"})
    status, text = raw(url)
    assert status == 404
    err = ET.fromstring(text)
    assert err.tag == "Error" and err.find("Code").text == "InvalidSecurityGroupId.NotFound"


def test_accounts_are_isolated(server, old):
    # Classic-network groups: cross-account references need no shared VPC.
    mine = create_group(old, "private", vpc=None)
    creds = server.create_account("tenant-" + uuid.uuid4().hex[:8])
    assert set(creds) == {"AccountId", "AccountName", "AccessKeyId", "AccessKeySecret"}
    theirs = OldSdk(server, creds["AccessKeyId"], creds["AccessKeySecret"])
    assert theirs.call(DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest())["TotalCount"] == 0
    d = DeleteSecurityGroupRequest.DeleteSecurityGroupRequest()
    d.set_SecurityGroupId(mine)
    assert theirs.error(d) == ("InvalidSecurityGroupId.NotFound", 404)
    their_group = create_group(theirs, "theirs", vpc=None)
    # Referencing another account's group needs its owner.
    assert old.error(authorize(mine, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": their_group}]))[0] == "InvalidSourceGroupId.NotFound"
    old.call(authorize(mine, [{"IpProtocol": "tcp", "PortRange": "1/2", "SourceGroupId": their_group,
                               "SourceGroupOwnerId": creds["AccountId"]}]))
    assert rules(old, mine)[0]["SourceGroupOwnerId"] == creds["AccountId"]


def test_signature_failures(server, old):
    url, sts = signed_v1_url(server, {"Action": "DescribeRegions"}, secret="wrong")
    status, body = raw(url)
    assert (status, body["Code"]) == (400, "SignatureDoesNotMatch")
    assert body["Message"].split("server string to sign is:")[1] == sts
    assert body["RequestId"] and body["HostId"] and body["Recommend"]
    # The old SDK recognises the message and reports a wrong secret.
    wrong = OldSdk(server, server.ak, "not-the-secret")
    assert wrong.error(DescribeRegionsRequest.DescribeRegionsRequest())[0] == "InvalidAccessKeySecret"
    unknown = OldSdk(server, "LTAIunknownkey", "whatever")
    assert unknown.error(DescribeRegionsRequest.DescribeRegionsRequest()) == ("InvalidAccessKeyId.NotFound", 404)
    status, body = raw(f"http://{server.endpoint}/?Action=DescribeRegions&Version=2014-05-26")
    assert (status, body["Code"]) == (400, "MissingParameter")


def test_replayed_nonce_and_expired_timestamp(server):
    url, _ = signed_v1_url(server, {"Action": "DescribeRegions"}, nonce="fixed-" + uuid.uuid4().hex)
    assert raw(url)[0] == 200
    status, body = raw(url)
    assert (status, body["Code"]) == (400, "SignatureNonceUsed")
    url, _ = signed_v1_url(server, {"Action": "DescribeRegions"}, timestamp="2020-01-01T00:00:00Z")
    status, body = raw(url)
    assert (status, body["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_post_form_body_is_signed_and_read(server):
    url, _ = signed_v1_url(server, {"Action": "CreateSecurityGroup", "SecurityGroupName": "fromform"}, method="POST")
    base, query = url.split("?", 1)
    status, body = raw(base, method="POST", body=query.encode(),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200 and body["SecurityGroupId"].startswith("sg-")


def test_client_token_makes_retries_idempotent(old):
    token = uuid.uuid4().hex
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_SecurityGroupName("idem")
    r.set_ClientToken(token)
    first = old.call(r)["SecurityGroupId"]
    assert old.call(r)["SecurityGroupId"] == first
    r.set_SecurityGroupName("different")
    assert old.error(r) == ("IdempotentParameterMismatch", 400)


def test_dry_run_validates_without_applying(old):
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_SecurityGroupName("dryrun" + uuid.uuid4().hex[:6])
    r.add_query_param("DryRun", "true")
    assert old.error(r) == ("DryRunOperation", 400)
    d = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    d.set_SecurityGroupName(r.get_query_params()["SecurityGroupName"])
    assert old.call(d)["TotalCount"] == 0
    bad = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    bad.set_SecurityGroupName("9bad")
    bad.add_query_param("DryRun", "true")
    assert old.error(bad)[0] == "InvalidSecurityGroupName.Malformed"


def test_unknown_action_and_region(server):
    url, _ = signed_v1_url(server, {"Action": "FlyToTheMoon"})
    status, body = raw(url)
    assert (status, body["Code"]) == (404, "InvalidAction.NotFound")
    url, _ = signed_v1_url(server, {"Action": "DescribeSecurityGroups", "RegionId": "mars-north-1"})
    assert raw(url)[1]["Code"] == "InvalidRegionId.NotFound"


def test_describe_zones_and_account_attributes(old, new_v3):
    from aliyunsdkecs.request.v20140526 import DescribeAccountAttributesRequest, DescribeZonesRequest

    zones = old.call(DescribeZonesRequest.DescribeZonesRequest())["Zones"]["Zone"]
    assert REGION + "-h" in [z["ZoneId"] for z in zones]
    body = new_v3.describe_zones(models.DescribeZonesRequest(region_id=REGION)).body
    assert body.zones.zone[0].zone_id == REGION + "-a"
    r = DescribeAccountAttributesRequest.DescribeAccountAttributesRequest()
    r.set_AttributeNames(["max-security-groups"])
    [item] = old.call(r)["AccountAttributeItems"]["AccountAttributeItem"]
    assert (item["AttributeName"], item["AttributeValues"]["ValueItem"][0]["Value"]) == ("max-security-groups", "1000")
    body = new_v3.describe_account_attributes(models.DescribeAccountAttributesRequest(region_id=REGION)).body
    names = {i.attribute_name for i in body.account_attribute_items.account_attribute_item}
    assert {"max-security-groups", "max-elastic-network-interfaces", "instance-network-type"} <= names
