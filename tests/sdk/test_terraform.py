"""Terraform-shaped replays: for each resource, the alicloud provider's own sequence of
calls (create, the reads it waits on, read, update, read, delete, read until NotFound),
with the parameters and value formats the provider sends and the response fields it reads.

Each call names the provider function it replays (aliyun/terraform-provider-alicloud,
`alicloud/*.go`, as of August 2026). The provider sends RPC requests signed with the V1
signature, as POST forms (`client.RpcPost`, tea-rpc) or through the old SDK's common
request (`ProcessCommonRequest`), over HTTPS by default and for the rule updates always:
the replays do the same through aliyunsdkcore against `stockade serve --tls-cert`."""

import json

import pytest
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest

from conftest import REGION, TLS_AK, TLS_SK


class Provider:
    """What the provider's connectivity client does for one call."""

    def __init__(self, endpoint, cert):
        self.client = AcsClient(TLS_AK, TLS_SK, REGION, verify=cert)
        self.endpoint = endpoint

    def post(self, action, request, product="Ecs", cites=""):
        """`client.RpcPost(product, version, action, nil, request, true)`: parameters in a
        POST form, lists flattened as the tea client flattens them (`Permissions.1.X`)."""
        version = "2016-04-28" if product == "Vpc" else "2014-05-26"
        r = CommonRequest(domain=self.endpoint, version=version, action_name=action)
        r.set_protocol_type("https")
        r.set_method("POST")
        for k, v in flatten(request):
            r.add_body_params(k, v)
        assert cites, "each replayed call names the provider function it comes from"
        return json.loads(self.client.do_action_with_exception(r))

    def common(self, action, query, cites=""):
        """`ProcessCommonRequest` of `client.NewCommonRequest(..., "HTTPS", ...)`: the
        parameters in the query string, over HTTPS."""
        r = CommonRequest(domain=self.endpoint, version="2014-05-26", action_name=action)
        r.set_protocol_type("https")
        r.add_query_param("RegionId", REGION)
        for k, v in query.items():
            r.add_query_param(k, v)
        assert cites
        return json.loads(self.client.do_action_with_exception(r))

    def code(self, action, request, product="Ecs"):
        return self.failure(action, request, product)[0]

    def failure(self, action, request, product="Ecs"):
        """`(Code, HTTP status)` of a call expected to fail: the provider's
        `NotFoundError` takes a 404 (tea) or a `...NotFound` code as the resource gone."""
        try:
            self.post(action, request, product, cites="error probe")
        except ServerException as e:
            return e.get_error_code(), e.get_http_status()
        return None, 200


def flatten(request, prefix=""):
    for k, v in request.items():
        name = f"{prefix}{k}"
        if isinstance(v, list):
            for n, item in enumerate(v, 1):
                if isinstance(item, dict):
                    yield from flatten(item, f"{name}.{n}.")
                else:
                    yield f"{name}.{n}", str(item)
        else:
            yield name, str(v)


@pytest.fixture(scope="module")
def tf(tls):
    return Provider(*tls)


def token():
    import uuid

    return "tf-" + uuid.uuid4().hex


def vpc_and_vswitch(tf):
    """alicloud_vpc and alicloud_vswitch, as `resourceAliCloudVpcVpcCreate` and
    `resourceAliCloudVpcVswitchCreate` make them, with the reads they wait on."""
    vpc = tf.post("CreateVpc", {"RegionId": REGION, "CidrBlock": "172.16.0.0/12", "VpcName": "tf-vpc",
                                 "ClientToken": token()}, "Vpc", cites="resourceAliCloudVpcVpcCreate")["VpcId"]
    # VpcServiceV2.VpcVpcStateRefreshFunc waits for Status Available.
    attr = tf.post("DescribeVpcAttribute", {"RegionId": REGION, "VpcId": vpc}, "Vpc",
                   cites="VpcServiceV2.DescribeVpcVpc")
    assert attr["Status"] == "Available" and attr["CidrBlock"] == "172.16.0.0/12"
    vsw = tf.post("CreateVSwitch", {"RegionId": REGION, "VpcId": vpc, "CidrBlock": "172.16.1.0/24",
                                    "ZoneId": REGION + "-h", "VSwitchName": "tf-vsw", "ClientToken": token()},
                  "Vpc", cites="resourceAliCloudVpcVswitchCreate")["VSwitchId"]
    sw = tf.post("DescribeVSwitchAttributes", {"RegionId": REGION, "VSwitchId": vsw}, "Vpc",
                 cites="VpcServiceV2.DescribeVpcVswitch")
    assert sw["Status"] == "Available" and sw["VpcId"] == vpc
    return vpc, vsw


def test_alicloud_security_group(tf):
    vpc, _ = vpc_and_vswitch(tf)
    made = tf.post("CreateSecurityGroup", {
        "RegionId": REGION, "ClientToken": token(), "SecurityGroupType": "normal",
        "Tag": [{"Key": "Created", "Value": "TF"}], "Description": "tf group",
        "VpcId": vpc, "SecurityGroupName": "tf-sg", "ResourceGroupId": "rg-acfmtfdefault",
    }, cites="resourceAliCloudEcsSecurityGroupCreate")
    sg = made["SecurityGroupId"]

    def read():
        listed = tf.post("DescribeSecurityGroups", {"SecurityGroupId": sg, "RegionId": REGION},
                         cites="EcsServiceV2.DescribeEcsSecurityGroup")["SecurityGroups"]["SecurityGroup"]
        if not listed:
            return None
        attr = tf.post("DescribeSecurityGroupAttribute", {"SecurityGroupId": sg, "RegionId": REGION},
                       cites="EcsServiceV2.DescribeSecurityGroupDescribeSecurityGroupAttribute")
        g = listed[0]
        return {k: g[k] for k in ("CreationTime", "Description", "ResourceGroupId", "SecurityGroupName",
                                  "SecurityGroupType", "VpcId")} | {
            "Tags": {t["TagKey"]: t["TagValue"] for t in g["Tags"]["Tag"]},
            "InnerAccessPolicy": attr["InnerAccessPolicy"]}

    # resourceAliCloudEcsSecurityGroupUpdate, new resource: it reads the policy to decide.
    tf.post("DescribeSecurityGroupAttribute", {"SecurityGroupId": sg, "RegionId": REGION},
            cites="resourceAliCloudEcsSecurityGroupUpdate")
    state = read()
    assert state["SecurityGroupName"] == "tf-sg" and state["ResourceGroupId"] == "rg-acfmtfdefault"
    assert state["Tags"] == {"Created": "TF"} and state["InnerAccessPolicy"] == "Accept"
    assert state["CreationTime"] and state["SecurityGroupType"] == "normal"

    # Update: name and description, intra-group policy, resource group, tags.
    tf.post("ModifySecurityGroupAttribute", {"SecurityGroupId": sg, "RegionId": REGION,
                                             "SecurityGroupName": "tf-sg-renamed", "Description": "renamed"},
            cites="resourceAliCloudEcsSecurityGroupUpdate")
    tf.post("DescribeSecurityGroupAttribute", {"SecurityGroupId": sg, "RegionId": REGION},
            cites="resourceAliCloudEcsSecurityGroupUpdate")
    tf.post("ModifySecurityGroupPolicy", {"SecurityGroupId": sg, "RegionId": REGION, "ClientToken": token(),
                                          "InnerAccessPolicy": "Drop"}, cites="resourceAliCloudEcsSecurityGroupUpdate")
    tf.post("JoinResourceGroup", {"ResourceId": sg, "RegionId": REGION, "ResourceType": "securitygroup",
                                  "ResourceGroupId": "rg-acfmtfother"}, cites="resourceAliCloudEcsSecurityGroupUpdate")
    tf.post("UntagResources", {"ResourceId.1": sg, "RegionId": REGION, "TagKey.1": "Created",
                               "ResourceType": "securitygroup"}, cites="EcsServiceV2.SetResourceTags")
    tf.post("TagResources", {"ResourceId.1": sg, "RegionId": REGION, "Tag.1.Key": "Owner",
                             "Tag.1.Value": "platform", "ResourceType": "securitygroup"},
            cites="EcsServiceV2.SetResourceTags")
    state = read()
    assert (state["SecurityGroupName"], state["Description"], state["InnerAccessPolicy"]) == (
        "tf-sg-renamed", "renamed", "Drop")
    assert state["ResourceGroupId"] == "rg-acfmtfother" and state["Tags"] == {"Owner": "platform"}

    tf.post("DeleteSecurityGroup", {"SecurityGroupId": sg, "RegionId": REGION},
            cites="resourceAliCloudEcsSecurityGroupDelete")
    assert read() is None, "an empty DescribeSecurityGroups is how the provider sees it gone"
    assert tf.code("DescribeSecurityGroupAttribute", {"SecurityGroupId": sg, "RegionId": REGION}) == \
        "InvalidSecurityGroupId.NotFound"


def test_alicloud_security_group_rule(tf):
    vpc, _ = vpc_and_vswitch(tf)
    sg = tf.post("CreateSecurityGroup", {"RegionId": REGION, "ClientToken": token(), "VpcId": vpc,
                                         "SecurityGroupType": "normal"},
                 cites="resourceAliCloudEcsSecurityGroupCreate")["SecurityGroupId"]
    fields = {"IpProtocol": "tcp", "Policy": "accept", "Priority": "1", "SourceCidrIp": "10.144.0.0/12",
              "PortRange": "22/22", "NicType": "intranet", "Description": "ssh from the office"}
    # resourceAliyunSecurityGroupRuleCreate reads the group (EcsService.DescribeSecurityGroup) first.
    group = tf.post("DescribeSecurityGroupAttribute", {"RegionId": REGION, "SecurityGroupId": sg},
                    cites="EcsService.DescribeSecurityGroup")
    assert group["VpcId"] == vpc
    tf.post("AuthorizeSecurityGroup", {"RegionId": REGION, "SecurityGroupId": sg, "Permissions": [fields]},
            cites="resourceAliyunSecurityGroupRuleCreate")

    def read():
        """EcsService.DescribeSecurityGroupRule: the group's rules of the direction and NIC
        type, matched on lower(IpProtocol), PortRange, the CIDR, Policy and Priority."""
        attr = tf.common("DescribeSecurityGroupAttribute", {"SecurityGroupId": sg, "Direction": "ingress",
                                                            "NicType": "intranet"},
                         cites="EcsService.DescribeSecurityGroupRule")
        for ru in attr["Permissions"]["Permission"]:
            if (ru["IpProtocol"].lower(), ru["PortRange"], ru["SourceCidrIp"], ru["Policy"].lower(),
                    str(ru["Priority"])) == ("tcp", "22/22", "10.144.0.0/12", "accept", "1"):
                return ru
        return None

    rule = read()
    assert rule is not None, "the provider finds the rule by its fields"
    assert rule["Description"] == "ssh from the office"

    # resourceAliyunSecurityGroupRuleUpdate: ModifySecurityGroupRule by fields, over HTTPS,
    # from buildAliyunSGRuleRequest.
    changed = dict(fields, Description="ssh from the new office", SecurityGroupId=sg)
    tf.common("ModifySecurityGroupRule", changed, cites="resourceAliyunSecurityGroupRuleUpdate")
    assert read()["Description"] == "ssh from the new office"
    assert read()["SecurityGroupRuleId"] == rule["SecurityGroupRuleId"], "same rule, changed in place"

    tf.common("RevokeSecurityGroup", changed, cites="deleteSecurityGroupRule")
    assert read() is None, "the read until NotFound finds no such rule"


def test_alicloud_vpc_and_vswitch(tf):
    vpc, vsw = vpc_and_vswitch(tf)

    # resourceAliCloudVpcVpcRead: DescribeVpcAttribute, then the system route table.
    attr = tf.post("DescribeVpcAttribute", {"VpcId": vpc, "RegionId": REGION}, "Vpc",
                   cites="VpcServiceV2.DescribeVpcVpc")
    for field in ("CidrBlock", "CreationTime", "Description", "RegionId", "IsDefault", "ResourceGroupId",
                  "VRouterId", "Status", "VpcName", "ClassicLinkEnabled"):
        assert field in attr, field
    tables = tf.post("DescribeRouteTableList", {"VpcId": vpc, "RegionId": REGION}, "Vpc",
                     cites="VpcServiceV2.DescribeVpcDescribeRouteTableList")["RouterTableList"]["RouterTableListType"]
    assert len(tables) == 1 and tables[0]["RouteTableId"] and tables[0]["RouterId"] == attr["VRouterId"]

    # resourceAliCloudVpcVswitchRead.
    sw = tf.post("DescribeVSwitchAttributes", {"VSwitchId": vsw, "RegionId": REGION}, "Vpc",
                 cites="VpcServiceV2.DescribeVpcVswitch")
    assert (sw["CidrBlock"], sw["VSwitchName"], sw["ZoneId"]) == ("172.16.1.0/24", "tf-vsw", REGION + "-h")

    # Updates: resourceAliCloudVpcVpcUpdate and resourceAliCloudVpcVswitchUpdate.
    tf.post("ModifyVpcAttribute", {"VpcId": vpc, "RegionId": REGION, "Description": "tf vpc", "VpcName": "tf-vpc-2"},
            "Vpc", cites="resourceAliCloudVpcVpcUpdate")
    tf.post("ModifyVSwitchAttribute", {"VSwitchId": vsw, "RegionId": REGION, "VSwitchName": "tf-vsw-2",
                                       "Description": "tf vswitch"}, "Vpc", cites="resourceAliCloudVpcVswitchUpdate")
    assert tf.post("DescribeVpcAttribute", {"VpcId": vpc, "RegionId": REGION}, "Vpc",
                   cites="VpcServiceV2.DescribeVpcVpc")["VpcName"] == "tf-vpc-2"
    assert tf.post("DescribeVSwitchAttributes", {"VSwitchId": vsw, "RegionId": REGION}, "Vpc",
                   cites="VpcServiceV2.DescribeVpcVswitch")["Description"] == "tf vswitch"

    # Deletes, each followed by the state refresh that waits for the resource to be gone.
    tf.post("DeleteVSwitch", {"VSwitchId": vsw, "RegionId": REGION}, "Vpc", cites="resourceAliCloudVpcVswitchDelete")
    assert tf.failure("DescribeVSwitchAttributes", {"VSwitchId": vsw, "RegionId": REGION}, "Vpc") == (
        "InvalidVSwitchId.NotFound", 404)
    tf.post("DeleteVpc", {"VpcId": vpc, "RegionId": REGION, "ClientToken": token()}, "Vpc",
            cites="resourceAliCloudVpcVpcDelete")
    assert tf.failure("DescribeVpcAttribute", {"VpcId": vpc, "RegionId": REGION}, "Vpc") == (
        "InvalidVpcId.NotFound", 404)


def test_alicloud_ecs_prefix_list(tf):
    made = tf.post("CreatePrefixList", {
        "Entry.1.Cidr": "192.168.0.0/24", "Entry.1.Description": "office",
        "AddressFamily": "IPv4", "MaxEntries": "2", "PrefixListName": "tf-pl", "RegionId": REGION,
        "ClientToken": token(), "Description": "tf prefix list",
    }, cites="resourceAlicloudEcsPrefixListCreate")
    pl = made["PrefixListId"]

    def read():
        """EcsService.DescribeEcsPrefixList: DescribePrefixListAttributes."""
        return tf.post("DescribePrefixListAttributes", {"PrefixListId": pl, "RegionId": REGION},
                       cites="EcsService.DescribeEcsPrefixList")

    got = read()
    assert (got["AddressFamily"], got["MaxEntries"], got["PrefixListName"], got["Description"]) == (
        "IPv4", 2, "tf-pl", "tf prefix list")
    assert [(e["Cidr"], e["Description"]) for e in got["Entries"]["Entry"]] == [("192.168.0.0/24", "office")]

    tf.post("ModifyPrefixList", {"PrefixListId": pl, "RegionId": REGION, "PrefixListName": "tf-pl-2",
                                 "RemoveEntry.1.Cidr": "192.168.0.0/24",
                                 "AddEntry.1.Cidr": "10.0.0.0/8", "AddEntry.1.Description": "datacentre"},
            cites="resourceAlicloudEcsPrefixListUpdate")
    got = read()
    assert got["PrefixListName"] == "tf-pl-2"
    assert [e["Cidr"] for e in got["Entries"]["Entry"]] == ["10.0.0.0/8"]

    tf.post("DeletePrefixList", {"PrefixListId": pl, "RegionId": REGION}, cites="resourceAlicloudEcsPrefixListDelete")
    assert tf.code("DescribePrefixListAttributes", {"PrefixListId": pl, "RegionId": REGION}) == \
        "InvalidPrefixListId.NotFound"


def second_vswitch(tf, vpc, cidr="172.16.2.0/24"):
    return tf.post("CreateVSwitch", {"RegionId": REGION, "VpcId": vpc, "CidrBlock": cidr, "ZoneId": REGION + "-h",
                                     "VSwitchName": "tf-vsw-2", "ClientToken": token()},
                   "Vpc", cites="resourceAliCloudVpcVswitchCreate")["VSwitchId"]


def security_group(tf, vpc, name):
    return tf.post("CreateSecurityGroup", {"RegionId": REGION, "ClientToken": token(), "VpcId": vpc,
                                           "SecurityGroupType": "normal", "SecurityGroupName": name},
                   cites="resourceAliCloudEcsSecurityGroupCreate")["SecurityGroupId"]


def network_interface(tf, eni):
    """EcsService.DescribeEcsNetworkInterface: DescribeNetworkInterfaces by id; an empty set
    (or another id) is the interface gone."""
    listed = tf.post("DescribeNetworkInterfaces", {"RegionId": REGION, "NetworkInterfaceId": [eni]},
                     cites="EcsService.DescribeEcsNetworkInterface")["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    if not listed or listed[0]["NetworkInterfaceId"] != eni:
        return None
    return listed[0]


def test_alicloud_ecs_network_interface_and_attachment(tf):
    vpc, vsw = vpc_and_vswitch(tf)
    sg, sg2 = security_group(tf, vpc, "tf-eni-a"), security_group(tf, vpc, "tf-eni-b")
    eni = tf.post("CreateNetworkInterface", {
        "RegionId": REGION, "VSwitchId": vsw, "SecurityGroupIds": [sg], "NetworkInterfaceName": "tf-eni",
        "Description": "tf interface", "PrimaryIpAddress": "172.16.1.50",
    }, cites="resourceAliCloudEcsNetworkInterfaceCreate")["NetworkInterfaceId"]
    # The create waits for Status Available (EcsNetworkInterfaceStateRefreshFunc).
    assert network_interface(tf, eni)["Status"] == "Available"

    def read():
        """resourceAliCloudEcsNetworkInterfaceRead: the fields it sets, and the eni tags."""
        o = network_interface(tf, eni)
        if o is None:
            return None
        secondary = [p["PrivateIpAddress"] for p in o["PrivateIpSets"]["PrivateIpSet"] if not p["Primary"]]
        tags = tf.post("ListTagResources", {"RegionId": REGION, "ResourceType": "eni", "ResourceId.1": eni},
                       cites="EcsService.ListTagResources")["TagResources"]["TagResource"]
        return {
            "name": o["NetworkInterfaceName"], "description": o["Description"], "mac": o["MacAddress"],
            "primary_ip_address": o["PrivateIpAddress"], "private_ips": secondary,
            "ipv6_addresses": [a["Ipv6Address"] for a in o["Ipv6Sets"]["Ipv6Set"]],
            "ipv4_prefixes": o["Ipv4PrefixSets"]["Ipv4PrefixSet"],
            "security_group_ids": o["SecurityGroupIds"]["SecurityGroupId"], "status": o["Status"],
            "vswitch_id": o["VSwitchId"], "instance_type": o["Type"], "resource_group_id": o["ResourceGroupId"],
            "delete_on_release": o["DeleteOnRelease"], "tags": {t["TagKey"]: t["TagValue"] for t in tags},
        }

    state = read()
    assert (state["name"], state["description"], state["primary_ip_address"]) == (
        "tf-eni", "tf interface", "172.16.1.50")
    assert (state["security_group_ids"], state["vswitch_id"], state["instance_type"]) == ([sg], vsw, "Secondary")
    assert state["mac"] and state["private_ips"] == [] and state["ipv4_prefixes"] == []

    # Update: tags (SetResourceTags), then ModifyNetworkInterfaceAttribute with the groups as
    # a list under `SecurityGroupId`.
    tf.post("TagResources", {"RegionId": REGION, "ResourceType": "eni", "ResourceId.1": eni,
                             "Tag.1.Key": "Owner", "Tag.1.Value": "tf"}, cites="EcsService.SetResourceTags")
    tf.post("ModifyNetworkInterfaceAttribute", {
        "RegionId": REGION, "NetworkInterfaceId": eni, "Description": "renamed", "NetworkInterfaceName": "tf-eni-2",
        "SecurityGroupId": [sg, sg2],
    }, cites="resourceAliCloudEcsNetworkInterfaceUpdate")
    state = read()
    assert (state["name"], state["description"], state["security_group_ids"]) == ("tf-eni-2", "renamed", [sg, sg2])
    assert state["tags"] == {"Owner": "tf"}

    # `ipv4_prefix_count` 0 -> 2: AssignPrivateIpAddresses with the count and a client token;
    # the update waits until the read lists two (WaitForModifyIpv4PrefixCount). Then one
    # taken out of `ipv4_prefixes`: UnassignPrivateIpAddresses with `Ipv4Prefix.N`.
    tf.post("AssignPrivateIpAddresses", {"RegionId": REGION, "NetworkInterfaceId": eni, "ClientToken": token(),
                                         "Ipv4PrefixCount": 2},
            cites="resourceAliCloudEcsNetworkInterfaceUpdate")
    prefixes = [p["Ipv4Prefix"] for p in read()["ipv4_prefixes"]]
    assert len(prefixes) == 2 and all(p.startswith("172.16.1.") and p.endswith("/28") for p in prefixes), prefixes
    tf.post("UnassignPrivateIpAddresses", {"RegionId": REGION, "NetworkInterfaceId": eni, "ClientToken": token(),
                                           "Ipv4Prefix.1": prefixes[0]},
            cites="resourceAliCloudEcsNetworkInterfaceUpdate")
    assert [p["Ipv4Prefix"] for p in read()["ipv4_prefixes"]] == prefixes[1:]

    # alicloud_ecs_network_interface_attachment, to an instance of the same vSwitch's zone.
    instance = tf.post("RunInstances", {"RegionId": REGION, "ImageId": "ubuntu_22_04_x64",
                                        "InstanceType": "ecs.g7.large", "VSwitchId": vsw,
                                        "SecurityGroupIds": [sg], "ClientToken": token()},
                       cites="resourceAliCloudInstanceCreate")["InstanceIdSets"]["InstanceIdSet"][0]
    tf.post("AttachNetworkInterface", {"RegionId": REGION, "NetworkInterfaceId": eni, "InstanceId": instance},
            cites="resourceAliCloudEcsNetworkInterfaceAttachmentCreate")
    assert network_interface(tf, eni)["Status"] == "InUse", "the attach waits for InUse"

    def attachment():
        """EcsService.DescribeEcsNetworkInterfaceAttachment: the interface listed with the
        instance's id (`NetworkInterfaceId:InstanceId`)."""
        listed = tf.post("DescribeNetworkInterfaces", {"RegionId": REGION, "NetworkInterfaceId": [eni],
                                                       "MaxResults": 100},
                         cites="EcsService.DescribeEcsNetworkInterfaceAttachment")
        found = [v for v in listed["NetworkInterfaceSets"]["NetworkInterfaceSet"]
                 if v["NetworkInterfaceId"] == eni and v["InstanceId"] == instance]
        assert not listed.get("NextToken"), "one page"
        return found[0] if found else None

    assert attachment()["Status"] == "InUse"
    tf.post("DetachNetworkInterface", {"RegionId": REGION, "NetworkInterfaceId": eni, "InstanceId": instance},
            cites="resourceAliCloudEcsNetworkInterfaceAttachmentDelete")
    assert network_interface(tf, eni)["Status"] == "Available", "the detach waits for Available"
    assert attachment() is None

    tf.post("DeleteInstance", {"RegionId": REGION, "InstanceId": instance, "Force": "true"},
            cites="resourceAliCloudInstanceDelete")
    tf.post("DeleteNetworkInterface", {"RegionId": REGION, "NetworkInterfaceId": eni},
            cites="resourceAliCloudEcsNetworkInterfaceDelete")
    assert read() is None, "the delete waits until DescribeNetworkInterfaces lists nothing"


def test_alicloud_instance_security_groups(tf):
    vpc, vsw = vpc_and_vswitch(tf)
    backend = second_vswitch(tf, vpc)
    web, ssh, db = (security_group(tf, vpc, n) for n in ("tf-web", "tf-ssh", "tf-db"))
    # A `network_interfaces` block makes the create ask whether the type has network cards.
    types = tf.post("DescribeInstanceTypes", {"InstanceTypes": ["ecs.g7.large"]},
                    cites="EcsService.isSupportedNetworkCardIndex")["InstanceTypes"]["InstanceType"]
    assert [t["InstanceTypeId"] for t in types] == ["ecs.g7.large"] and types[0]["NetworkCards"]["NetworkCardInfo"] == []
    made = tf.post("RunInstances", {
        "RegionId": REGION, "InstanceType": "ecs.g7.large", "ImageId": "ubuntu_22_04_x64",
        "SecurityGroupIds": [web], "VSwitchId": vsw, "InstanceName": "tf-instance",
        "SystemDisk.Category": "cloud_efficiency", "SystemDisk.Size": "40",
        "InternetMaxBandwidthOut": "0", "InstanceChargeType": "PostPaid", "ClientToken": token(),
        "Tag": [{"Key": "Created", "Value": "TF"}], "NetworkOptions.EnableJumboFrame": "false",
        "NetworkInterface": [{"InstanceType": "Secondary", "VSwitchId": backend, "SecurityGroupIds": [db],
                              "NetworkInterfaceTrafficMode": "Standard"}],
    }, cites="resourceAliCloudInstanceCreate")
    [i] = made["InstanceIdSets"]["InstanceIdSet"]

    def describe():
        """EcsService.DescribeInstance: DescribeInstances by InstanceIds with the additional
        attributes; an empty list is the instance gone."""
        got = tf.post("DescribeInstances", {"RegionId": REGION, "InstanceIds": json.dumps([i]),
                                            "AdditionalAttributes": ["META_OPTIONS", "NETWORK_PRIMARY_ENI_IP"]},
                      cites="EcsService.DescribeInstance")["Instances"]["Instance"]
        return got[0] if got else None

    assert describe()["Status"] == "Running", "the create waits for Running"

    def read():
        """resourceAliCloudInstanceRead, in its order: the instance, its system disk, user
        data, each interface, maintenance, attribute, attachment attributes."""
        inst = describe()
        if inst is None:
            return None
        [disk] = tf.post("DescribeDisks", {"RegionId": REGION, "InstanceId": i, "DiskType": "system"},
                         cites="EcsService.DescribeEcsSystemDisk")["Disks"]["Disk"]
        assert disk["InstanceId"] == i
        tf.post("DescribeUserData", {"RegionId": REGION, "InstanceId": i}, cites="resourceAliCloudInstanceRead")
        secondary = []
        for n in inst["NetworkInterfaces"]["NetworkInterface"]:
            o = network_interface(tf, n["NetworkInterfaceId"])
            if n["Type"] != "Primary":
                secondary.append({"vswitch_id": o["VSwitchId"],
                                  "security_group_ids": o["SecurityGroupIds"]["SecurityGroupId"]})
        [m] = tf.post("DescribeInstanceMaintenanceAttributes", {"RegionId": REGION, "InstanceId": [i]},
                      cites="EcsService.DescribeInstanceMaintenanceAttribute")["MaintenanceAttributes"][
                          "MaintenanceAttribute"]
        assert m["InstanceId"] == i
        tf.post("DescribeInstanceAttribute", {"RegionId": REGION, "InstanceId": i},
                cites="EcsService.DescribeInstanceAttribute")
        [a] = tf.post("DescribeInstanceAttachmentAttributes", {"RegionId": REGION, "InstanceIds": json.dumps([i])},
                      cites="EcsService.DescribeInstanceAttachmentAttribute")["Instances"]["Instance"]
        assert a["InstanceId"] == i
        return {
            "security_groups": set(inst["SecurityGroupIds"]["SecurityGroupId"]),
            "vswitch_id": inst["VpcAttributes"]["VSwitchId"], "status": inst["Status"],
            "private_ip": inst["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0],
            "instance_name": inst["InstanceName"], "tags": {t["TagKey"]: t["TagValue"] for t in inst["Tags"]["Tag"]},
            "system_disk": (disk["Category"], disk["Size"]), "network_interfaces": secondary,
            "maintenance_action": m["ActionOnMaintenance"]["Value"],
        }

    state = read()
    assert state["security_groups"] == {web} and state["vswitch_id"] == vsw and state["status"] == "Running"
    assert state["system_disk"] == ("cloud_efficiency", 40) and state["tags"] == {"Created": "TF"}
    assert state["network_interfaces"] == [{"vswitch_id": backend, "security_group_ids": [db]}]
    assert state["private_ip"].startswith("172.16.1.")

    # security_groups [web] -> [ssh, web]... then [ssh]: LeaveSecurityGroups, JoinSecurityGroups.
    tf.post("JoinSecurityGroup", {"RegionId": REGION, "InstanceId": i, "SecurityGroupId": ssh},
            cites="EcsService.JoinSecurityGroups")
    assert read()["security_groups"] == {web, ssh}
    tf.post("LeaveSecurityGroup", {"RegionId": REGION, "InstanceId": i, "SecurityGroupId": web},
            cites="EcsService.LeaveSecurityGroups")
    state = read()
    assert state["security_groups"] == {ssh}
    assert state["network_interfaces"] == [{"vswitch_id": backend, "security_group_ids": [db]}], \
        "the secondary interface keeps its own groups"

    tf.post("DeleteInstance", {"RegionId": REGION, "InstanceId": i, "Force": "true"},
            cites="resourceAliCloudInstanceDelete")
    assert read() is None, "the delete waits until DescribeInstances lists nothing"
    # The interface made with the instance went with it (DeleteOnRelease).
    assert not tf.post("DescribeNetworkInterfaces", {"RegionId": REGION, "VSwitchId": backend},
                       cites="error probe")["NetworkInterfaceSets"]["NetworkInterfaceSet"]
    assert tf.code("DeleteSecurityGroup", {"RegionId": REGION, "SecurityGroupId": db}) is None, \
        "its group has no member left"
