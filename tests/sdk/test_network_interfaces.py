"""Network interfaces through both SDK generations: every instance's primary interface,
interfaces of their own (create, describe with filters and paging, modify, tags, delete),
group membership by interface, the errors ECS gives, and placement kept from tenants."""

import uuid

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkecs.request.v20140526 import (
    CreateNetworkInterfaceRequest,
    DeleteNetworkInterfaceRequest,
    DescribeNetworkInterfaceAttributeRequest,
    DescribeNetworkInterfacesRequest,
    JoinSecurityGroupRequest,
    LeaveSecurityGroupRequest,
    ModifyNetworkInterfaceAttributeRequest,
    TagResourcesRequest,
)
from alibabacloud_ecs20140526 import models
from Tea.exceptions import TeaException

from conftest import REGION, OldSdk, stockade_action
from test_instances import describe, group, run, vpc_with_vswitch


def create(old, vswitch, groups, ip=None, name=None, tags=None):
    r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    r.set_VSwitchId(vswitch)
    r.set_SecurityGroupIdss(groups)
    if ip:
        r.set_PrimaryIpAddress(ip)
    if name:
        r.set_NetworkInterfaceName(name)
    if tags:
        r.set_Tags([{"Key": k, "Value": v} for k, v in tags.items()])
    return old.call(r)


def listed(old, **filters):
    r = DescribeNetworkInterfacesRequest.DescribeNetworkInterfacesRequest()
    for k, v in filters.items():
        getattr(r, "set_" + k)(v)
    return old.call(r)


def test_every_instance_has_a_primary_interface(old):
    vpc, vsw = vpc_with_vswitch(old, "10.40.0.0/16", "10.40.1.0/24")
    sg = group(old, vpc)
    [i] = run(old, vsw, [sg])
    [inst] = describe(old, [i])
    [nic] = inst["NetworkInterfaces"]["NetworkInterface"]
    assert nic["Type"] == "Primary" and nic["NetworkInterfaceId"].startswith("eni-")
    assert nic["MacAddress"].startswith("00:16:3e:")
    body = listed(old, InstanceId=i)
    [eni] = body["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert eni["NetworkInterfaceId"] == nic["NetworkInterfaceId"]
    assert (eni["Status"], eni["Type"], eni["InstanceId"]) == ("InUse", "Primary", i)
    assert eni["SecurityGroupIds"]["SecurityGroupId"] == [sg]
    assert eni["PrivateIpAddress"] == inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
    # A primary interface goes with its instance: it cannot be deleted on its own.
    d = DeleteNetworkInterfaceRequest.DeleteNetworkInterfaceRequest()
    d.set_NetworkInterfaceId(eni["NetworkInterfaceId"])
    assert old.error(d) == ("InvalidOperation.InvalidEniState", 403)
    # Joining by the primary interface is joining the instance.
    sg2 = group(old, vpc, "second")
    j = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
    j.set_NetworkInterfaceId(eni["NetworkInterfaceId"])
    j.set_SecurityGroupId(sg2)
    old.call(j)
    [inst] = describe(old, [i])
    assert inst["SecurityGroupIds"]["SecurityGroupId"] == [sg, sg2]


def test_interfaces_of_their_own_with_the_old_sdk(old):
    vpc, vsw = vpc_with_vswitch(old, "10.41.0.0/16", "10.41.1.0/24")
    sg, sg2 = group(old, vpc, "ga"), group(old, vpc, "gb")
    [i] = run(old, vsw, [sg], ip="10.41.1.9")
    made = create(old, vsw, [sg], ip="10.41.1.20", name="eni-web", tags={"app": "web"})
    eni = made["NetworkInterfaceId"]
    assert (made["Status"], made["Type"], made["PrivateIpAddress"]) == ("Available", "Secondary", "10.41.1.20")
    assert made["VpcId"] == vpc and made["VSwitchId"] == vsw
    assert made["Tags"]["Tag"] == [{"TagKey": "app", "TagValue": "web"}]
    # An address a primary interface (an instance) holds, or one outside the vSwitch.
    r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([sg])
    r.set_PrimaryIpAddress("10.41.1.9")
    assert old.error(r) == ("InvalidPrivateIpAddress.Duplicated", 400)
    r.set_PrimaryIpAddress("10.41.2.9")
    assert old.error(r) == ("InvalidPrivateIpAddress.Mismatch", 400)
    # Nor may an instance then take the interface's address.
    from aliyunsdkecs.request.v20140526 import RunInstancesRequest
    ri = RunInstancesRequest.RunInstancesRequest()
    ri.set_ImageId("img")
    ri.set_InstanceType("t")
    ri.set_VSwitchId(vsw)
    ri.set_SecurityGroupIdss([sg])
    ri.set_PrivateIpAddress("10.41.1.20")
    assert old.error(ri) == ("InvalidPrivateIpAddress.Duplicated", 400)
    # Filters and paging.
    assert [n["NetworkInterfaceId"] for n in listed(old, Type="Secondary", VpcId=vpc)["NetworkInterfaceSets"]["NetworkInterfaceSet"]] == [eni]
    assert listed(old, PrimaryIpAddress="10.41.1.20")["TotalCount"] == 1
    assert listed(old, Tags=[{"Key": "app", "Value": "web"}])["TotalCount"] == 1
    assert listed(old, Status="Available", SecurityGroupId=sg)["TotalCount"] == 1
    page = listed(old, VpcId=vpc, PageSize=1, PageNumber=2)
    assert (page["TotalCount"], len(page["NetworkInterfaceSets"]["NetworkInterfaceSet"])) == (2, 1)
    # Modify: name and groups; join and leave by interface; the last group stays.
    m = ModifyNetworkInterfaceAttributeRequest.ModifyNetworkInterfaceAttributeRequest()
    m.set_NetworkInterfaceId(eni)
    m.set_NetworkInterfaceName("renamed")
    m.set_SecurityGroupIds([sg2, sg])
    old.call(m)
    a = DescribeNetworkInterfaceAttributeRequest.DescribeNetworkInterfaceAttributeRequest()
    a.set_NetworkInterfaceId(eni)
    attr = old.call(a)
    assert attr["NetworkInterfaceName"] == "renamed"
    assert attr["SecurityGroupIds"]["SecurityGroupId"] == [sg2, sg]
    for g in (sg2,):
        l = LeaveSecurityGroupRequest.LeaveSecurityGroupRequest()
        l.set_NetworkInterfaceId(eni)
        l.set_SecurityGroupId(g)
        old.call(l)
    l = LeaveSecurityGroupRequest.LeaveSecurityGroupRequest()
    l.set_NetworkInterfaceId(eni)
    l.set_SecurityGroupId(sg)
    assert old.error(l) == ("InstanceLastSecurityGroup", 403)
    j = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
    j.set_NetworkInterfaceId(eni)
    j.set_SecurityGroupId(sg)
    assert old.error(j) == ("InvalidInstanceId.AlreadyExists", 403)
    # A group with an interface as its only member cannot be deleted.
    from aliyunsdkecs.request.v20140526 import DeleteSecurityGroupRequest
    sg3 = group(old, vpc, "gc")
    m.set_SecurityGroupIds([sg3])
    old.call(m)
    dg = DeleteSecurityGroupRequest.DeleteSecurityGroupRequest()
    dg.set_SecurityGroupId(sg3)
    assert old.error(dg)[0] == "DependencyViolation"
    # Delete; then it is gone.
    d = DeleteNetworkInterfaceRequest.DeleteNetworkInterfaceRequest()
    d.set_NetworkInterfaceId(eni)
    old.call(d)
    assert old.error(a) == ("InvalidNetworkInterfaceId.NotFound", 404)
    assert old.error(d) == ("InvalidNetworkInterfaceId.NotFound", 404)
    old.call(dg)
    d.set_NetworkInterfaceId("eni with space")
    assert old.error(d) == ("InvalidNetworkInterfaceId.Malformed", 400)


def test_interfaces_with_the_new_sdk(old, new_v3):
    vpc, vsw = vpc_with_vswitch(old, "10.42.0.0/16", "10.42.1.0/24")
    sg = group(old, vpc)
    made = new_v3.create_network_interface(models.CreateNetworkInterfaceRequest(
        region_id=REGION, v_switch_id=vsw, security_group_ids=[sg], network_interface_name="n",
        description="made by the new SDK",
        tag=[models.CreateNetworkInterfaceRequestTag(key="k", value="v")])).body
    eni = made.network_interface_id
    assert made.status == "Available" and made.security_group_ids.security_group_id == [sg]
    body = new_v3.describe_network_interfaces(models.DescribeNetworkInterfacesRequest(
        region_id=REGION, network_interface_id=[eni], max_results=10)).body
    [n] = body.network_interface_sets.network_interface_set
    assert (n.network_interface_id, n.description, n.v_switch_id) == (eni, "made by the new SDK", vsw)
    assert n.tags.tag[0].tag_key == "k"
    attr = new_v3.describe_network_interface_attribute(models.DescribeNetworkInterfaceAttributeRequest(
        region_id=REGION, network_interface_id=eni)).body
    assert attr.private_ip_address == n.private_ip_address
    new_v3.modify_network_interface_attribute(models.ModifyNetworkInterfaceAttributeRequest(
        region_id=REGION, network_interface_id=eni, description="changed"))
    new_v3.delete_network_interface(models.DeleteNetworkInterfaceRequest(region_id=REGION, network_interface_id=eni))
    with pytest.raises(TeaException) as e:
        new_v3.describe_network_interface_attribute(models.DescribeNetworkInterfaceAttributeRequest(
            region_id=REGION, network_interface_id=eni))
    assert e.value.code == "InvalidNetworkInterfaceId.NotFound"


def test_another_account_sees_nothing_and_no_tenant_places(server, old):
    vpc, vsw = vpc_with_vswitch(old, "10.43.0.0/16", "10.43.1.0/24")
    sg = group(old, vpc)
    eni = create(old, vsw, [sg])["NetworkInterfaceId"]
    other = server.create_account("eni-" + uuid.uuid4().hex[:8])
    them = OldSdk(server, other["AccessKeyId"], other["AccessKeySecret"])
    assert listed(them)["TotalCount"] == 0
    a = DescribeNetworkInterfaceAttributeRequest.DescribeNetworkInterfaceAttributeRequest()
    a.set_NetworkInterfaceId(eni)
    assert them.error(a) == ("InvalidNetworkInterfaceId.NotFound", 404)
    t = TagResourcesRequest.TagResourcesRequest()
    t.set_ResourceType("eni")
    t.set_ResourceIds([eni])
    t.set_Tags([{"Key": "x", "Value": "y"}])
    assert them.error(t) == ("InvalidResourceId.NotFound", 404)
    old.call(t)
    for who in (old, them):
        with pytest.raises(ServerException) as e:
            stockade_action(who, "PlaceNetworkInterface", NetworkInterfaceId=eni, HostId="h1")
        assert (e.value.get_error_code(), e.value.get_http_status()) == ("Forbidden.RAM", 403)


def test_flow_verdicts_by_interface(old):
    vpc, vsw = vpc_with_vswitch(old, "10.44.0.0/16", "10.44.1.0/24")
    sg = group(old, vpc)
    a, b = run(old, vsw, [sg], amount=2)
    enis = {i["InstanceId"]: i["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]
            for i in describe(old, [a, b])}
    by_instance = stockade_action(old, "DescribeFlowVerdict", SourceInstanceId=a, DestinationInstanceId=b,
                                  IpProtocol="tcp", DestinationPort=22)
    by_interface = stockade_action(old, "DescribeFlowVerdict", SourceNetworkInterfaceId=enis[a],
                                   DestinationNetworkInterfaceId=enis[b], IpProtocol="tcp", DestinationPort=22)
    assert by_interface["Verdict"] == by_instance["Verdict"]
    stages = by_interface["Stages"]["Stage"]
    assert [(s["InstanceId"], s["NetworkInterfaceId"]) for s in stages] == [(a, enis[a]), (b, enis[b])]
    loose = create(old, vsw, [sg])["NetworkInterfaceId"]
    for params, code in [
        (dict(SourceNetworkInterfaceId=loose, DestinationInstanceId=b), ("InvalidOperation.InvalidEniState", 403)),
        (dict(SourceNetworkInterfaceId=enis[a], SourceInstanceId=a, DestinationInstanceId=b), ("InvalidParameter.Conflict", 400)),
        (dict(SourceNetworkInterfaceId="eni-nosuch", DestinationInstanceId=b), ("InvalidNetworkInterfaceId.NotFound", 404)),
    ]:
        with pytest.raises(ServerException) as e:
            stockade_action(old, "DescribeFlowVerdict", IpProtocol="tcp", DestinationPort=22, **params)
        assert (e.value.get_error_code(), e.value.get_http_status()) == code


def test_ipv6_blocks_and_addresses(old, new_v3):
    from aliyunsdkvpc.request.v20160428 import CreateVSwitchRequest, CreateVpcRequest, DescribeVpcAttributeRequest
    from aliyunsdkecs.request.v20140526 import RunInstancesRequest

    r = CreateVpcRequest.CreateVpcRequest()
    r.set_CidrBlock("10.50.0.0/16")
    r.set_EnableIpv6(True)
    made = old.call(r)
    vpc, block = made["VpcId"], made["Ipv6CidrBlock"]
    assert block.startswith("2001:2:") and block.endswith("/56")
    a = DescribeVpcAttributeRequest.DescribeVpcAttributeRequest()
    a.set_VpcId(vpc)
    attr = old.call(a)
    assert attr["Ipv6CidrBlock"] == block
    assert attr["Ipv6CidrBlocks"]["Ipv6CidrBlock"][0]["Ipv6CidrBlock"] == block
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock("10.50.1.0/24")
    s.set_Ipv6CidrBlock(7)
    vsw = old.call(s)["VSwitchId"]
    sg = group(old, vpc)
    ri = RunInstancesRequest.RunInstancesRequest()
    ri.set_ImageId("img")
    ri.set_InstanceType("t")
    ri.set_VSwitchId(vsw)
    ri.set_SecurityGroupIdss([sg])
    ri.set_Ipv6AddressCount(1)
    [i] = old.call(ri)["InstanceIdSets"]["InstanceIdSet"]
    [inst] = describe(old, [i])
    [v6] = [x["Ipv6Address"] for x in inst["NetworkInterfaces"]["NetworkInterface"][0]["Ipv6Sets"]["Ipv6Set"]]
    import ipaddress
    seventh = list(ipaddress.ip_network(block).subnets(new_prefix=64))[7]
    assert ipaddress.ip_address(v6) in seventh, (block, v6)
    # The same address again, more than one, or a vSwitch without IPv6: refused.
    ri.set_Ipv6AddressCount(0)
    ri.set_Ipv6Addresss([v6])
    assert old.error(ri) == ("InvalidIpv6Address.Duplicated", 400)
    ri.set_Ipv6Addresss([])
    ri.set_Ipv6AddressCount(2)
    assert old.error(ri)[0] == "InvalidParameter"
    _, plain = vpc_with_vswitch(old, "10.51.0.0/16", "10.51.1.0/24")
    ri2 = RunInstancesRequest.RunInstancesRequest()
    ri2.set_ImageId("img")
    ri2.set_InstanceType("t")
    ri2.set_VSwitchId(plain)
    ri2.set_SecurityGroupIdss([group(old, _)])
    ri2.set_Ipv6AddressCount(1)
    assert old.error(ri2) == ("InvalidVSwitch.Ipv6NotTurnOn", 400)
    # The engine judges IPv6 flows at the instance: an Ipv6SourceCidrIp rule decides.
    from aliyunsdkecs.request.v20140526 import AuthorizeSecurityGroupRequest
    au = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    au.set_SecurityGroupId(sg)
    au.set_IpProtocol("tcp")
    au.set_PortRange("443/443")
    au.set_Ipv6SourceCidrIp("2001:db8::/32")
    old.call(au)
    v = stockade_action(old, "DescribeFlowVerdict", SourceIp="2001:db8::5", DestinationInstanceId=i,
                        IpProtocol="tcp", DestinationPort=443)
    assert v["Verdict"] == "Accept", v
    v = stockade_action(old, "DescribeFlowVerdict", SourceIp="2001:db9::5", DestinationInstanceId=i,
                        IpProtocol="tcp", DestinationPort=443)
    assert v["Verdict"] == "Drop", v
    # The new SDK reads the same fields.
    body = new_v3.describe_network_interfaces(models.DescribeNetworkInterfacesRequest(
        region_id=REGION, instance_id=i)).body
    assert body.network_interface_sets.network_interface_set[0].ipv_6sets.ipv_6set[0].ipv_6address == v6


def test_assign_and_unassign_ipv6_addresses(old, new_v3):
    from aliyunsdkecs.request.v20140526 import AssignIpv6AddressesRequest, UnassignIpv6AddressesRequest
    from aliyunsdkvpc.request.v20160428 import CreateVSwitchRequest, CreateVpcRequest

    r = CreateVpcRequest.CreateVpcRequest()
    r.set_CidrBlock("10.80.0.0/16")
    r.set_EnableIpv6(True)
    vpc = old.call(r)["VpcId"]
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock("10.80.1.0/24")
    s.set_Ipv6CidrBlock(0)
    vsw = old.call(s)["VSwitchId"]
    sg = group(old, vpc)
    [i] = run(old, vsw, [sg])
    [inst] = describe(old, [i])
    eni = inst["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]
    assert inst["NetworkInterfaces"]["NetworkInterface"][0]["Ipv6Sets"]["Ipv6Set"] == []
    a = AssignIpv6AddressesRequest.AssignIpv6AddressesRequest()
    a.set_NetworkInterfaceId(eni)
    a.set_Ipv6AddressCount(1)
    [v6] = old.call(a)["Ipv6Sets"]["Ipv6Address"]
    [inst] = describe(old, [i])
    assert inst["NetworkInterfaces"]["NetworkInterface"][0]["Ipv6Sets"]["Ipv6Set"] == [{"Ipv6Address": v6, "Primary": True}]
    v = stockade_action(old, "DescribeFlowVerdict", SourceInstanceId=i, DestinationIp="2001:db8::1",
                        IpProtocol="tcp", DestinationPort=443)
    assert v["Verdict"] == "Accept", "egress over the new IPv6 address is judged (default accept)"
    assert old.error(a) == ("QuotaExceed.Ipv6Address", 403)
    u = UnassignIpv6AddressesRequest.UnassignIpv6AddressesRequest()
    u.set_NetworkInterfaceId(eni)
    u.set_Ipv6Addresss(["2001:db8::9"])
    assert old.error(u) == ("InvalidIpv6Address.NotFound", 400)
    u.set_Ipv6Addresss([v6])
    old.call(u)
    assert describe(old, [i])[0]["NetworkInterfaces"]["NetworkInterface"][0]["Ipv6Sets"]["Ipv6Set"] == []
    body = new_v3.assign_ipv_6addresses(models.AssignIpv6AddressesRequest(
        region_id=REGION, network_interface_id=eni, ipv_6address=[v6])).body
    assert body.ipv_6sets.ipv_6address == [v6]


def test_secondary_interfaces_are_judged_by_their_own_groups(server, old, new_v3):
    """AttachNetworkInterface / DetachNetworkInterface: an attached interface is judged by
    its own groups at its own address (not its instance's), a group reference matches its
    address, and detaching stops its flows; ECS's errors for wrong states and limits."""
    from aliyunsdkecs.request.v20140526 import (
        AttachNetworkInterfaceRequest,
        DeleteInstanceRequest,
        DetachNetworkInterfaceRequest,
    )

    vpc, vsw = vpc_with_vswitch(old, "10.45.0.0/16", "10.45.1.0/24")
    ssh, web, peers = group(old, vpc, "ssh-only"), group(old, vpc, "web"), group(old, vpc, "from-web")
    from test_security_groups import authorize

    for g, port, cidr in [(ssh, "22/22", "10.0.0.0/8"), (web, "80/80", "0.0.0.0/0")]:
        old.call(authorize(g, [{"IpProtocol": "tcp", "PortRange": port, "SourceCidrIp": cidr}]))
    [host] = run(old, vsw, [ssh], ip="10.45.1.10")
    [other] = run(old, vsw, [peers], ip="10.45.1.30")
    # `from-web` admits tcp/5432 from members of `web`: after the attach, that is the
    # secondary interface's address.
    from aliyunsdkecs.request.v20140526 import AuthorizeSecurityGroupRequest
    r = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    r.set_SecurityGroupId(peers)
    r.set_IpProtocol("tcp")
    r.set_PortRange("5432/5432")
    r.set_SourceGroupId(web)
    old.call(r)
    eni = create(old, vsw, [web], ip="10.45.1.20")["NetworkInterfaceId"]

    # A hostile tenant can neither attach to this account's instance nor move its interface.
    from conftest import OldSdk as _Old
    stranger = server.create_account("attach-" + uuid.uuid4().hex[:8])
    them = _Old(server, stranger["AccessKeyId"], stranger["AccessKeySecret"])
    steal = AttachNetworkInterfaceRequest.AttachNetworkInterfaceRequest()
    steal.set_NetworkInterfaceId(eni)
    steal.set_InstanceId(host)
    assert them.error(steal)[0] in ("InvalidNetworkInterfaceId.NotFound", "InvalidInstanceId.NotFound")

    attach = AttachNetworkInterfaceRequest.AttachNetworkInterfaceRequest()
    attach.set_NetworkInterfaceId(eni)
    attach.set_InstanceId(host)
    old.call(attach)
    [n] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert (n["Status"], n["InstanceId"], n["Type"]) == ("InUse", host, "Secondary")
    nics = describe(old, [host])[0]["NetworkInterfaces"]["NetworkInterface"]
    assert [(x["Type"], x["PrimaryIpAddress"]) for x in nics] == [("Primary", "10.45.1.10"), ("Secondary", "10.45.1.20")]
    assert old.error(attach) == ("InvalidOperation.InvalidEniState", 403), "already attached"

    def verdict(**ends):
        return stockade_action(old, "DescribeFlowVerdict", IpProtocol="tcp", **ends)

    # Port 80 is open on the interface (its group), not on the instance's primary address.
    to_eni = verdict(SourceIp="198.51.100.7", DestinationNetworkInterfaceId=eni, DestinationPort=80)
    assert to_eni["Verdict"] == "Accept"
    [stage] = to_eni["Stages"]["Stage"]
    assert (stage["InstanceId"], stage["NetworkInterfaceId"], stage["SecurityGroupId"]) == (host, eni, web)
    assert verdict(SourceIp="198.51.100.7", DestinationInstanceId=host, DestinationPort=80)["Verdict"] == "Drop"
    # The group reference matches the secondary address.
    assert verdict(SourceNetworkInterfaceId=eni, DestinationInstanceId=other, DestinationPort=5432)["Verdict"] == "Accept"
    assert verdict(SourceInstanceId=host, DestinationInstanceId=other, DestinationPort=5432)["Verdict"] == "Drop"

    # Exposure by interface: the interface's own groups at its address, named with its instance.
    # (Beyond its rules, a member of a group with intra-group access open accepts its groups'
    # members, itself among them: those entries come from its own address.)
    def opened(body, own):
        return {(e["IpProtocol"], e["PortRange"], tuple(e["SourceCidrIps"]["SourceCidrIp"]))
                for e in body["Exposures"]["Exposure"] if e["SourceCidrIps"]["SourceCidrIp"] != [own + "/32"]}
    exposed = stockade_action(old, "DescribeInstanceExposure", NetworkInterfaceId=eni)
    assert (exposed["InstanceId"], exposed["NetworkInterfaceId"]) == (host, eni)
    assert opened(exposed, "10.45.1.20") == {("TCP", "80/80", ("0.0.0.0/0",))}
    primary_exposed = stockade_action(old, "DescribeInstanceExposure", InstanceId=host)
    assert opened(primary_exposed, "10.45.1.10") == {("TCP", "22/22", ("10.0.0.0/8",))}

    # A previewed rule change in the interface's group shows its flips at the interface.
    flips = stockade_action(old, "PreviewSecurityGroupChange", ChangeAction="AuthorizeSecurityGroup",
                            SecurityGroupId=web, IpProtocol="tcp", PortRange="443/443",
                            SourceCidrIp="0.0.0.0/0")["Changes"]["Change"]
    assert {(c["InstanceId"], c["NetworkInterfaceId"], c["PortRange"]) for c in flips} == {(host, eni, "443/443")}

    # Limits and states.
    extra = [create(old, vsw, [web])["NetworkInterfaceId"] for _ in range(2)]
    attach.set_NetworkInterfaceId(extra[0])
    old.call(attach)
    attach.set_NetworkInterfaceId(extra[1])
    assert old.error(attach) == ("InvalidOperation.EniCountExceeded", 403), "3 interfaces per instance"
    detach = DetachNetworkInterfaceRequest.DetachNetworkInterfaceRequest()
    detach.set_InstanceId(host)
    detach.set_NetworkInterfaceId(nics[0]["NetworkInterfaceId"])
    assert old.error(detach) == ("InvalidOperation.DetachPrimaryEniNotAllowed", 403)
    detach.set_NetworkInterfaceId(eni)
    old.call(detach)
    assert listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"][0]["Status"] == "Available"
    with pytest.raises(ServerException) as e:
        verdict(SourceIp="198.51.100.7", DestinationNetworkInterfaceId=eni, DestinationPort=80)
    assert e.value.get_error_code() == "InvalidOperation.InvalidEniState", "a detached interface carries no flow"
    assert old.error(detach) == ("InvalidOperation.InvalidEniState", 403)

    # Deleting an instance detaches its secondary interfaces; they remain.
    new_v3.attach_network_interface(models.AttachNetworkInterfaceRequest(
        region_id=REGION, network_interface_id=eni, instance_id=host))
    delete = DeleteInstanceRequest.DeleteInstanceRequest()
    delete.set_InstanceId(host)
    delete.set_Force(True)
    old.call(delete)
    [left] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert (left["Status"], left["InstanceId"]) == ("Available", "")


def test_run_instances_creates_secondary_interfaces(old, new_v3):
    """RunInstances NetworkInterface.N: the primary interface's fields given nested, a new
    secondary interface per instance (in another vSwitch of the zone, with its own groups,
    deleted with its instance), an existing one attached by id (kept when its instance goes),
    all or none when one of them cannot be attached."""
    from aliyunsdkecs.request.v20140526 import DeleteInstanceRequest, RunInstancesRequest
    from aliyunsdkvpc.request.v20160428 import CreateVSwitchRequest
    from test_security_groups import authorize

    vpc, vsw = vpc_with_vswitch(old, "10.46.0.0/16", "10.46.1.0/24")
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock("10.46.2.0/24")
    backend = old.call(s)["VSwitchId"]
    front, back = group(old, vpc, "front"), group(old, vpc, "back")
    old.call(authorize(back, [{"IpProtocol": "tcp", "PortRange": "5432/5432", "SourceCidrIp": "10.0.0.0/8"}]))

    def run_with(interfaces, amount=1, **flat):
        r = RunInstancesRequest.RunInstancesRequest()
        r.set_ImageId("ubuntu_22_04_x64")
        r.set_InstanceType("ecs.g7.large")
        r.set_Amount(amount)
        r.set_NetworkInterfaces(interfaces)
        for k, v in flat.items():
            getattr(r, "set_" + k)(v)
        return r

    primary = {"InstanceType": "Primary", "VSwitchId": vsw, "SecurityGroupIds": [front],
               "NetworkInterfaceName": "eth0", "Description": "front door"}
    made = old.call(run_with([primary, {"VSwitchId": backend, "SecurityGroupIds": [back],
                                        "NetworkInterfaceName": "db"}], amount=2))
    ids = made["InstanceIdSets"]["InstanceIdSet"]
    assert len(ids) == 2
    for i in describe(old, ids):
        nics = i["NetworkInterfaces"]["NetworkInterface"]
        assert [n["Type"] for n in nics] == ["Primary", "Secondary"]
        assert i["VpcAttributes"]["VSwitchId"] == vsw and i["SecurityGroupIds"]["SecurityGroupId"] == [front]
    [first] = describe(old, ids[:1])
    eth0, db = first["NetworkInterfaces"]["NetworkInterface"]
    [p] = listed(old, NetworkInterfaceIds=[eth0["NetworkInterfaceId"]])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert (p["NetworkInterfaceName"], p["Description"]) == ("eth0", "front door")
    [d] = listed(old, NetworkInterfaceIds=[db["NetworkInterfaceId"]])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert (d["VSwitchId"], d["SecurityGroupIds"]["SecurityGroupId"], d["DeleteOnRelease"]) == (backend, [back], True)
    assert d["PrivateIpAddress"].startswith("10.46.2.")
    verdict = lambda **ends: stockade_action(old, "DescribeFlowVerdict", IpProtocol="tcp", SourceIp="10.9.9.9",
                                             DestinationPort=5432, **ends)["Verdict"]
    assert verdict(DestinationNetworkInterfaceId=db["NetworkInterfaceId"]) == "Accept"
    assert verdict(DestinationInstanceId=ids[0]) == "Drop", "the primary is judged by its own groups"

    # The same fields flat and nested: refused, nothing created.
    before = len(listed(old, VpcId=vpc)["NetworkInterfaceSets"]["NetworkInterfaceSet"])
    assert old.error(run_with([primary], VSwitchId=vsw)) == ("InvalidParameter.Conflict", 400)
    # Three secondaries exceed the three interfaces an instance may have: all or none.
    extra = [{"VSwitchId": backend} for _ in range(3)]
    assert old.error(run_with([primary] + extra))[0] == "InvalidOperation.EniCountExceeded"
    assert old.error(run_with([primary, {"VSwitchId": backend, "PrimaryIpAddress": "10.46.2.77"}], amount=2)) \
        == ("InvalidParameter.Conflict", 400)
    assert len(listed(old, VpcId=vpc)["NetworkInterfaceSets"]["NetworkInterfaceSet"]) == before

    # An existing interface attached by id, with the new SDK: it stays when its instance goes;
    # the one created with the instance goes with it.
    kept = create(old, backend, [back])["NetworkInterfaceId"]
    body = new_v3.run_instances(models.RunInstancesRequest(
        region_id=REGION, image_id="ubuntu_22_04_x64", instance_type="ecs.g7.large", amount=1,
        network_interface=[
            models.RunInstancesRequestNetworkInterface(instance_type="Primary", v_switch_id=vsw,
                                                       security_group_ids=[front]),
            models.RunInstancesRequestNetworkInterface(network_interface_id=kept),
            models.RunInstancesRequestNetworkInterface(v_switch_id=backend, delete_on_release=True),
        ])).body
    [i] = body.instance_id_sets.instance_id_set
    nics = describe(old, [i])[0]["NetworkInterfaces"]["NetworkInterface"]
    secondary = [n["NetworkInterfaceId"] for n in nics if n["Type"] == "Secondary"]
    assert kept in secondary and len(secondary) == 2
    [inherited] = [n for n in secondary if n != kept]
    [n] = listed(old, NetworkInterfaceIds=[inherited])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert n["SecurityGroupIds"]["SecurityGroupId"] == [front], "no groups given: the instance's"
    rm = DeleteInstanceRequest.DeleteInstanceRequest()
    rm.set_InstanceId(i)
    rm.set_Force(True)
    old.call(rm)
    [k] = listed(old, NetworkInterfaceIds=[kept])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert k["Status"] == "Available"
    assert listed(old, NetworkInterfaceIds=[inherited])["NetworkInterfaceSets"]["NetworkInterfaceSet"] == []


def test_secondary_private_addresses(server, old, new_v3):
    """AssignPrivateIpAddresses / UnassignPrivateIpAddresses and their creation-time forms:
    secondary addresses of an interface (an instance's primary one too), unique in the VPC,
    listed after the primary address, matched by group references, within the per-interface
    limit; other accounts kept out."""
    from aliyunsdkecs.request.v20140526 import (
        AssignPrivateIpAddressesRequest,
        AuthorizeSecurityGroupRequest,
        CreateNetworkInterfaceRequest,
        UnassignPrivateIpAddressesRequest,
    )

    vpc, vsw = vpc_with_vswitch(old, "10.47.0.0/16", "10.47.1.0/24")
    app, db = group(old, vpc, "app"), group(old, vpc, "db")
    r = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    r.set_SecurityGroupId(db)
    r.set_IpProtocol("tcp")
    r.set_PortRange("5432/5432")
    r.set_SourceGroupId(app)
    old.call(r)
    [web] = run(old, vsw, [app], ip="10.47.1.10")
    [store] = run(old, vsw, [db], ip="10.47.1.20")
    primary = describe(old, [web])[0]["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]

    def assign(eni, ips=(), count=None, who=old):
        a = AssignPrivateIpAddressesRequest.AssignPrivateIpAddressesRequest()
        a.set_NetworkInterfaceId(eni)
        if ips:
            a.set_PrivateIpAddresss(list(ips))
        if count is not None:
            a.set_SecondaryPrivateIpAddressCount(count)
        return a

    got = old.call(assign(primary, ["10.47.1.11"], 1))["AssignedPrivateIpAddressesSet"]
    added = got["PrivateIpSet"]["PrivateIpAddress"]
    assert got["NetworkInterfaceId"] == primary and added[0] == "10.47.1.11" and len(added) == 2
    [n] = listed(old, NetworkInterfaceIds=[primary])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert [(s["PrivateIpAddress"], s["Primary"]) for s in n["PrivateIpSets"]["PrivateIpSet"]] == \
        [("10.47.1.10", True), ("10.47.1.11", False), (added[1], False)]
    verdict = lambda ip: stockade_action(old, "DescribeFlowVerdict", SourceIp=ip, DestinationInstanceId=store,
                                         IpProtocol="tcp", DestinationPort=5432)["Verdict"]
    assert (verdict("10.47.1.11"), verdict(added[1]), verdict("10.47.1.99")) == ("Accept", "Accept", "Drop"), \
        "a group reference matches the member's secondary addresses"
    # Each address once in the VPC; in the vSwitch; within the limit; all or none.
    for ips, count, code in [
        (["10.47.1.20"], None, "InvalidPrivateIpAddress.Duplicated"),
        (["10.47.1.11"], None, "InvalidPrivateIpAddress.Duplicated"),
        (["10.47.9.9"], None, "InvalidPrivateIpAddress.Mismatch"),
        ([], 9, "QuotaExceed.PrivateIpAddress"),
    ]:
        assert old.error(assign(primary, ips, count))[0] == code, (ips, count)
    # The instance's own address is refused as a secondary one of another interface.
    c = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    c.set_VSwitchId(vsw)
    c.set_SecurityGroupIdss([app])
    c.set_PrivateIpAddresss(["10.47.1.11"])
    assert old.error(c) == ("InvalidPrivateIpAddress.Duplicated", 400)
    c.set_PrivateIpAddresss(["10.47.1.30"])
    c.set_SecondaryPrivateIpAddressCount(1)
    eni = old.call(c)["NetworkInterfaceId"]
    [e] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert len(e["PrivateIpSets"]["PrivateIpSet"]) == 3 and "10.47.1.30" in str(e["PrivateIpSets"])
    # Unassign: only what the interface has; then the address no longer matches.
    un = UnassignPrivateIpAddressesRequest.UnassignPrivateIpAddressesRequest()
    un.set_NetworkInterfaceId(primary)
    un.set_PrivateIpAddresss(["10.47.1.30"])
    assert old.error(un) == ("InvalidPrivateIpAddress.NotFound", 400)
    un.set_PrivateIpAddresss(["10.47.1.11"])
    old.call(un)
    assert verdict("10.47.1.11") == "Drop"
    # The new SDK, and another account kept out.
    body = new_v3.assign_private_ip_addresses(models.AssignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=primary, private_ip_address=["10.47.1.11"])).body
    assert body.assigned_private_ip_addresses_set.private_ip_set.private_ip_address == ["10.47.1.11"]
    new_v3.unassign_private_ip_addresses(models.UnassignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=primary, private_ip_address=["10.47.1.11"]))
    assert verdict("10.47.1.11") == "Drop"
    with pytest.raises(TeaException) as e:
        new_v3.unassign_private_ip_addresses(models.UnassignPrivateIpAddressesRequest(
            region_id=REGION, network_interface_id=primary, private_ip_address=["10.47.1.11"]))
    assert e.value.code == "InvalidPrivateIpAddress.NotFound"
    stranger = server.create_account("addr-" + uuid.uuid4().hex[:8])
    them = OldSdk(server, stranger["AccessKeyId"], stranger["AccessKeySecret"])
    assert them.error(assign(primary, count=1)) == ("InvalidNetworkInterfaceId.NotFound", 404)


def test_ipv4_prefixes_are_the_interfaces_addresses(server, old, new_v3):
    """`Ipv4Prefix.N` / `Ipv4PrefixCount` delegate /28 blocks of the vSwitch to an interface
    (at creation or later), all or none: every address of a block is the interface's, so a
    group reference matches it; a block is unique in the VPC with every other address;
    both SDK generations read the prefixes back; unassigned, they match no more."""
    from aliyunsdkecs.request.v20140526 import (
        AssignPrivateIpAddressesRequest,
        AuthorizeSecurityGroupRequest,
        UnassignPrivateIpAddressesRequest,
    )

    vpc, vsw = vpc_with_vswitch(old, "10.48.0.0/16", "10.48.1.0/24")
    app, db = group(old, vpc, "app"), group(old, vpc, "db")
    r = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    r.set_SecurityGroupId(db)
    r.set_IpProtocol("tcp")
    r.set_PortRange("5432/5432")
    r.set_SourceGroupId(app)
    old.call(r)
    [store] = run(old, vsw, [db], ip="10.48.1.20")
    verdict = lambda ip: stockade_action(old, "DescribeFlowVerdict", SourceIp=ip, DestinationInstanceId=store,
                                         IpProtocol="tcp", DestinationPort=5432)["Verdict"]

    # At creation: two free blocks, the vSwitch's first usable /28 being the one that holds
    # no reserved address and no instance's (10.48.1.20 is in .16/28).
    c = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    c.set_VSwitchId(vsw)
    c.set_SecurityGroupIdss([app])
    c.set_Ipv4PrefixCount(2)
    made = old.call(c)
    eni = made["NetworkInterfaceId"]
    created = [p["Ipv4Prefix"] for p in made["Ipv4PrefixSets"]["Ipv4PrefixSet"]]
    assert created == ["10.48.1.32/28", "10.48.1.48/28"], made
    [n] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert [p["Ipv4Prefix"] for p in n["Ipv4PrefixSets"]["Ipv4PrefixSet"]] == created
    assert verdict("10.48.1.40") == "Drop", "an interface attached to nothing is no member"
    [web] = run(old, vsw, [app], ip="10.48.1.21")
    from aliyunsdkecs.request.v20140526 import AttachNetworkInterfaceRequest
    at = AttachNetworkInterfaceRequest.AttachNetworkInterfaceRequest()
    at.set_NetworkInterfaceId(eni)
    at.set_InstanceId(web)
    old.call(at)
    assert (verdict("10.48.1.32"), verdict("10.48.1.47"), verdict("10.48.1.63"), verdict("10.48.1.64")) == \
        ("Accept", "Accept", "Accept", "Drop"), "every address of a block, first and last, is the member's"

    def assign(action, prefixes=(), count=None):
        a = getattr(
            AssignPrivateIpAddressesRequest if action == "assign" else UnassignPrivateIpAddressesRequest,
            "AssignPrivateIpAddressesRequest" if action == "assign" else "UnassignPrivateIpAddressesRequest",
        )()
        a.set_NetworkInterfaceId(eni)
        if prefixes:
            a.set_Ipv4Prefixs(list(prefixes))
        if count is not None:
            a.set_Ipv4PrefixCount(count)
        return a

    got = old.call(assign("assign", ["10.48.1.128/28"]))["AssignedPrivateIpAddressesSet"]
    assert got["Ipv4PrefixSet"]["Ipv4Prefixes"] == ["10.48.1.128/28"] and got["PrivateIpSet"]["PrivateIpAddress"] == []
    assert verdict("10.48.1.140") == "Accept"
    # Refused, and nothing of a refused request is kept.
    for prefixes, count, code in [
        (["10.48.1.130/28"], None, "InvalidIpv4Prefix.Malformed"),
        (["10.48.1.144/27"], None, "InvalidIpv4Prefix.Malformed"),
        (["10.48.1.16/28"], None, "InvalidIpv4Prefix.Duplicated"),
        (["10.48.1.160/28", "10.48.1.128/28"], None, "InvalidIpv4Prefix.Duplicated"),
        (["10.48.1.176/28", "10.48.1.176/28"], None, "InvalidIpv4Prefix.Duplicated"),
        (["10.48.1.0/28"], None, "InvalidIpv4Prefix.Mismatch"),
        (["10.48.2.0/28"], None, "InvalidIpv4Prefix.Mismatch"),
        (["10.48.1.192/28"], 1, "InvalidParameter.Conflict"),
    ]:
        assert old.error(assign("assign", prefixes, count))[0] == code, (prefixes, count)
    assert verdict("10.48.1.165") == "Drop", "a refused request delegated nothing"
    [n] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert len(n["Ipv4PrefixSets"]["Ipv4PrefixSet"]) == 3
    # An address inside a delegated block is taken for every other use.
    other_eni = describe(old, [web])[0]["NetworkInterfaces"]["NetworkInterface"][0]["NetworkInterfaceId"]
    a = AssignPrivateIpAddressesRequest.AssignPrivateIpAddressesRequest()
    a.set_NetworkInterfaceId(other_eni)
    a.set_PrivateIpAddresss(["10.48.1.33"])
    assert old.error(a) == ("InvalidPrivateIpAddress.Duplicated", 400)
    # Typed reads of the new SDK; unassign with it.
    typed = new_v3.describe_network_interface_attribute(
        models.DescribeNetworkInterfaceAttributeRequest(region_id=REGION, network_interface_id=eni)).body
    assert [p.ipv_4prefix for p in typed.ipv_4prefix_sets.ipv_4prefix_set] == created + ["10.48.1.128/28"]
    new_v3.unassign_private_ip_addresses(models.UnassignPrivateIpAddressesRequest(
        region_id=REGION, network_interface_id=eni, ipv_4prefix=["10.48.1.32/28"]))
    assert (verdict("10.48.1.40"), verdict("10.48.1.50")) == ("Drop", "Accept")
    assert old.error(assign("unassign", ["10.48.1.32/28"])) == ("InvalidIpv4Prefix.NotFound", 400)
    # Freed, its block is free again, for an address as for a prefix.
    a.set_PrivateIpAddresss(["10.48.1.33"])
    old.call(a)
    # Another account can neither delegate to nor learn of the interface.
    stranger = server.create_account("prefix-" + uuid.uuid4().hex[:8])
    them = OldSdk(server, stranger["AccessKeyId"], stranger["AccessKeySecret"])
    assert them.error(assign("assign", count=1)) == ("InvalidNetworkInterfaceId.NotFound", 404)


def test_an_id_filter_naming_nothing_answers_an_empty_page(old):
    """Ansible's ali_eni looks an interface up before creating it, with `NetworkInterfaceId.1`
    set to the string `None` (footmark passes `[None]`): ECS answers no interface, so the
    module goes on to create one. A well-formed id of nothing answers the same; a knob at a
    setting Stockade does not have is refused, never dropped."""
    vpc, vsw = vpc_with_vswitch(old, "10.76.0.0/16", "10.76.1.0/24")
    g = group(old, vpc, "lookup")
    made = create(old, vsw, [g])["NetworkInterfaceId"]
    for ids in (["None"], ["eni-nothing0000000000"]):
        body = listed(old, NetworkInterfaceIds=ids)
        assert (body["NetworkInterfaceSets"]["NetworkInterfaceSet"], body["TotalCount"]) == ([], 0), ids
    assert [n["NetworkInterfaceId"] for n in
            listed(old, NetworkInterfaceIds=["None", made])["NetworkInterfaceSets"]["NetworkInterfaceSet"]] == [made]
    r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([g])
    r.set_QueueNumber(8)
    assert old.error(r) == ("UnsupportedParameter", 400)


def test_source_dest_check_is_kept_and_only_a_vpc_interface_may_forward(old, new_v3):
    """`SourceDestCheck=false` (a NAT or router instance) is kept and answered by both SDK
    generations; the agent then lets the interface forward for others (the lab checks it on
    real packets). On the shared classic network it is refused: an instance there could
    send as another account's."""
    from aliyunsdkecs.request.v20140526 import ModifyNetworkInterfaceAttributeRequest

    vpc, vsw = vpc_with_vswitch(old, "10.81.0.0/16", "10.81.1.0/24")
    g = group(old, vpc, "router")
    r = CreateNetworkInterfaceRequest.CreateNetworkInterfaceRequest()
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([g])
    r.set_SourceDestCheck(False)
    eni = old.call(r)["NetworkInterfaceId"]
    [n] = listed(old, NetworkInterfaceIds=[eni])["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert n["SourceDestCheck"] is False
    m = ModifyNetworkInterfaceAttributeRequest.ModifyNetworkInterfaceAttributeRequest()
    m.set_NetworkInterfaceId(eni)
    m.set_SourceDestCheck(True)
    old.call(m)
    typed = new_v3.describe_network_interface_attribute(
        models.DescribeNetworkInterfaceAttributeRequest(region_id=REGION, network_interface_id=eni)).body
    assert typed.source_dest_check is True

    # A classic instance's primary interface.
    from aliyunsdkecs.request.v20140526 import CreateSecurityGroupRequest, RunInstancesRequest

    c = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    classic_group = old.call(c)["SecurityGroupId"]
    ri = RunInstancesRequest.RunInstancesRequest()
    ri.set_ImageId("img")
    ri.set_InstanceType("ecs.g7.large")
    ri.set_SecurityGroupId(classic_group)
    [classic] = old.call(ri)["InstanceIdSets"]["InstanceIdSet"]
    [primary] = listed(old, InstanceId=classic)["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    m = ModifyNetworkInterfaceAttributeRequest.ModifyNetworkInterfaceAttributeRequest()
    m.set_NetworkInterfaceId(primary["NetworkInterfaceId"])
    m.set_SourceDestCheck(False)
    assert old.error(m) == ("OperationDenied", 400)
