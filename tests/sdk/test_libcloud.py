"""Apache Libcloud's ECS driver (XML answers, GET requests, its own signer) runs the seed's
story against `stockade serve`: regions and zones, a security group with rules, an instance
in it, join and leave, stop, start, reboot, its disk, its deletion; every read is checked
field by field. Pointing Libcloud at Stockade takes the driver's `host`, `port` and
`secure=False` (README, "Other clients")."""

import pytest
from libcloud.compute.base import NodeImage, NodeSize
from libcloud.compute.providers import get_driver
from libcloud.compute.types import NodeState, Provider

from conftest import REGION
from test_instances import describe, vpc_with_vswitch


@pytest.fixture(scope="module")
def ecs(server):
    host, port = server.endpoint.split(":")
    cls = get_driver(Provider.ALIYUN_ECS)
    return cls(server.ak, server.sk, region=REGION, host=host, port=int(port), secure=False)


def test_libcloud_runs_the_story(ecs, old):
    regions = [l.id for l in ecs.list_locations()]
    assert REGION in regions
    assert ecs.ex_list_zones(), "the region has zones"

    group = ecs.ex_create_security_group(description="libcloud web")
    assert group.startswith("sg-")
    assert ecs.ex_modify_security_group_by_id(group, name="lc-web", description="libcloud web tier")
    [listed] = [g for g in ecs.ex_list_security_groups() if g.id == group]
    assert (listed.name, listed.description, listed.vpc_id or "") == ("lc-web", "libcloud web tier", "")

    # A rule through the SDK (Libcloud has no rule call); Libcloud reads it back.
    from aliyunsdkecs.request.v20140526 import AuthorizeSecurityGroupRequest

    a = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    a.set_SecurityGroupId(group)
    a.set_IpProtocol("tcp")
    a.set_PortRange("22/22")
    a.set_SourceCidrIp("192.0.2.0/24")
    a.set_NicType("intranet")
    old.call(a)
    [rule] = ecs.ex_list_security_group_attributes(group_id=group, nic_type="intranet")
    assert (rule.ip_protocol, rule.port_range, rule.policy, rule.nic_type, rule.source_group_id or "") == (
        "TCP", "22/22", "Accept", "intranet", "")
    assert ecs.ex_list_security_group_attributes(group_id=group, nic_type="internet") == []

    # A classic instance with a public address, as Libcloud makes one: CreateInstance, then
    # StartInstance, waiting for Running in between reads.
    node = ecs.create_node(
        name="lc-node", size=NodeSize("ecs.g7.large", "g7", 8192, 40, 0, 0, ecs),
        image=NodeImage("ubuntu_22_04_x64", "ubuntu", ecs), ex_security_group_id=group,
        ex_description="made by libcloud", ex_hostname="lc-host",
        ex_internet_charge_type="PayByTraffic", ex_internet_max_bandwidth_out=5,
        ex_io_optimized=True)
    [got] = ecs.list_nodes(ex_node_ids=[node.id])
    assert (got.name, got.state, got.extra["hostname"], got.extra["description"]) == (
        "lc-node", NodeState.RUNNING, "lc-host", "made by libcloud")
    assert (got.extra["instance_type"], got.extra["image_id"], got.extra["instance_network_type"]) == (
        "ecs.g7.large", "ubuntu_22_04_x64", "classic")
    assert (got.extra["internet_charge_type"], got.extra["instance_charge_type"], got.extra["io_optimized"]) == (
        "PayByTraffic", "PostPaid", "true")
    assert len(got.private_ips) == 1 and len(got.public_ips) == 1, (got.private_ips, got.public_ips)
    assert not got.extra["eip_address"]["ip_address"], got.extra["eip_address"]
    [sdk] = describe(old, [node.id])
    assert (sdk["InternetMaxBandwidthOut"], sdk["SecurityGroupIds"]["SecurityGroupId"]) == (5, [group])

    # Join and leave a second group.
    second = ecs.ex_create_security_group(description="libcloud ops")
    assert ecs.ex_join_security_group(got, group_id=second)
    assert describe(old, [node.id])[0]["SecurityGroupIds"]["SecurityGroupId"] == [group, second]
    assert ecs.ex_leave_security_group(got, group_id=second)
    assert describe(old, [node.id])[0]["SecurityGroupIds"]["SecurityGroupId"] == [group]

    # Its system disk, as Libcloud's volumes.
    [disk] = [v for v in ecs.list_volumes() if v.extra["instance_id"] == node.id]
    assert (disk.size, disk.extra["type"], disk.extra["category"], disk.extra["region_id"]) == (
        40, "system", "cloud_essd", REGION)
    assert disk.extra["attached_time"] and disk.extra["disk_charge_type"] == "PostPaid"

    assert ecs.reboot_node(got)
    assert ecs.stop_node(got)
    [got] = ecs.list_nodes(ex_node_ids=[node.id])
    assert got.state == NodeState.STOPPED
    assert ecs.start_node(got)
    assert ecs.destroy_node(got)
    assert ecs.list_nodes(ex_node_ids=[node.id]) == []
    assert ecs.ex_delete_security_group_by_id(second)
    assert ecs.ex_delete_security_group_by_id(group)
    assert group not in [g.id for g in ecs.ex_list_security_groups()]


def test_libcloud_reads_a_vpc_instance(ecs, old):
    """A VPC instance (made through the SDK), as Libcloud reads it: its VPC attributes."""
    from test_instances import group, run

    vpc, vsw = vpc_with_vswitch(old, "10.78.0.0/16", "10.78.1.0/24")
    g = group(old, vpc, "lc-vpc")
    [i] = run(old, vsw, [g])
    [node] = ecs.list_nodes(ex_node_ids=[i])
    attrs = node.extra["vpc_attributes"]
    assert (attrs["vpc_id"], attrs["vswitch_id"]) == (vpc, vsw)
    assert attrs["private_ip_address"].startswith("10.78.1."), attrs
    assert node.public_ips == []
