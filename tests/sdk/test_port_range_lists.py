"""Port range lists through both SDK generations: create with entries and tags, describe,
modify entries (added, re-described, removed), rules that name them (judged by the engine,
counted as MaxEntries rules, shown with the list's id and name), modifying a rule between a
range and a list, the dependency on delete, each error code, and other accounts kept out."""

import uuid

import pytest
from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupRequest,
    CreatePortRangeListRequest,
    DeletePortRangeListRequest,
    DescribePortRangeListAssociationsRequest,
    DescribePortRangeListEntriesRequest,
    DescribePortRangeListsRequest,
    DescribeSecurityGroupAttributeRequest,
    ModifyPortRangeListRequest,
    ModifySecurityGroupRuleRequest,
    RevokeSecurityGroupRequest,
)
from alibabacloud_ecs20140526 import models
from Tea.exceptions import TeaException

from conftest import REGION, OldSdk, stockade_action
from test_instances import group, run, vpc_with_vswitch


def create(old, name, entries, max_entries=10):
    r = CreatePortRangeListRequest.CreatePortRangeListRequest()
    r.set_PortRangeListName(name)
    r.set_MaxEntries(max_entries)
    r.set_Entrys([{"PortRange": p, "Description": "entry"} for p in entries])
    return old.call(r)["PortRangeListId"]


def entries(old, prl):
    r = DescribePortRangeListEntriesRequest.DescribePortRangeListEntriesRequest()
    r.set_PortRangeListId(prl)
    return [(e["PortRange"], e["Description"]) for e in old.call(r)["Entries"]]


def modify(old, prl, add=(), remove=()):
    m = ModifyPortRangeListRequest.ModifyPortRangeListRequest()
    m.set_PortRangeListId(prl)
    m.set_AddEntrys(list(add))
    m.set_RemoveEntrys(list(remove))
    return m


def authorize(old, sg, prl, source="192.0.2.0/24"):
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_Permissions([{"IpProtocol": "tcp", "PortRangeListId": prl, "SourceCidrIp": source}])
    return au


def test_port_range_lists_with_the_old_sdk(old):
    prl = create(old, "web", ["8080/8080", "443/443", "8000/8010"])
    assert entries(old, prl) == [("443/443", "entry"), ("8000/8010", "entry"), ("8080/8080", "entry")]
    old.call(modify(old, prl, add=[{"PortRange": "9090/9090"}, {"PortRange": "443/443", "Description": "tls"}],
                    remove=[{"PortRange": "8000/8010"}]))
    assert entries(old, prl) == [("443/443", "tls"), ("8080/8080", "entry"), ("9090/9090", "")], \
        "an added range the list has is re-described (ECS: added or modified)"
    # Wrong entries change nothing.
    for add, remove, code in [
        ([{"PortRange": "80"}], [], "InvalidPortRange.Malformed"),
        ([{"PortRange": "90/80"}], [], "InvalidParam.PortRange"),
        ([{"PortRange": "81/81"}, {"PortRange": "81/81"}], [], "InvalidEntry.Duplicated"),
        ([], [{"PortRange": "22/22"}], "InvalidEntry.NotFound"),
        ([{"PortRange": "22/22"}], [{"PortRange": "22/22"}], "InvalidParameter.Conflict"),
        ([{"PortRange": "%d/%d" % (n, n)} for n in range(1, 9)], [], "QuotaExceed.PortRangeListEntry"),
    ]:
        assert old.error(modify(old, prl, add, remove))[0] == code, (add, remove)
    assert len(entries(old, prl)) == 3
    # A rule naming the list: judged by its entries, at once after each entry change.
    vpc, vsw = vpc_with_vswitch(old, "10.65.0.0/16", "10.65.1.0/24")
    sg = group(old, vpc)
    [i] = run(old, vsw, [sg])
    old.call(authorize(old, sg, prl))
    verdict = lambda port: stockade_action(old, "DescribeFlowVerdict", SourceIp="192.0.2.9", DestinationInstanceId=i,
                                           IpProtocol="tcp", DestinationPort=port)["Verdict"]
    assert [verdict(p) for p in (443, 8080, 9090, 8005, 22)] == ["Accept", "Accept", "Accept", "Drop", "Drop"]
    old.call(modify(old, prl, add=[{"PortRange": "22/22"}], remove=[{"PortRange": "9090/9090"}]))
    assert (verdict(22), verdict(9090)) == ("Accept", "Drop"), "an entry change takes effect at once"
    da = DescribeSecurityGroupAttributeRequest.DescribeSecurityGroupAttributeRequest()
    da.set_SecurityGroupId(sg)
    [rule] = old.call(da)["Permissions"]["Permission"]
    assert (rule["PortRangeListId"], rule["PortRangeListName"], rule["PortRange"]) == (prl, "web", "-1/-1")
    assoc = DescribePortRangeListAssociationsRequest.DescribePortRangeListAssociationsRequest()
    assoc.set_PortRangeListId(prl)
    assert old.call(assoc)["PortRangeListAssociations"] == [
        {"ResourceId": sg, "ResourceType": "SecurityGroup"}]
    d = DescribePortRangeListsRequest.DescribePortRangeListsRequest()
    d.set_PortRangeListIds([prl])
    [listed] = old.call(d)["PortRangeLists"]
    assert (listed["PortRangeListName"], listed["MaxEntries"], listed["AssociationCount"]) == ("web", 10, 1)
    # The list is one rule field's second form: a range replaces it, and back.
    mr = ModifySecurityGroupRuleRequest.ModifySecurityGroupRuleRequest()
    mr.set_SecurityGroupId(sg)
    mr.set_SecurityGroupRuleId(rule["SecurityGroupRuleId"])
    mr.set_PortRange("8005/8005")
    old.call(mr)
    assert (verdict(8005), verdict(443)) == ("Accept", "Drop")
    assert old.call(assoc)["PortRangeListAssociations"] == []
    mr = ModifySecurityGroupRuleRequest.ModifySecurityGroupRuleRequest()
    mr.set_SecurityGroupId(sg)
    mr.set_SecurityGroupRuleId(rule["SecurityGroupRuleId"])
    mr.set_PortRangeListId(prl)
    old.call(mr)
    assert (verdict(8005), verdict(443)) == ("Drop", "Accept")
    # A used list cannot be deleted; revoked, it can.
    dl = DeletePortRangeListRequest.DeletePortRangeListRequest()
    dl.set_PortRangeListId(prl)
    assert old.error(dl) == ("DependencyViolation.PortRangeList", 403)
    rv = RevokeSecurityGroupRequest.RevokeSecurityGroupRequest()
    rv.set_SecurityGroupId(sg)
    rv.set_Permissions([{"IpProtocol": "tcp", "PortRangeListId": prl, "SourceCidrIp": "192.0.2.0/24"}])
    old.call(rv)
    assert verdict(443) == "Drop"
    old.call(dl)
    assert old.error(dl) == ("InvalidPortRangeListId.NotFound", 404)


def test_rules_naming_a_port_list_are_checked(old):
    vpc, _ = vpc_with_vswitch(old, "10.66.0.0/16", "10.66.1.0/24")
    sg = group(old, vpc)
    big = create(old, "big", [], max_entries=200)
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_IpProtocol("tcp")
    au.set_PortRange("80/80")
    au.set_SourceCidrIp("10.0.0.0/8")
    old.call(au)
    assert old.error(authorize(old, sg, big)) == ("AuthorizationLimitExceed", 403), "1 rule + 200 entries > 200"
    small = create(old, "small", ["22/22"], max_entries=2)
    for perm, code in [
        ({"IpProtocol": "icmp", "PortRangeListId": small}, "InvalidParam.ProtocolAndPortRangeMismatch"),
        ({"IpProtocol": "tcp", "PortRange": "22/22", "PortRangeListId": small}, "InvalidParameter.Conflict"),
        ({"IpProtocol": "tcp", "PortRangeListId": "prl-nosuchlist"}, "InvalidPortRangeListId.NotFound"),
        ({"IpProtocol": "tcp", "PortRangeListId": "sg-notalist"}, "InvalidPortRangeListId.Malformed"),
    ]:
        r = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
        r.set_SecurityGroupId(sg)
        r.set_Permissions([dict(perm, SourceCidrIp="192.0.2.0/24")])
        assert old.error(r)[0] == code, perm
    c = CreatePortRangeListRequest.CreatePortRangeListRequest()
    c.set_PortRangeListName("toolarge")
    c.set_MaxEntries(2001)
    assert old.error(c)[1] == 400
    c.set_MaxEntries(1)
    c.set_Entrys([{"PortRange": "1/1"}, {"PortRange": "2/2"}])
    assert old.error(c)[0] == "QuotaExceed.PortRangeListEntry"


def test_port_range_lists_with_the_new_sdk_and_other_accounts(server, old, new_v3):
    made = new_v3.create_port_range_list(models.CreatePortRangeListRequest(
        region_id=REGION, port_range_list_name="dbs", max_entries=5, description="databases",
        entry=[models.CreatePortRangeListRequestEntry(port_range="5432/5432", description="pg")],
        tag=[models.CreatePortRangeListRequestTag(key="team", value="data")])).body
    prl = made.port_range_list_id
    body = new_v3.describe_port_range_lists(models.DescribePortRangeListsRequest(
        region_id=REGION, tag=[models.DescribePortRangeListsRequestTag(key="team", value="data")])).body
    assert [l.port_range_list_id for l in body.port_range_lists] == [prl]
    [l] = body.port_range_lists
    assert (l.max_entries, l.description, l.tags[0].tag_key) == (5, "databases", "team")
    new_v3.modify_port_range_list(models.ModifyPortRangeListRequest(
        region_id=REGION, port_range_list_id=prl, port_range_list_name="databases",
        add_entry=[models.ModifyPortRangeListRequestAddEntry(port_range="3306/3306")]))
    got = new_v3.describe_port_range_list_entries(models.DescribePortRangeListEntriesRequest(
        region_id=REGION, port_range_list_id=prl)).body
    assert [e.port_range for e in got.entries] == ["3306/3306", "5432/5432"]
    assoc = new_v3.describe_port_range_list_associations(models.DescribePortRangeListAssociationsRequest(
        region_id=REGION, port_range_list_id=prl, max_results=10)).body
    assert assoc.port_range_list_associations == [] and not assoc.next_token
    other = server.create_account("prl-" + uuid.uuid4().hex[:8])
    them = OldSdk(server, other["AccessKeyId"], other["AccessKeySecret"])
    assert them.call(DescribePortRangeListsRequest.DescribePortRangeListsRequest())["PortRangeLists"] == []
    r = DescribePortRangeListEntriesRequest.DescribePortRangeListEntriesRequest()
    r.set_PortRangeListId(prl)
    assert them.error(r) == ("InvalidPortRangeListId.NotFound", 404)
    assert them.error(modify(them, prl, add=[{"PortRange": "1/65535"}])) == ("InvalidPortRangeListId.NotFound", 404)
    vpc, _ = vpc_with_vswitch(them, "10.67.0.0/16", "10.67.1.0/24")
    sg = group(them, vpc)
    assert them.error(authorize(them, sg, prl)) == ("InvalidPortRangeListId.NotFound", 404)
    new_v3.delete_port_range_list(models.DeletePortRangeListRequest(region_id=REGION, port_range_list_id=prl))
    with pytest.raises(TeaException) as e:
        new_v3.describe_port_range_list_entries(models.DescribePortRangeListEntriesRequest(
            region_id=REGION, port_range_list_id=prl))
    assert e.value.code == "InvalidPortRangeListId.NotFound"
