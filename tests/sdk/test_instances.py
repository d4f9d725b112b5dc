"""VPCs, instances, memberships and flow verdicts through the official SDKs, including the
seed document's own join_sg / leave_sg snippets."""

import json
import logging
import uuid

from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupRequest,
    CreateInstanceRequest,
    CreateSecurityGroupRequest,
    DeleteInstanceRequest,
    DeleteSecurityGroupRequest,
    DescribeInstancesRequest,
    DescribeSecurityGroupAttributeRequest,
    JoinSecurityGroupRequest,
    LeaveSecurityGroupRequest,
    ModifyInstanceAttributeRequest,
    ModifySecurityGroupPolicyRequest,
    RunInstancesRequest,
    StartInstanceRequest,
    StopInstanceRequest,
)
from aliyunsdkvpc.request.v20160428 import (
    CreateVSwitchRequest,
    CreateVpcRequest,
    DeleteVSwitchRequest,
    DeleteVpcRequest,
    DescribeVSwitchAttributesRequest,
    DescribeVSwitchesRequest,
    DescribeVpcAttributeRequest,
    DescribeVpcsRequest,
)

from conftest import REGION, OldSdk, stockade_action


def vpc_with_vswitch(old, cidr="192.168.0.0/16", vsw_cidr="192.168.1.0/24"):
    r = CreateVpcRequest.CreateVpcRequest()
    r.set_CidrBlock(cidr)
    r.set_VpcName("lab")
    vpc = old.call(r)["VpcId"]
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock(vsw_cidr)
    return vpc, old.call(s)["VSwitchId"]


def group(old, vpc, name="grp", kind=None):
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_SecurityGroupName(name)
    r.set_VpcId(vpc)
    if kind:
        r.set_SecurityGroupType(kind)
    return old.call(r)["SecurityGroupId"]


def run(old, vswitch, groups, amount=1, ip=None):
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("ubuntu_22_04_x64")
    r.set_InstanceType("ecs.g7.large")
    r.set_VSwitchId(vswitch)
    r.set_SecurityGroupIdss(groups)
    r.set_Amount(amount)
    if ip:
        r.set_PrivateIpAddress(ip)
    return old.call(r)["InstanceIdSets"]["InstanceIdSet"]


def describe(old, ids):
    r = DescribeInstancesRequest.DescribeInstancesRequest()
    r.set_InstanceIds(json.dumps(ids))
    return old.call(r)["Instances"]["Instance"]


def verdict(old, **params):
    return stockade_action(old, "DescribeFlowVerdict", **params)


def test_vpcs_and_vswitches(old):
    vpc, vsw = vpc_with_vswitch(old, "10.20.0.0/16", "10.20.1.0/24")
    d = DescribeVpcsRequest.DescribeVpcsRequest()
    d.set_VpcId(vpc)
    [v] = old.call(d)["Vpcs"]["Vpc"]
    assert (v["CidrBlock"], v["VSwitchIds"]["VSwitchId"]) == ("10.20.0.0/16", [vsw])
    s = DescribeVSwitchesRequest.DescribeVSwitchesRequest()
    s.set_VpcId(vpc)
    [sw] = old.call(s)["VSwitches"]["VSwitch"]
    assert (sw["CidrBlock"], sw["ZoneId"], sw["AvailableIpAddressCount"]) == ("10.20.1.0/24", REGION + "-h", 253)
    overlap = CreateVSwitchRequest.CreateVSwitchRequest()
    overlap.set_VpcId(vpc)
    overlap.set_ZoneId(REGION + "-h")
    overlap.set_CidrBlock("10.20.1.128/25")
    assert old.error(overlap)[0] == "InvalidCidrBlock.Overlapped"
    overlap.set_CidrBlock("10.30.0.0/24")
    assert old.error(overlap)[0] == "InvalidCidrBlock.Malformed"
    overlap.set_CidrBlock("10.20.2.0/24")
    overlap.set_ZoneId("us-west-1a")
    assert old.error(overlap)[0] == "InvalidZoneId.NotFound"
    dv = DeleteVpcRequest.DeleteVpcRequest()
    dv.set_VpcId(vpc)
    assert old.error(dv)[0] == "DependencyViolation"
    ds = DeleteVSwitchRequest.DeleteVSwitchRequest()
    ds.set_VSwitchId(vsw)
    old.call(ds)
    old.call(dv)
    assert old.error(dv)[0] == "InvalidVpcId.NotFound"


def test_instances_lifecycle(old):
    vpc, vsw = vpc_with_vswitch(old)
    sg = group(old, vpc)
    ids = run(old, vsw, [sg], amount=3)
    assert len(ids) == 3
    insts = describe(old, ids)
    ips = [i["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0] for i in insts]
    assert ips == ["192.168.1.2", "192.168.1.3", "192.168.1.4"]
    assert all(i["SecurityGroupIds"]["SecurityGroupId"] == [sg] and i["Status"] == "Running" for i in insts)
    assert insts[0]["InstanceNetworkType"] == "vpc" and insts[0]["VpcAttributes"]["VpcId"] == vpc
    [fixed] = run(old, vsw, [sg], ip="192.168.1.100")
    assert describe(old, [fixed])[0]["VpcAttributes"]["PrivateIpAddress"]["IpAddress"] == ["192.168.1.100"]
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("img")
    r.set_InstanceType("t")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupId(sg)
    r.set_PrivateIpAddress("192.168.1.100")
    assert old.error(r)[0] == "InvalidPrivateIpAddress.Duplicated"
    c = CreateInstanceRequest.CreateInstanceRequest()
    c.set_ImageId("img")
    c.set_InstanceType("t")
    c.set_VSwitchId(vsw)
    c.set_SecurityGroupId(sg)
    stopped = old.call(c)["InstanceId"]
    assert describe(old, [stopped])[0]["Status"] == "Stopped"
    stop = StopInstanceRequest.StopInstanceRequest()
    stop.set_InstanceId(stopped)
    assert old.error(stop) == ("IncorrectInstanceStatus", 403)
    start = StartInstanceRequest.StartInstanceRequest()
    start.set_InstanceId(stopped)
    old.call(start)
    assert describe(old, [stopped])[0]["Status"] == "Running"
    delete = DeleteInstanceRequest.DeleteInstanceRequest()
    delete.set_InstanceId(stopped)
    assert old.error(delete) == ("IncorrectInstanceStatus", 403)
    delete.set_Force(True)
    old.call(delete)
    assert describe(old, [stopped]) == []
    gone = DeleteSecurityGroupRequest.DeleteSecurityGroupRequest()
    gone.set_SecurityGroupId(sg)
    assert old.error(gone) == ("DependencyViolation", 403)


def test_seed_join_and_leave_snippets(server):
    """The seed document's snippets, run as written: only the client and endpoint differ."""
    clt = AcsClient(server.ak, server.sk, REGION, port=server.port)
    clt.add_endpoint(REGION, "Ecs", "127.0.0.1")
    clt.add_endpoint(REGION, "Vpc", "127.0.0.1")

    def _send_request(request):
        request.set_accept_format('json')
        try:
            response_str = clt.do_action(request)
            logging.info(response_str)
            response_detail = json.loads(response_str)
            return response_detail
        except Exception as e:
            logging.error(e)

    def join_sg(sg_id, instance_id):
        request = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
        request.set_InstanceId(instance_id)
        request.set_SecurityGroupId(sg_id)
        response = _send_request(request)
        return response

    def leave_sg(sg_id, instance_id):
        request = LeaveSecurityGroupRequest.LeaveSecurityGroupRequest()
        request.set_InstanceId(instance_id)
        request.set_SecurityGroupId(sg_id)
        response = _send_request(request)
        return response

    vpc = _send_request(CreateVpcRequest.CreateVpcRequest())["VpcId"]
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-b")
    s.set_CidrBlock("172.16.5.0/24")
    vsw = _send_request(s)["VSwitchId"]
    groups = []
    for name in ("sg-web", "sg-redis"):
        g = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
        g.set_SecurityGroupName(name.replace("sg-", "seed"))
        g.set_VpcId(vpc)
        groups.append(_send_request(g)["SecurityGroupId"])
    web, redis = groups
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("img")
    r.set_InstanceType("t")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupId(web)
    instance = _send_request(r)["InstanceIdSets"]["InstanceIdSet"][0]

    assert "RequestId" in join_sg(redis, instance)
    d = DescribeInstancesRequest.DescribeInstancesRequest()
    d.set_InstanceIds(json.dumps([instance]))
    assert _send_request(d)["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"] == [web, redis]
    assert "RequestId" in leave_sg(web, instance)
    assert _send_request(d)["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"] == [redis]
    # Leaving the last group fails: do_action hands back the ECS error body.
    assert leave_sg(redis, instance)["Code"] == "InstanceLastSecurityGroup"


def test_membership_rules(old):
    vpc, vsw = vpc_with_vswitch(old, "172.20.0.0/16", "172.20.0.0/24")
    groups = [group(old, vpc, f"member{i}") for i in range(6)]
    [inst] = run(old, vsw, groups[:1])
    for g in groups[1:5]:
        j = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
        j.set_InstanceId(inst)
        j.set_SecurityGroupId(g)
        old.call(j)
    j = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
    j.set_InstanceId(inst)
    j.set_SecurityGroupId(groups[5])
    assert old.error(j) == ("InstanceSecurityGroupLimitExceeded", 400)
    j.set_SecurityGroupId(groups[0])
    assert old.error(j) == ("InvalidInstanceId.AlreadyExists", 403)
    [fresh] = run(old, vsw, groups[:1])
    j.set_InstanceId(fresh)
    other_vpc, _ = vpc_with_vswitch(old, "172.21.0.0/16", "172.21.0.0/24")
    j.set_SecurityGroupId(group(old, other_vpc, "othervpc"))
    assert old.error(j) == ("InvalidInstanceId.Mismatch", 400)
    j.set_SecurityGroupId(group(old, vpc, "enterprise", kind="enterprise"))
    assert old.error(j) == ("InvalidSecurityGroupType.Mismatch", 403)
    j.set_InstanceId("i-nosuchinstance")
    j.set_SecurityGroupId(groups[5])
    assert old.error(j) == ("InvalidInstanceId.NotFound", 404)
    leave = LeaveSecurityGroupRequest.LeaveSecurityGroupRequest()
    leave.set_InstanceId(inst)
    leave.set_SecurityGroupId(groups[5])
    assert old.error(leave) == ("InvalidSecurityGroupAssociation.NotFound", 400)
    m = ModifyInstanceAttributeRequest.ModifyInstanceAttributeRequest()
    m.set_InstanceId(inst)
    m.set_SecurityGroupIdss([groups[5], groups[2]])
    old.call(m)
    assert describe(old, [inst])[0]["SecurityGroupIds"]["SecurityGroupId"] == [groups[5], groups[2]]
    m.set_SecurityGroupIdss(groups)
    assert old.error(m) == ("InstanceSecurityGroupLimitExceeded", 400)
    assert describe(old, [inst])[0]["SecurityGroupIds"]["SecurityGroupId"] == [groups[5], groups[2]]


def test_flow_verdicts_follow_rules_and_membership(old):
    vpc, vsw = vpc_with_vswitch(old, "10.60.0.0/16", "10.60.1.0/24")
    web, db = group(old, vpc, "flowweb"), group(old, vpc, "flowdb")
    a = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    a.set_SecurityGroupId(db)
    a.set_Permissions([{"IpProtocol": "tcp", "PortRange": "3306/3306", "SourceGroupId": web, "Priority": "2"}])
    old.call(a)
    [w] = run(old, vsw, [web])
    [d] = run(old, vsw, [db])
    [x] = run(old, vsw, [group(old, vpc, "flowother")])
    v = verdict(old, SourceInstanceId=w, DestinationInstanceId=d, IpProtocol="tcp", DestinationPort=3306)
    assert v["Verdict"] == "Accept"
    egress, ingress = v["Stages"]["Stage"]
    assert (egress["Stage"], egress["DecidedBy"]) == ("Egress", "DefaultEgress")
    assert (ingress["Stage"], ingress["InstanceId"], ingress["DecidedBy"], ingress["SecurityGroupId"], ingress["Priority"], ingress["Policy"]) == (
        "Ingress", d, "Rule", db, "2", "Accept")
    assert ingress["SecurityGroupRuleId"].startswith("sgr-")
    assert verdict(old, SourceInstanceId=x, DestinationInstanceId=d, IpProtocol="tcp", DestinationPort=3306)["Verdict"] == "Drop"
    # Joining the referenced group opens the port, without any rule change.
    j = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
    j.set_InstanceId(x)
    j.set_SecurityGroupId(web)
    old.call(j)
    assert verdict(old, SourceInstanceId=x, DestinationInstanceId=d, IpProtocol="tcp", DestinationPort=3306)["Verdict"] == "Accept"
    # Intra-group default, then isolation.
    [w2] = run(old, vsw, [web])
    v = verdict(old, SourceInstanceId=w, DestinationInstanceId=w2, IpProtocol="udp", DestinationPort=53)
    assert (v["Verdict"], v["Stages"]["Stage"][1]["DecidedBy"]) == ("Accept", "InnerAccessPolicy")
    p = ModifySecurityGroupPolicyRequest.ModifySecurityGroupPolicyRequest()
    p.set_SecurityGroupId(web)
    p.set_InnerAccessPolicy("Drop")
    old.call(p)
    v = verdict(old, SourceInstanceId=w, DestinationInstanceId=w2, IpProtocol="udp", DestinationPort=53)
    assert (v["Verdict"], v["Stages"]["Stage"][1]["DecidedBy"]) == ("Drop", "DefaultIngress")
    v = verdict(old, SourceIp="203.0.113.7", DestinationInstanceId=d, IpProtocol="icmp")
    assert [s["Stage"] for s in v["Stages"]["Stage"]] == ["Ingress"]
    try:
        verdict(old, SourceInstanceId="i-notmine0", DestinationInstanceId=d, IpProtocol="tcp", DestinationPort=1)
    except Exception as e:
        assert "InvalidInstanceId.NotFound" in str(e)
    else:
        raise AssertionError("an unknown instance must be refused")


def test_describe_instance_exposure(old):
    vpc, vsw = vpc_with_vswitch(old, "10.61.0.0/16", "10.61.1.0/24")
    web, db = group(old, vpc, "expweb"), group(old, vpc, "expdb")
    a = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    a.set_SecurityGroupId(db)
    a.set_Permissions([{"IpProtocol": "tcp", "PortRange": "5432/5432", "SourceGroupId": web},
                       {"IpProtocol": "tcp", "PortRange": "22/22", "SourceCidrIp": "192.0.2.0/24"}])
    old.call(a)
    p = ModifySecurityGroupPolicyRequest.ModifySecurityGroupPolicyRequest()
    p.set_SecurityGroupId(db)
    p.set_InnerAccessPolicy("Drop")
    old.call(p)
    [w] = run(old, vsw, [web])
    [d] = run(old, vsw, [db])
    body = stockade_action(old, "DescribeInstanceExposure", InstanceId=d)
    got = sorted((e["IpProtocol"], e["PortRange"], tuple(e["SourceCidrIps"]["SourceCidrIp"]), tuple(e["SourceInstances"]["InstanceId"]))
                 for e in body["Exposures"]["Exposure"])
    web_ip = describe(old, [w])[0]["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
    assert got == [("TCP", "22/22", ("192.0.2.0/24",), ()), ("TCP", "5432/5432", (web_ip + "/32",), (w,))]
    # An all-protocol rule: every part answered is one a rule could name back (no `OTHER`
    # class, no port 0).
    a = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    a.set_SecurityGroupId(db)
    a.set_IpProtocol("all")
    a.set_PortRange("-1/-1")
    a.set_SourceCidrIp("198.51.100.0/24")
    old.call(a)
    parts = {(e["IpProtocol"], e["PortRange"]) for e in
             stockade_action(old, "DescribeInstanceExposure", InstanceId=d)["Exposures"]["Exposure"]}
    assert {("UDP", "1/65535"), ("ICMP", "-1/-1"), ("GRE", "-1/-1"), ("TCP", "1/21")} <= parts, parts
    assert all(proto != "OTHER" and not ports.startswith("0/") for proto, ports in parts), parts


def preview(old, change_action, **params):
    return stockade_action(old, "PreviewSecurityGroupChange", ChangeAction=change_action, **params)


def test_preview_security_group_change(old):
    vpc, vsw = vpc_with_vswitch(old, "10.62.0.0/16", "10.62.1.0/24")
    web, db = group(old, vpc, "prevweb"), group(old, vpc, "prevdb")
    [w] = run(old, vsw, [web])
    [d] = run(old, vsw, [db])
    [x] = run(old, vsw, [group(old, vpc, "prevother")])
    web_ip = describe(old, [w])[0]["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0]
    body = preview(old, "AuthorizeSecurityGroup", SecurityGroupId=db,
                   **{"Permissions.1.IpProtocol": "tcp", "Permissions.1.PortRange": "5432/5432", "Permissions.1.SourceGroupId": web})
    changes = [(c["InstanceId"], c["Direction"], c["Effect"], c["IpProtocol"], c["PortRange"], c["PeerCidrIps"]["PeerCidrIp"], c["PeerInstances"]["InstanceId"])
               for c in body["Changes"]["Change"]]
    assert changes == [(d, "Ingress", "Allowed", "TCP", "5432/5432", [web_ip + "/32"], [w])]
    a = DescribeSecurityGroupAttributeRequest.DescribeSecurityGroupAttributeRequest()
    a.set_SecurityGroupId(db)
    assert old.call(a)["Permissions"]["Permission"] == [], "a preview applies nothing"
    # Apply it, then preview a join: the joining instance gains exactly that port on d.
    auth = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
    auth.set_SecurityGroupId(db)
    auth.set_Permissions([{"IpProtocol": "tcp", "PortRange": "5432/5432", "SourceGroupId": web}])
    old.call(auth)
    body = preview(old, "JoinSecurityGroup", InstanceId=x, SecurityGroupId=web)
    gained = [c for c in body["Changes"]["Change"] if c["InstanceId"] == d]
    assert [(c["Effect"], c["PortRange"], c["PeerInstances"]["InstanceId"]) for c in gained] == [("Allowed", "5432/5432", [x])]
    # x joining web also opens web's intra-group access both ways.
    assert any(c["InstanceId"] == w and c["PeerInstances"]["InstanceId"] == [x] for c in body["Changes"]["Change"])
    # Validation is the command's own.
    try:
        preview(old, "LeaveSecurityGroup", InstanceId=d, SecurityGroupId=db)
    except Exception as e:
        assert "InstanceLastSecurityGroup" in str(e)
    else:
        raise AssertionError("leaving the last group must be refused")
    try:
        preview(old, "DeleteVpc", VpcId=vpc)
    except Exception as e:
        assert "InvalidParameter" in str(e)
    else:
        raise AssertionError("only security-group changes can be previewed")


def test_audit_reports_a_planned_leave_of_the_last_group(old):
    vpc, vsw = vpc_with_vswitch(old, "10.63.0.0/16", "10.63.1.0/24")
    g = group(old, vpc, "onlygroup")
    [i] = run(old, vsw, [g])
    findings = stockade_action(old, "DescribeSecurityGroupAudit", **{
        "SecurityGroupId.1": g, "PlannedLeave.1.InstanceId": i, "PlannedLeave.1.SecurityGroupId": g,
    })["Findings"]["Finding"]
    assert [(f["Check"], f["Severity"]) for f in findings if f["Check"] == "leave-removes-last-group"] == [
        ("leave-removes-last-group", "High")]


def test_vpc_and_vswitch_attributes_answer_what_terraform_waits_on(server, old):
    vpc, vsw = vpc_with_vswitch(old, "10.70.0.0/16", "10.70.1.0/24")
    r = DescribeVpcAttributeRequest.DescribeVpcAttributeRequest()
    r.set_VpcId(vpc)
    v = old.call(r)
    assert (v["VpcId"], v["CidrBlock"], v["Status"], v["VpcName"]) == (vpc, "10.70.0.0/16", "Available", "lab")
    assert v["VSwitchIds"]["VSwitchId"] == [vsw]
    s = DescribeVSwitchAttributesRequest.DescribeVSwitchAttributesRequest()
    s.set_VSwitchId(vsw)
    w = old.call(s)
    assert (w["VSwitchId"], w["VpcId"], w["CidrBlock"], w["Status"], w["ZoneId"]) == (
        vsw, vpc, "10.70.1.0/24", "Available", REGION + "-h")
    assert w["AvailableIpAddressCount"] > 0
    # Another account's VPC and vSwitch do not exist for it.
    creds = server.create_account("tenant-" + uuid.uuid4().hex[:8])
    theirs = OldSdk(server, creds["AccessKeyId"], creds["AccessKeySecret"])
    assert theirs.error(r) == ("InvalidVpcId.NotFound", 404)
    assert theirs.error(s) == ("InvalidVSwitchId.NotFound", 404)


def test_run_instances_tags_and_describe_instances_filters(old):
    vpc, vsw = vpc_with_vswitch(old, "10.70.0.0/16", "10.70.1.0/24")
    sg = group(old, vpc)
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("img-a")
    r.set_InstanceType("ecs.t1")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([sg])
    r.set_Amount(2)
    r.set_Tags([{"Key": "tier", "Value": "web"}])
    tagged = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    [plain] = run(old, vsw, [sg], ip="10.70.1.50")
    found = lambda **f: sorted(i["InstanceId"] for i in filtered(old, **f))
    assert found(Tags=[{"Key": "tier", "Value": "web"}]) == sorted(tagged)
    assert found(Tags=[{"Key": "tier"}], VpcId=vpc) == sorted(tagged)
    assert found(PrivateIpAddresses=json.dumps(["10.70.1.50"])) == [plain]
    assert found(VpcId=vpc, InstanceNetworkType="vpc") == sorted(tagged + [plain])
    assert found(VpcId=vpc, InstanceNetworkType="classic") == []
    assert found(VpcId=vpc, ZoneId=REGION + "-h") == sorted(tagged + [plain])
    assert found(VpcId=vpc, ImageId="img-a") == sorted(tagged)
    [one] = describe(old, [tagged[0]])
    assert one["Tags"]["Tag"] == [{"TagKey": "tier", "TagValue": "web"}]


def filtered(old, **filters):
    r = DescribeInstancesRequest.DescribeInstancesRequest()
    r.set_PageSize(100)
    for k, v in filters.items():
        getattr(r, "set_" + k)(v)
    return old.call(r)["Instances"]["Instance"]


def test_what_terraform_reads_of_instances_vpcs_and_vswitches(old, new_v3):
    from aliyunsdkecs.request.v20140526 import DescribeInstanceAttributeRequest, DescribeInstanceStatusRequest
    from aliyunsdkvpc.request.v20160428 import ModifyVSwitchAttributeRequest, ModifyVpcAttributeRequest
    from alibabacloud_ecs20140526 import models

    vpc, vsw = vpc_with_vswitch(old, "10.71.0.0/16", "10.71.1.0/24")
    sg = group(old, vpc)
    [i] = run(old, vsw, [sg])
    a = DescribeInstanceAttributeRequest.DescribeInstanceAttributeRequest()
    a.set_InstanceId(i)
    attr = old.call(a)
    assert (attr["InstanceId"], attr["Status"], attr["VpcAttributes"]["VSwitchId"]) == (i, "Running", vsw)
    assert attr["SecurityGroupIds"]["SecurityGroupId"] == [sg]
    body = new_v3.describe_instance_attribute(models.DescribeInstanceAttributeRequest(instance_id=i)).body
    assert body.instance_id == i and body.vpc_attributes.v_switch_id == vsw
    st = DescribeInstanceStatusRequest.DescribeInstanceStatusRequest()
    st.set_InstanceIds([i])
    statuses = old.call(st)["InstanceStatuses"]["InstanceStatus"]
    assert statuses == [{"InstanceId": i, "Status": "Running"}]
    a.set_InstanceId("i-nosuch")
    assert old.error(a) == ("InvalidInstanceId.NotFound", 404)
    mv = ModifyVpcAttributeRequest.ModifyVpcAttributeRequest()
    mv.set_VpcId(vpc)
    mv.set_VpcName("renamed-vpc")
    mv.set_Description("by terraform")
    old.call(mv)
    ms = ModifyVSwitchAttributeRequest.ModifyVSwitchAttributeRequest()
    ms.set_VSwitchId(vsw)
    ms.set_VSwitchName("renamed-vsw")
    old.call(ms)
    va = DescribeVpcAttributeRequest.DescribeVpcAttributeRequest()
    va.set_VpcId(vpc)
    got = old.call(va)
    assert (got["VpcName"], got["Description"]) == ("renamed-vpc", "by terraform")
    sa = DescribeVSwitchAttributesRequest.DescribeVSwitchAttributesRequest()
    sa.set_VSwitchId(vsw)
    assert old.call(sa)["VSwitchName"] == "renamed-vsw"


def test_instance_reads_terraform_makes_answer_truthfully(old, new_v3):
    from aliyunsdkecs.request.v20140526 import (
        DescribeDisksRequest,
        DescribeInstanceMaintenanceAttributesRequest,
        DescribeInstanceRamRoleRequest,
        DescribeUserDataRequest,
    )
    from alibabacloud_ecs20140526 import models

    vpc, vsw = vpc_with_vswitch(old, "10.72.0.0/16", "10.72.1.0/24")
    sg = group(old, vpc)
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("img")
    r.set_InstanceType("t")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([sg])
    r.set_UserData("IyEvYmluL3NoCmVjaG8gaGk=")
    [i] = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    u = DescribeUserDataRequest.DescribeUserDataRequest()
    u.set_InstanceId(i)
    assert old.call(u)["UserData"] == "IyEvYmluL3NoCmVjaG8gaGk="
    role = DescribeInstanceRamRoleRequest.DescribeInstanceRamRoleRequest()
    role.set_InstanceIds(json.dumps([i]))
    body = old.call(role)
    assert (body["TotalCount"], body["InstanceRamRoleSets"]["InstanceRamRoleSet"]) == (0, [])
    m = DescribeInstanceMaintenanceAttributesRequest.DescribeInstanceMaintenanceAttributesRequest()
    m.set_InstanceIds([i])
    [attr] = old.call(m)["MaintenanceAttributes"]["MaintenanceAttribute"]
    assert (attr["InstanceId"], attr["ActionOnMaintenance"]["Value"], attr["NotifyOnMaintenance"]) == (
        i, "AutoRecover", False), "ECS's defaults: Terraform reads an empty answer as a gone instance"
    d = DescribeDisksRequest.DescribeDisksRequest()
    d.set_InstanceId(i)
    [disk] = old.call(d)["Disks"]["Disk"]
    assert (disk["InstanceId"], disk["Type"], disk["Category"], disk["Size"]) == (i, "system", "cloud_essd", 40)
    d.set_DiskType("data")
    assert old.call(d)["Disks"]["Disk"] == [], "no data disks"
    r.set_SystemDiskCategory("cloud_auto")
    r.set_SystemDiskSize(100)
    [j] = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    disks = new_v3.describe_disks(models.DescribeDisksRequest(region_id=REGION, instance_id=j,
                                                               disk_type="system")).body
    assert disks.total_count == 1
    assert (disks.disks.disk[0].category, disks.disks.disk[0].size) == ("cloud_auto", 100), "as it was asked for"
    types = new_v3.describe_instance_types(models.DescribeInstanceTypesRequest(
        instance_types=["ecs.g7.large", "t"])).body.instance_types.instance_type
    assert [(t.instance_type_id, t.cpu_core_count, t.memory_size, t.eni_quantity) for t in types] == [
        ("ecs.g7.large", 2, 8.0, 3)], "a name the server cannot read answers nothing"
    d.set_InstanceId("i-nosuch")
    assert old.error(d) == ("InvalidInstanceId.NotFound", 404)


def test_each_vpc_has_a_system_route_table(old):
    from aliyunsdkvpc.request.v20160428 import DescribeRouteTableListRequest

    vpc, vsw = vpc_with_vswitch(old, "10.73.0.0/16", "10.73.1.0/24")
    r = DescribeRouteTableListRequest.DescribeRouteTableListRequest()
    r.set_VpcId(vpc)
    [t] = old.call(r)["RouterTableList"]["RouterTableListType"]
    assert (t["VpcId"], t["RouteTableType"], t["VSwitchIds"]["VSwitchId"]) == (vpc, "System", [vsw])
    assert t["RouteTableId"].startswith("vtb-") and t["RouterId"].startswith("vrt-")
    r.set_RouteTableId(t["RouteTableId"])
    assert old.call(r)["TotalCount"] == 1
    r.set_RouteTableId("vtb-other")
    assert old.call(r)["RouterTableList"]["RouterTableListType"] == []


def test_vpc_product_tags_vpcs_and_vswitches(old):
    from aliyunsdkvpc.request.v20160428 import ListTagResourcesRequest, TagResourcesRequest, UnTagResourcesRequest
    from aliyunsdkecs.request.v20140526 import TagResourcesRequest as EcsTagResourcesRequest

    vpc, vsw = vpc_with_vswitch(old, "10.74.0.0/16", "10.74.1.0/24")
    for kind, rid in (("VPC", vpc), ("VSWITCH", vsw)):
        t = TagResourcesRequest.TagResourcesRequest()
        t.set_ResourceType(kind)
        t.set_ResourceIds([rid])
        t.set_Tags([{"Key": "env", "Value": "lab"}])
        old.call(t)
        l = ListTagResourcesRequest.ListTagResourcesRequest()
        l.set_ResourceType(kind)
        l.set_ResourceIds([rid])
        [tag] = old.call(l)["TagResources"]["TagResource"]
        assert (tag["ResourceId"], tag["TagKey"], tag["TagValue"]) == (rid, "env", "lab")
        u = UnTagResourcesRequest.UnTagResourcesRequest()
        u.set_ResourceType(kind)
        u.set_ResourceIds([rid])
        u.set_TagKeys(["env"])
        # The reads Terraform's alicloud_vpc and alicloud_vswitch make carry the tags.
        if kind == "VPC":
            d = DescribeVpcAttributeRequest.DescribeVpcAttributeRequest()
            d.set_VpcId(vpc)
            listed = DescribeVpcsRequest.DescribeVpcsRequest()
            listed.set_VpcId(vpc)
            reads = [old.call(d), old.call(listed)["Vpcs"]["Vpc"][0]]
        else:
            d = DescribeVSwitchAttributesRequest.DescribeVSwitchAttributesRequest()
            d.set_VSwitchId(vsw)
            listed = DescribeVSwitchesRequest.DescribeVSwitchesRequest()
            listed.set_VSwitchId(vsw)
            reads = [old.call(d), old.call(listed)["VSwitches"]["VSwitch"][0]]
        for read in reads:
            assert read["Tags"]["Tag"] == [{"Key": "env", "Value": "lab"}], read
        old.call(u)
        assert old.call(l)["TagResources"]["TagResource"] == []
        assert old.call(d)["Tags"]["Tag"] == []
    # Each product tags its own resources.
    e = EcsTagResourcesRequest.TagResourcesRequest()
    e.set_ResourceType("VPC")
    e.set_ResourceIds([vpc])
    e.set_Tags([{"Key": "env", "Value": "lab"}])
    assert old.error(e)[0] == "InvalidResourceType.NotSupported"


def test_batch_instance_actions_are_all_or_none(old):
    from aliyunsdkecs.request.v20140526 import (
        DeleteInstancesRequest,
        RebootInstanceRequest,
        RebootInstancesRequest,
        StartInstancesRequest,
        StopInstancesRequest,
    )

    vpc, vsw = vpc_with_vswitch(old, "10.75.0.0/16", "10.75.1.0/24")
    sg = group(old, vpc)
    a, b = run(old, vsw, [sg], amount=2)
    stop = StopInstancesRequest.StopInstancesRequest()
    stop.set_InstanceIds([a, b])
    responses = old.call(stop)["InstanceResponses"]["InstanceResponse"]
    assert [(x["InstanceId"], x["PreviousStatus"], x["CurrentStatus"]) for x in responses] == [
        (a, "Running", "Stopped"), (b, "Running", "Stopped")]
    reboot = RebootInstanceRequest.RebootInstanceRequest()
    reboot.set_InstanceId(a)
    assert old.error(reboot) == ("IncorrectInstanceStatus", 403)
    start = StartInstancesRequest.StartInstancesRequest()
    start.set_InstanceIds([a])
    old.call(start)
    old.call(reboot)
    # b is stopped: starting a and b fails as a whole, a stays as it was.
    start.set_InstanceIds([b, a])
    assert old.error(start) == ("IncorrectInstanceStatus", 403)
    assert [i["Status"] for i in describe(old, [a, b])] == ["Running", "Stopped"]
    many = RebootInstancesRequest.RebootInstancesRequest()
    many.set_InstanceIds([a, b])
    assert old.error(many) == ("IncorrectInstanceStatus", 403)
    one = RebootInstancesRequest.RebootInstancesRequest()
    one.set_InstanceIds([a])
    rebooted = old.call(one)["InstanceResponses"]["InstanceResponse"]
    assert [(x["InstanceId"], x["CurrentStatus"]) for x in rebooted] == [(a, "Running")]
    delete = DeleteInstancesRequest.DeleteInstancesRequest()
    delete.set_InstanceIds([a, b])
    assert old.error(delete) == ("IncorrectInstanceStatus", 403), "a is running and Force is not set"
    delete.set_Force(True)
    old.call(delete)
    assert describe(old, [a, b]) == []


def test_host_names_sizes_and_the_fields_tools_read(old, new_v3):
    """`HostName` with `UniqueSuffix` over `Amount`, `HostNames.N`, `MinAmount`; the
    `DescribeInstances` fields Terraform's alicloud_instance reads (Cpu, Memory from the type
    name, HostName, InstanceChargeType, MetadataOptions), through both generations."""
    from alibabacloud_ecs20140526 import models

    vpc, vsw = vpc_with_vswitch(old, "10.61.0.0/16", "10.61.1.0/24")
    g = group(old, vpc, "hosts")
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("ubuntu_22_04_x64")
    r.set_InstanceType("ecs.c6.2xlarge")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupId(g)
    r.set_Amount(3)
    r.set_MinAmount(2)
    r.set_HostName("web")
    r.set_InstanceName("web-")
    r.set_UniqueSuffix(True)
    ids = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    got = describe(old, ids)
    assert sorted(i["HostName"] for i in got) == ["web001", "web002", "web003"]
    # ECS suffixes the instance names too.
    assert sorted(i["InstanceName"] for i in got) == ["web-001", "web-002", "web-003"]
    assert {(i["Cpu"], i["Memory"], i["InstanceChargeType"]) for i in got} == {(8, 16384, "PostPaid")}

    default = run(old, vsw, [g])[0]
    assert describe(old, [default])[0]["HostName"] == "iZ" + default[2:] + "Z"

    typed = new_v3.describe_instances(models.DescribeInstancesRequest(
        region_id=REGION, instance_ids=json.dumps(ids[:1]))).body.instances.instance[0]
    assert (typed.host_name, typed.cpu, typed.memory) == ("web001", 8, 16384)
    assert typed.metadata_options.http_tokens == "optional"

    bad = RunInstancesRequest.RunInstancesRequest()
    bad.set_ImageId("ubuntu_22_04_x64")
    bad.set_InstanceType("ecs.g7.large")
    bad.set_VSwitchId(vsw)
    bad.set_SecurityGroupId(g)
    bad.set_HostName("-web")
    assert old.error(bad) == ("InvalidHostName.Malformed", 400)
    bad.set_HostName("web")
    bad.set_Amount(2)
    bad.set_MinAmount(3)
    assert old.error(bad)[0] == "InvalidParameter"

    # ImageFamily stands for ImageId (images are opaque here); a launch template, which ECS
    # lets stand for both, does not exist here; neither image nor template is missing one.
    family = RunInstancesRequest.RunInstancesRequest()
    family.set_ImageFamily("acs:ubuntu_22_04_x64")
    family.set_InstanceType("ecs.g7.large")
    family.set_VSwitchId(vsw)
    family.set_SecurityGroupId(g)
    [f] = old.call(family)["InstanceIdSets"]["InstanceIdSet"]
    assert describe(old, [f])[0]["ImageId"] == "acs:ubuntu_22_04_x64"
    family.set_LaunchTemplateId("lt-nosuchtemplate")
    assert old.error(family) == ("InvalidLaunchTemplate.NotFound", 404)
    none = RunInstancesRequest.RunInstancesRequest()
    none.set_InstanceType("ecs.g7.large")
    none.set_VSwitchId(vsw)
    assert old.error(none) == ("MissingParameter", 400)


def test_resource_groups_are_stored_returned_and_filtered(old, new_v3):
    """`ResourceGroupId` at creation (groups and instances), in answers, as a filter, and
    `JoinResourceGroup` moving one."""
    from alibabacloud_ecs20140526 import models
    from aliyunsdkecs.request.v20140526 import DescribeSecurityGroupsRequest, JoinResourceGroupRequest

    vpc, vsw = vpc_with_vswitch(old, "10.62.0.0/16", "10.62.1.0/24")
    c = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    c.set_VpcId(vpc)
    c.set_ResourceGroupId("rg-acfmteamblue")
    sg = old.call(c)["SecurityGroupId"]
    d = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    d.set_ResourceGroupId("rg-acfmteamblue")
    listed = old.call(d)["SecurityGroups"]["SecurityGroup"]
    assert [(g["SecurityGroupId"], g["ResourceGroupId"]) for g in listed] == [(sg, "rg-acfmteamblue")]

    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("ubuntu_22_04_x64")
    r.set_InstanceType("ecs.g7.large")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupId(sg)
    r.set_ResourceGroupId("rg-acfmteamblue")
    [i] = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    j = JoinResourceGroupRequest.JoinResourceGroupRequest()
    j.set_ResourceType("instance")
    j.set_ResourceId(i)
    j.set_ResourceGroupId("rg-acfmteamred")
    old.call(j)
    red = new_v3.describe_instances(models.DescribeInstancesRequest(region_id=REGION, resource_group_id="rg-acfmteamred"))
    assert [x.instance_id for x in red.body.instances.instance] == [i]
    blue = new_v3.describe_instances(models.DescribeInstancesRequest(region_id=REGION, resource_group_id="rg-acfmteamblue"))
    assert blue.body.instances.instance == []

    j.set_ResourceGroupId("not-a-group")
    assert old.error(j) == ("InvalidResourceGroupId.Malformed", 400)
    j.set_ResourceGroupId("rg-acfmteamred")
    j.set_ResourceId("i-nosuchinstance")
    assert old.error(j)[0] == "InvalidInstanceId.NotFound"


def test_modify_instance_vpc_attribute(old):
    """A stopped instance moves to another vSwitch of its zone (new address, same groups) or
    into another VPC with that VPC's groups; the errors ECS gives for the rest."""
    from aliyunsdkecs.request.v20140526 import ModifyInstanceVpcAttributeRequest

    vpc, vsw1 = vpc_with_vswitch(old, "10.63.0.0/16", "10.63.1.0/24")
    s = CreateVSwitchRequest.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock("10.63.2.0/24")
    vsw2 = old.call(s)["VSwitchId"]
    s.set_ZoneId(REGION + "-i")
    s.set_CidrBlock("10.63.3.0/24")
    other_zone = old.call(s)["VSwitchId"]
    g = group(old, vpc, "moving")
    [i] = run(old, vsw1, [g], ip="10.63.1.5")
    [peer] = run(old, vsw2, [g], ip="10.63.2.9")

    m = ModifyInstanceVpcAttributeRequest.ModifyInstanceVpcAttributeRequest()
    m.set_InstanceId(i)
    m.set_VSwitchId(vsw2)
    assert old.error(m) == ("IncorrectInstanceStatus", 403), "only a stopped instance moves"
    stop = StopInstanceRequest.StopInstanceRequest()
    stop.set_InstanceId(i)
    old.call(stop)
    m.set_PrivateIpAddress("10.63.2.9")
    assert old.error(m)[0] == "InvalidPrivateIpAddress.Duplicated"
    m.set_PrivateIpAddress("10.63.1.7")
    assert old.error(m)[0] == "InvalidPrivateIpAddress.Mismatch"
    m.set_VSwitchId(other_zone)
    m.set_PrivateIpAddress("10.63.3.7")
    assert old.error(m) == ("InvalidVSwitchId.Mismatch", 400)
    m.set_VSwitchId(vsw2)
    m.set_PrivateIpAddress("10.63.2.20")
    old.call(m)
    [moved] = describe(old, [i])
    assert moved["VpcAttributes"]["VSwitchId"] == vsw2
    assert moved["VpcAttributes"]["PrivateIpAddress"]["IpAddress"] == ["10.63.2.20"]
    assert moved["SecurityGroupIds"]["SecurityGroupId"] == [g]
    assert moved["NetworkInterfaces"]["NetworkInterface"][0]["PrimaryIpAddress"] == "10.63.2.20"

    # Into another VPC: its groups must be given.
    vpc2, vsw3 = vpc_with_vswitch(old, "10.64.0.0/16", "10.64.1.0/24")
    g2 = group(old, vpc2, "landing")
    to_vpc = ModifyInstanceVpcAttributeRequest.ModifyInstanceVpcAttributeRequest()
    to_vpc.set_InstanceId(i)
    to_vpc.set_VSwitchId(vsw3)
    assert old.error(to_vpc)[0] == "InvalidVSwitchId.NotFound", "a vSwitch of another VPC needs VpcId"
    to_vpc.set_VpcId(vpc2)
    assert old.error(to_vpc)[0] == "MissingParameter"
    to_vpc.set_SecurityGroupIds([g2])
    old.call(to_vpc)
    [landed] = describe(old, [i])
    assert landed["VpcAttributes"]["VpcId"] == vpc2
    assert landed["SecurityGroupIds"]["SecurityGroupId"] == [g2]
    assert landed["VpcAttributes"]["PrivateIpAddress"]["IpAddress"][0].startswith("10.64.1.")


def test_instance_attributes_are_kept_answered_and_refused_when_not_honoured(old, new_v3):
    """What a request sets is answered back (billing, spot, deployment set, key pair); deletion
    protection holds; ModifyInstanceAttribute changes host name and user data; a parameter
    Stockade does not honour is refused with `UnsupportedParameter`, and nothing is made."""
    from aliyunsdkecs.request.v20140526 import DescribeUserDataRequest
    from alibabacloud_ecs20140526 import models

    vpc, vsw = vpc_with_vswitch(old, "10.75.0.0/16", "10.75.1.0/24")
    g = group(old, vpc, "attrs")
    r = RunInstancesRequest.RunInstancesRequest()
    r.set_ImageId("ubuntu_22_04_x64")
    r.set_InstanceType("ecs.g7.large")
    r.set_VSwitchId(vsw)
    r.set_SecurityGroupIdss([g])
    r.set_SpotStrategy("SpotWithPriceLimit")
    r.set_SpotPriceLimit(0.25)
    r.set_SpotInterruptionBehavior("Stop")
    r.set_InternetMaxBandwidthIn(50)
    r.set_DeploymentSetGroupNo(3)
    r.set_KeyPairName("lab-key")
    r.set_DeletionProtection(True)
    r.set_InstanceName("web-")
    [i] = old.call(r)["InstanceIdSets"]["InstanceIdSet"]
    [got] = describe(old, [i])
    assert (got["SpotStrategy"], got["SpotPriceLimit"], got["SpotInterruptionBehavior"]) == (
        "SpotWithPriceLimit", 0.25, "Stop")
    assert (got["InternetMaxBandwidthIn"], got["InternetMaxBandwidthOut"]) == (50, 0)
    assert (got["DeploymentSetGroupNo"], got["KeyPairName"], got["DeletionProtection"]) == (3, "lab-key", True)
    # The new SDK reads the same fields into its typed model.
    typed = new_v3.describe_instance_attribute(models.DescribeInstanceAttributeRequest(instance_id=i)).body
    assert (typed.internet_max_bandwidth_in, typed.enable_jumbo_frame) == (50, False)

    delete = DeleteInstanceRequest.DeleteInstanceRequest()
    delete.set_InstanceId(i)
    delete.set_Force(True)
    assert old.error(delete) == ("InvalidOperation.DeletionProtection", 403)

    m = ModifyInstanceAttributeRequest.ModifyInstanceAttributeRequest()
    m.set_InstanceId(i)
    m.set_DeletionProtection(False)
    m.set_HostName("web-01")
    m.set_UserData("IyEvYmluL3NoCmVjaG8gaGk=")
    old.call(m)
    [got] = describe(old, [i])
    assert (got["HostName"], got["DeletionProtection"]) == ("web-01", False)
    u = DescribeUserDataRequest.DescribeUserDataRequest()
    u.set_InstanceId(i)
    assert old.call(u)["UserData"] == "IyEvYmluL3NoCmVjaG8gaGk="

    # No outbound bandwidth, no public address (as ECS); choosing the address is refused.
    from aliyunsdkecs.request.v20140526 import AllocatePublicIpAddressRequest

    a = AllocatePublicIpAddressRequest.AllocatePublicIpAddressRequest()
    a.set_InstanceId(i)
    assert old.error(a) == ("InvalidParameter.Bandwidth", 400)
    a.set_IpAddress("198.19.7.7")
    assert old.error(a) == ("UnsupportedParameter", 400)

    # Not honoured: refused, by name, before anything is written.
    m = ModifyInstanceAttributeRequest.ModifyInstanceAttributeRequest()
    m.set_InstanceId(i)
    m.set_Password("Secret-123")
    m.set_InstanceName("renamed")
    assert old.error(m) == ("UnsupportedParameter", 400)
    [got] = describe(old, [i])
    assert got["InstanceName"] == "web-"
    bad = RunInstancesRequest.RunInstancesRequest()
    bad.set_ImageId("ubuntu_22_04_x64")
    bad.set_InstanceType("ecs.g7.large")
    bad.set_VSwitchId(vsw)
    bad.set_SecurityGroupIdss([g])
    bad.set_DataDisks([{"Size": 40, "Category": "cloud_essd"}])
    assert old.error(bad) == ("UnsupportedParameter", 400)
    old.call(delete)
    assert describe(old, [i]) == []


def test_the_ecs_versions_of_the_vpc_actions(old):
    """Older SDK code creates and reads VPCs and vSwitches through the ECS API's own copies
    of the VPC actions (`Version=2014-05-26`): they act on the same VPCs."""
    from aliyunsdkecs.request.v20140526 import (
        CreateVSwitchRequest as EcsCreateVSwitch,
        CreateVpcRequest as EcsCreateVpc,
        DeleteVSwitchRequest as EcsDeleteVSwitch,
        DeleteVpcRequest as EcsDeleteVpc,
        DescribeVSwitchesRequest as EcsDescribeVSwitches,
        DescribeVpcsRequest as EcsDescribeVpcs,
        ModifyVSwitchAttributeRequest as EcsModifyVSwitch,
        ModifyVpcAttributeRequest as EcsModifyVpc,
    )

    c = EcsCreateVpc.CreateVpcRequest()
    c.set_CidrBlock("10.77.0.0/16")
    c.set_VpcName("ecs-made")
    vpc = old.call(c)["VpcId"]
    s = EcsCreateVSwitch.CreateVSwitchRequest()
    s.set_VpcId(vpc)
    s.set_ZoneId(REGION + "-h")
    s.set_CidrBlock("10.77.1.0/24")
    vsw = old.call(s)["VSwitchId"]
    m = EcsModifyVpc.ModifyVpcAttributeRequest()
    m.set_VpcId(vpc)
    m.set_Description("renamed by the ECS API")
    old.call(m)
    mv = EcsModifyVSwitch.ModifyVSwitchAttributeRequest()
    mv.set_VSwitchId(vsw)
    mv.set_VSwitchName("ecs-vsw")
    old.call(mv)
    d = EcsDescribeVpcs.DescribeVpcsRequest()
    d.set_VpcId(vpc)
    [v] = old.call(d)["Vpcs"]["Vpc"]
    assert (v["VpcName"], v["Description"], v["VSwitchIds"]["VSwitchId"]) == ("ecs-made", "renamed by the ECS API", [vsw])
    # The VPC product sees the same VPC.
    r = DescribeVpcAttributeRequest.DescribeVpcAttributeRequest()
    r.set_VpcId(vpc)
    assert old.call(r)["Description"] == "renamed by the ECS API"
    dv = EcsDescribeVSwitches.DescribeVSwitchesRequest()
    dv.set_VpcId(vpc)
    assert [x["VSwitchName"] for x in old.call(dv)["VSwitches"]["VSwitch"]] == ["ecs-vsw"]
    gone = EcsDeleteVSwitch.DeleteVSwitchRequest()
    gone.set_VSwitchId(vsw)
    old.call(gone)
    gone = EcsDeleteVpc.DeleteVpcRequest()
    gone.set_VpcId(vpc)
    old.call(gone)
    assert old.call(d)["Vpcs"]["Vpc"] == []
