"""Prefix lists through both SDK generations: create with entries and tags, describe, modify
entries, associations, rules that name them (counted as MaxEntries rules, judged by the
engine), the dependency on delete, and other accounts kept out."""

import uuid

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupRequest,
    CreatePrefixListRequest,
    DeletePrefixListRequest,
    DescribePrefixListAssociationsRequest,
    DescribePrefixListAttributesRequest,
    DescribePrefixListsRequest,
    ModifyPrefixListRequest,
    RevokeSecurityGroupRequest,
)
from alibabacloud_ecs20140526 import models
from Tea.exceptions import TeaException

from conftest import REGION, OldSdk, stockade_action
from test_instances import group, run, vpc_with_vswitch


def create(old, name, entries, max_entries=10, family="IPv4"):
    r = CreatePrefixListRequest.CreatePrefixListRequest()
    r.set_PrefixListName(name)
    r.set_AddressFamily(family)
    r.set_MaxEntries(max_entries)
    r.set_Entrys([{"Cidr": c, "Description": "entry"} for c in entries])
    return old.call(r)["PrefixListId"]


def attributes(old, pl):
    r = DescribePrefixListAttributesRequest.DescribePrefixListAttributesRequest()
    r.set_PrefixListId(pl)
    return old.call(r)


def test_prefix_lists_with_the_old_sdk(old):
    pl = create(old, "office", ["192.0.2.0/24", "198.51.100.0/24"])
    a = attributes(old, pl)
    assert (a["PrefixListName"], a["AddressFamily"], a["MaxEntries"]) == ("office", "IPv4", 10)
    assert [e["Cidr"] for e in a["Entries"]["Entry"]] == ["192.0.2.0/24", "198.51.100.0/24"]
    m = ModifyPrefixListRequest.ModifyPrefixListRequest()
    m.set_PrefixListId(pl)
    m.set_AddEntrys([{"Cidr": "203.0.113.0/24"}])
    m.set_RemoveEntrys([{"Cidr": "198.51.100.0/24"}])
    old.call(m)
    assert [e["Cidr"] for e in attributes(old, pl)["Entries"]["Entry"]] == ["192.0.2.0/24", "203.0.113.0/24"]
    # Wrong entries change nothing.
    for add, remove, code in [
        ([{"Cidr": "2001:db8::/32"}], [], "InvalidEntry.Malformed"),
        ([{"Cidr": "192.0.2.0/24"}], [], "InvalidEntry.Duplicated"),
        ([], [{"Cidr": "10.0.0.0/8"}], "InvalidEntry.NotFound"),
        ([{"Cidr": "10.%d.0.0/16" % n} for n in range(9)], [], "QuotaExceed.PrefixListEntry"),
    ]:
        m = ModifyPrefixListRequest.ModifyPrefixListRequest()
        m.set_PrefixListId(pl)
        m.set_AddEntrys(add)
        m.set_RemoveEntrys(remove)
        assert old.error(m)[0] == code
    assert len(attributes(old, pl)["Entries"]["Entry"]) == 2
    d = DescribePrefixListsRequest.DescribePrefixListsRequest()
    d.set_PrefixListIds([pl])
    [listed] = old.call(d)["PrefixLists"]["PrefixList"]
    assert (listed["PrefixListId"], listed["AssociationCount"]) == (pl, 0)
    # A rule naming the list: judged by its entries, counted as MaxEntries rules.
    vpc, vsw = vpc_with_vswitch(old, "10.60.0.0/16", "10.60.1.0/24")
    sg = group(old, vpc)
    [i] = run(old, vsw, [sg])
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_IpProtocol("tcp")
    au.set_PortRange("22/22")
    au.set_SourcePrefixListId(pl)
    old.call(au)
    verdict = lambda ip: stockade_action(old, "DescribeFlowVerdict", SourceIp=ip, DestinationInstanceId=i,
                                         IpProtocol="tcp", DestinationPort=22)["Verdict"]
    assert (verdict("203.0.113.9"), verdict("198.51.100.9")) == ("Accept", "Drop")
    m = ModifyPrefixListRequest.ModifyPrefixListRequest()
    m.set_PrefixListId(pl)
    m.set_AddEntrys([{"Cidr": "198.51.100.0/24"}])
    old.call(m)
    assert verdict("198.51.100.9") == "Accept", "an entry change takes effect at once"
    assoc = DescribePrefixListAssociationsRequest.DescribePrefixListAssociationsRequest()
    assoc.set_PrefixListId(pl)
    assert old.call(assoc)["PrefixListAssociations"]["PrefixListAssociation"] == [
        {"ResourceId": sg, "ResourceType": "securitygroup"}]
    # A used list cannot be deleted; revoked, it can.
    dl = DeletePrefixListRequest.DeletePrefixListRequest()
    dl.set_PrefixListId(pl)
    assert old.error(dl) == ("DependencyViolation.PrefixList", 403)
    rv = RevokeSecurityGroupRequest.RevokeSecurityGroupRequest()
    rv.set_SecurityGroupId(sg)
    rv.set_IpProtocol("tcp")
    rv.set_PortRange("22/22")
    rv.set_SourcePrefixListId(pl)
    old.call(rv)
    old.call(dl)
    assert old.error(dl) == ("InvalidPrefixListId.NotFound", 404)


def test_a_list_counts_as_its_max_entries_rules(old):
    vpc, _ = vpc_with_vswitch(old, "10.61.0.0/16", "10.61.1.0/24")
    sg = group(old, vpc)
    big = create(old, "big", [], max_entries=200)
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_IpProtocol("tcp")
    au.set_PortRange("80/80")
    au.set_SourceCidrIp("10.0.0.0/8")
    old.call(au)
    au2 = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au2.set_SecurityGroupId(sg)
    au2.set_IpProtocol("tcp")
    au2.set_PortRange("443/443")
    au2.set_SourcePrefixListId(big)
    assert old.error(au2) == ("AuthorizationLimitExceed", 403), "1 rule + 200 entries > 200"


def test_prefix_lists_with_the_new_sdk_and_other_accounts(server, old, new_v3):
    made = new_v3.create_prefix_list(models.CreatePrefixListRequest(
        region_id=REGION, prefix_list_name="v6list", address_family="IPv6", max_entries=5,
        entry=[models.CreatePrefixListRequestEntry(cidr="2001:db8::/32", description="docs")],
        tag=[models.CreatePrefixListRequestTag(key="team", value="net")])).body
    pl = made.prefix_list_id
    body = new_v3.describe_prefix_lists(models.DescribePrefixListsRequest(
        region_id=REGION, prefix_list_id=[pl])).body
    [l] = body.prefix_lists.prefix_list
    assert (l.address_family, l.max_entries, l.tags.tag[0].tag_key) == ("IPv6", 5, "team")
    attr = new_v3.describe_prefix_list_attributes(models.DescribePrefixListAttributesRequest(
        region_id=REGION, prefix_list_id=pl)).body
    assert attr.entries.entry[0].cidr == "2001:db8::/32"
    other = server.create_account("pl-" + uuid.uuid4().hex[:8])
    them = OldSdk(server, other["AccessKeyId"], other["AccessKeySecret"])
    assert them.call(DescribePrefixListsRequest.DescribePrefixListsRequest())["PrefixLists"]["PrefixList"] == []
    r = DescribePrefixListAttributesRequest.DescribePrefixListAttributesRequest()
    r.set_PrefixListId(pl)
    assert them.error(r) == ("InvalidPrefixListId.NotFound", 404)
    vpc, _ = vpc_with_vswitch(them, "10.62.0.0/16", "10.62.1.0/24")
    sg = group(them, vpc)
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_IpProtocol("tcp")
    au.set_PortRange("22/22")
    au.set_SourcePrefixListId(pl)
    assert them.error(au) == ("InvalidPrefixListId.NotFound", 404)
    new_v3.delete_prefix_list(models.DeletePrefixListRequest(region_id=REGION, prefix_list_id=pl))
    with pytest.raises(TeaException) as e:
        new_v3.describe_prefix_list_attributes(models.DescribePrefixListAttributesRequest(
            region_id=REGION, prefix_list_id=pl))
    assert e.value.code == "InvalidPrefixListId.NotFound"
