"""Random and malformed parameters to every action: no 5xx, every refusal an ECS error with
its code and RequestId, and nothing changed by a refused request."""

import random

from conftest import raw, signed_v1_url

ECS_ACTIONS = {
    "CreateSecurityGroup": ["SecurityGroupName", "Description", "SecurityGroupType", "VpcId", "Tag.1.Key", "Tag.1.Value", "ClientToken", "DryRun"],
    "DeleteSecurityGroup": ["SecurityGroupId"],
    "DescribeSecurityGroups": ["SecurityGroupId", "SecurityGroupIds", "VpcId", "PageNumber", "PageSize", "MaxResults", "NextToken", "NetworkType", "SecurityGroupType", "Tag.1.Key"],
    "DescribeSecurityGroupAttribute": ["SecurityGroupId", "Direction", "NicType", "MaxResults", "NextToken"],
    "ModifySecurityGroupAttribute": ["SecurityGroupId", "SecurityGroupName", "Description"],
    "ModifySecurityGroupPolicy": ["SecurityGroupId", "InnerAccessPolicy"],
    "DescribeSecurityGroupReferences": ["SecurityGroupId.1", "SecurityGroupId.2", "SecurityGroupId.11"],
    "AuthorizeSecurityGroup": ["SecurityGroupId", "IpProtocol", "PortRange", "SourceCidrIp", "Priority", "Policy", "NicType",
                               "Permissions.1.IpProtocol", "Permissions.1.PortRange", "Permissions.1.SourceCidrIp",
                               "Permissions.3.IpProtocol", "Permissions.3.PortRange", "Permissions.3.SourceGroupId",
                               "Permissions.2.Priority", "Ipv6SourceCidrIp", "SourcePortRange", "DestCidrIp", "SourceGroupId"],
    "AuthorizeSecurityGroupEgress": ["SecurityGroupId", "IpProtocol", "PortRange", "DestCidrIp", "DestGroupId", "Priority", "Permissions.1.IpProtocol", "Permissions.1.PortRange", "Permissions.1.DestCidrIp"],
    "RevokeSecurityGroup": ["SecurityGroupId", "SecurityGroupRuleId.1", "SecurityGroupRuleId.2", "IpProtocol", "PortRange", "SourceCidrIp", "Permissions.1.IpProtocol"],
    "RevokeSecurityGroupEgress": ["SecurityGroupId", "SecurityGroupRuleId.1", "IpProtocol", "PortRange", "DestCidrIp"],
    "ModifySecurityGroupRule": ["SecurityGroupId", "SecurityGroupRuleId", "PortRange", "Priority", "SourceCidrIp", "SourceGroupId", "NicType"],
    "ModifySecurityGroupEgressRule": ["SecurityGroupId", "SecurityGroupRuleId", "PortRange", "DestCidrIp"],
    "JoinSecurityGroup": ["SecurityGroupId", "InstanceId", "NetworkInterfaceId"],
    "LeaveSecurityGroup": ["SecurityGroupId", "InstanceId"],
    "ModifyInstanceAttribute": ["InstanceId", "SecurityGroupIds.1", "SecurityGroupIds.2", "SecurityGroupIds.7", "InstanceName"],
    "RunInstances": ["ImageId", "InstanceType", "VSwitchId", "SecurityGroupId", "SecurityGroupIds.1", "Amount", "PrivateIpAddress", "InternetMaxBandwidthOut", "ZoneId"],
    "CreateInstance": ["ImageId", "InstanceType", "VSwitchId", "SecurityGroupId", "PrivateIpAddress"],
    "DescribeInstances": ["InstanceIds", "VpcId", "PageSize", "PageNumber", "SecurityGroupId", "Status"],
    "StartInstance": ["InstanceId"],
    "StopInstance": ["InstanceId"],
    "DeleteInstance": ["InstanceId", "Force"],
    "TagResources": ["ResourceType", "ResourceId.1", "Tag.1.Key", "Tag.1.Value", "Tag.2.Key"],
    "UntagResources": ["ResourceType", "ResourceId.1", "TagKey.1", "All"],
    "ListTagResources": ["ResourceType", "ResourceId.1", "NextToken", "Tag.1.Key"],
    "DescribeFlowVerdict": ["SourceInstanceId", "SourceIp", "DestinationInstanceId", "DestinationIp", "IpProtocol", "DestinationPort", "SourcePort", "NicType"],
    "DescribeRegions": [],
}
VPC_ACTIONS = {
    "CreateVpc": ["CidrBlock", "VpcName", "Description"],
    "DescribeVpcs": ["VpcId", "PageSize", "PageNumber"],
    "DeleteVpc": ["VpcId"],
    "CreateVSwitch": ["VpcId", "ZoneId", "CidrBlock", "VSwitchName"],
    "DescribeVSwitches": ["VpcId", "ZoneId", "VSwitchId"],
    "DeleteVSwitch": ["VSwitchId"],
}
READ_ONLY = {"DescribeSecurityGroups", "DescribeSecurityGroupAttribute", "DescribeSecurityGroupReferences",
             "DescribeInstances", "ListTagResources", "DescribeFlowVerdict", "DescribeRegions", "DescribeVpcs", "DescribeVSwitches"}


def values(rng, known):
    pool = [
        "", " ", "0", "-1", "1", "99999999999999999999", "-5/-5", "1/65535", "22/22", "65535/1", "tcp", "TCP", "all", "icmp",
        "accept", "drop", "intranet", "internet", "true", "false", "TrUe", "normal", "enterprise", "ingress", "egress",
        "10.0.0.0/8", "0.0.0.0/0", "::/0", "2001:db8::/129", "300.1.2.3", "10.0.0.0/33", "sg-", "sg-" + "a" * 70,
        "i-nope", "vpc-nope", "vsw-nope", "sgr-nope", "[\"sg-a\",\"sg-b\"]", "[1,2", "[\"" + "x" * 30 + "\"]",
        "数据库", "😀" * 10, "'; DROP TABLE security_groups; --", "\x00", "a" * 5000, "cn-hangzhou-h", "securitygroup",
        "instance", "http://evil", "%", "&", "=",
    ]
    return rng.choice(pool + known)


def state(server):
    """A digest of everything the default account can see."""
    out = []
    for action, params in [("DescribeSecurityGroups", {"PageSize": "100"}), ("DescribeInstances", {"PageSize": "100"})]:
        status, body = raw(signed_v1_url(server, dict(Action=action, **params))[0])
        assert status == 200, body
        out.append(json_key(body))
    status, body = raw(signed_v1_url(server, {"Action": "DescribeVpcs", "Version": "2016-04-28", "PageSize": "100"})[0])
    assert status == 200, body
    out.append(json_key(body))
    return out


def json_key(body):
    body = dict(body)
    body.pop("RequestId", None)
    return repr(sorted(body.items()))


def test_random_parameters_never_crash_or_half_apply(server, old):
    rng = random.Random(20261127)
    # Some real ids so that requests get past the NotFound checks.
    _, vpc = raw(signed_v1_url(server, {"Action": "CreateVpc", "Version": "2016-04-28", "CidrBlock": "10.90.0.0/16"})[0])
    _, vsw = raw(signed_v1_url(server, {"Action": "CreateVSwitch", "Version": "2016-04-28", "VpcId": vpc["VpcId"],
                                        "ZoneId": "cn-hangzhou-k", "CidrBlock": "10.90.1.0/24"})[0])
    _, sg = raw(signed_v1_url(server, {"Action": "CreateSecurityGroup", "VpcId": vpc["VpcId"]})[0])
    _, run = raw(signed_v1_url(server, {"Action": "RunInstances", "ImageId": "i", "InstanceType": "t",
                                        "VSwitchId": vsw["VSwitchId"], "SecurityGroupId": sg["SecurityGroupId"]})[0])
    known = [vpc["VpcId"], vsw["VSwitchId"], sg["SecurityGroupId"], run["InstanceIdSets"]["InstanceIdSet"][0]]
    refused = 0
    for round_ in range(300):
        catalogue = rng.choice([ECS_ACTIONS, VPC_ACTIONS])
        action = rng.choice(sorted(catalogue))
        names = catalogue[action]
        params = {"Action": action}
        if catalogue is VPC_ACTIONS:
            params["Version"] = "2016-04-28"
        for name in rng.sample(names, k=rng.randint(0, len(names))) if names else []:
            params[name] = values(rng, known)
        if rng.random() < 0.1:
            params[rng.choice(["Bogus", "Permissions.0.IpProtocol", "Permissions.x.PortRange", "SecurityGroupRuleId.0"])] = "1"
        mutating = action not in READ_ONLY
        before = state(server) if mutating else None
        status, body = raw(signed_v1_url(server, params)[0])
        assert status < 500, (params, body)
        assert isinstance(body, dict) and body.get("RequestId"), (params, body)
        if status != 200:
            refused += 1
            assert body.get("Code") and body.get("Message") is not None, (params, body)
            if mutating:
                assert state(server) == before, f"refused {params} changed the state"
    assert refused > 100, "the fuzzer mostly produced refusals, as it should"
