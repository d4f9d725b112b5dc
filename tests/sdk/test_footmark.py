"""footmark, the library under Ansible's alicloud modules, runs the seed's story against
`stockade serve`: a VPC and vSwitch, a security group with rules, an instance (footmark reads
each instance's disks too), join and leave, an interface looked up before it is made (as
`ali_eni` does), stop, start, deletion. Every read is checked field by field.

footmark builds its own `AcsClient` per call and lets the core SDK resolve the endpoint, so
pointing it at Stockade is the core SDK's endpoint override (README, "Other clients"):
`aliyunsdkcore.profile.region_provider.modify_point(product, region, "host:port")` for `Ecs`
and `Vpc`, over plain HTTP (the core SDK's default)."""

import uuid

import pytest
from aliyunsdkcore.profile import region_provider
from footmark.ecs.connection import ECSConnection
from footmark.vpc.connection import VPCConnection

from conftest import REGION


@pytest.fixture(scope="module")
def footmark(server):
    for product in ("Ecs", "Vpc"):
        region_provider.modify_point(product, REGION, server.endpoint)
    yield (ECSConnection(server.ak, server.sk, REGION), VPCConnection(server.ak, server.sk, REGION))
    # The override is process-wide: the other tests' clients name their endpoints themselves.
    from aliyunsdkcore.endpoint.default_endpoint_resolver import DefaultEndpointResolver

    DefaultEndpointResolver.predefined_endpoint_resolver.reset()


def token():
    return uuid.uuid4().hex


def test_footmark_runs_the_story(footmark):
    ecs, vpcs = footmark
    vpc = vpcs.create_vpc(cidr_block="10.79.0.0/16", vpc_name="fm-vpc", description="by footmark",
                          client_token=token())
    assert (vpc.cidr_block, vpc.vpc_name, vpc.status) == ("10.79.0.0/16", "fm-vpc", "Available")
    vsw = vpcs.create_vswitch(vpc_id=vpc.id, cidr_block="10.79.1.0/24", zone_id=REGION + "-h",
                              vswitch_name="fm-vsw", client_token=token())
    assert (vsw.cidr_block, vsw.vpc_id, vsw.zone_id) == ("10.79.1.0/24", vpc.id, REGION + "-h")

    group = ecs.create_security_group(security_group_name="fm-web", description="by footmark",
                                      vpc_id=vpc.id, client_token=token())
    assert (group.security_group_name, group.description, group.vpc_id) == ("fm-web", "by footmark", vpc.id)
    assert ecs.authorize_security_group(security_group_id=group.id, ip_protocol="tcp", port_range="22/22",
                                        source_cidr_ip="192.0.2.0/24", priority=1, policy="accept",
                                        nic_type="intranet", description="ssh", client_token=token())
    read = ecs.describe_security_group_attribute(security_group_id=group.id)
    [rule] = read.permissions
    assert (rule["ip_protocol"], rule["port_range"], rule["source_cidr_ip"], rule["priority"], rule["policy"],
            rule["description"], rule["direction"]) == ("TCP", "22/22", "192.0.2.0/24", "1", "Accept", "ssh", "ingress")
    [listed] = [g for g in ecs.describe_security_groups(vpc_id=vpc.id)]
    assert (listed.id, listed.security_group_name) == (group.id, "fm-web")

    # As ali_instance calls it (billing terms included, though pay-as-you-go ignores them).
    instances = ecs.run_instances(image_id="ubuntu_22_04_x64", instance_type="ecs.g7.large",
                                  security_group_id=group.id, vswitch_id=vsw.id, instance_name="fm-node",
                                  host_name="fm-host", description="by footmark", amount=1,
                                  internet_charge_type="PayByTraffic", internet_max_bandwidth_in=200,
                                  io_optimized="optimized", system_disk_category="cloud_essd",
                                  system_disk_size=40, instance_charge_type="PostPaid", period=1,
                                  period_unit="Month", auto_renew=False, key_pair_name="fm-key",
                                  user_data="IyEvYmluL3NoCg==", unique_suffix=False, tags={"app": "web"},
                                  client_token=token())
    [node] = instances
    assert (node.instance_name, node.host_name, node.status, node.vpc_id, node.vswitch_id) == (
        "fm-node", "fm-host", "running", vpc.id, vsw.id)
    assert node.private_ip_address.startswith("10.79.1.")
    assert node.public_ip_address == "" and node.tags == {"app": "web"}
    assert node.security_group_ids["security_group_id"] == [group.id]
    [disk] = ecs.describe_disks(instance_id=node.id)
    assert (disk.category, disk.size, disk.type, disk.instance_id) == ("cloud_essd", 40, "system", node.id)
    assert disk.attached_time

    ops = ecs.create_security_group(security_group_name="fm-ops", vpc_id=vpc.id, client_token=token())
    assert ecs.join_security_group(instance_id=node.id, security_group_id=ops.id)
    [node] = ecs.describe_instances(instance_ids=[node.id])
    assert node.security_group_ids["security_group_id"] == [group.id, ops.id]
    assert ecs.leave_security_group(instance_id=node.id, security_group_id=ops.id)

    # ali_eni looks the interface up first (`NetworkInterfaceId.1=None`), then creates it.
    assert ecs.describe_network_interfaces(network_interface_ids=[None], vswitch_id=vsw.id) == []
    eni = ecs.create_network_interface(vswitch_id=vsw.id, security_group_id=group.id, primary_ip_address=None,
                                       network_interface_name="fm-eni", description="by footmark",
                                       client_token=token())
    [found] = ecs.describe_network_interfaces(network_interface_ids=[eni.network_interface_id])
    assert (found.network_interface_name, found.status, found.vswitch_id) == ("fm-eni", "available", vsw.id)
    assert ecs.delete_network_interface(network_interface_id=found.network_interface_id)

    assert ecs.stop_instances(instance_ids=[node.id], force_stop=False)
    [node] = ecs.describe_instances(instance_ids=[node.id])
    assert node.status == "stopped"
    assert ecs.start_instances(instance_ids=[node.id])
    assert ecs.delete_instances(instance_ids=[node.id], force=True)
    assert ecs.describe_instances(instance_ids=[node.id]) == []
    for g in (ops, group):
        assert ecs.delete_security_group(security_group_id=g.id)
    assert vpcs.delete_vswitch(vswitch_id=vsw.id)
    assert vpcs.delete_vpc(vpc_id=vpc.id)
