"""The seed document's join_sg / leave_sg snippets, run against a local `stockade serve`.

Only the client construction differs from the document: the endpoint is the local server.
Usage: ALIBABA_CLOUD_ACCESS_KEY_ID=... ALIBABA_CLOUD_ACCESS_KEY_SECRET=... python3 examples/seed_join_leave.py
(STOCKADE_ENDPOINT defaults to http://127.0.0.1:8080).
"""

import json
import logging
import os
from urllib.parse import urlparse

from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526.CreateSecurityGroupRequest import CreateSecurityGroupRequest
from aliyunsdkecs.request.v20140526.DescribeInstancesRequest import DescribeInstancesRequest
from aliyunsdkecs.request.v20140526.JoinSecurityGroupRequest import JoinSecurityGroupRequest
from aliyunsdkecs.request.v20140526.LeaveSecurityGroupRequest import LeaveSecurityGroupRequest
from aliyunsdkecs.request.v20140526.RunInstancesRequest import RunInstancesRequest
from aliyunsdkvpc.request.v20160428.CreateVpcRequest import CreateVpcRequest
from aliyunsdkvpc.request.v20160428.CreateVSwitchRequest import CreateVSwitchRequest

logging.basicConfig(level=logging.INFO)
endpoint = urlparse(os.environ.get("STOCKADE_ENDPOINT", "http://127.0.0.1:8080"))
clt = AcsClient(os.environ["ALIBABA_CLOUD_ACCESS_KEY_ID"], os.environ["ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                "cn-hangzhou", port=endpoint.port or 80)
for product in ("Ecs", "Vpc"):
    clt.add_endpoint("cn-hangzhou", product, endpoint.hostname)


# ---- from the seed document, unchanged ----
def join_sg(sg_id, instance_id):
    request = JoinSecurityGroupRequest()
    request.set_InstanceId(instance_id)
    request.set_SecurityGroupId(sg_id)
    response = _send_request(request)
    return response


def leave_sg(sg_id, instance_id):
    request = LeaveSecurityGroupRequest()
    request.set_InstanceId(instance_id)
    request.set_SecurityGroupId(sg_id)
    response = _send_request(request)
    return response


# send open api request
def _send_request(request):
    request.set_accept_format('json')
    try:
        response_str = clt.do_action(request)
        logging.info(response_str)
        response_detail = json.loads(response_str)
        return response_detail
    except Exception as e:
        logging.error(e)
# ---- end of the seed's code ----


if __name__ == "__main__":
    vpc = _send_request(CreateVpcRequest())["VpcId"]
    vsw = CreateVSwitchRequest()
    vsw.set_VpcId(vpc)
    vsw.set_ZoneId("cn-hangzhou-h")
    vsw.set_CidrBlock("172.16.1.0/24")
    vswitch = _send_request(vsw)["VSwitchId"]
    groups = []
    for name in ("web", "redis"):
        g = CreateSecurityGroupRequest()
        g.set_SecurityGroupName(name)
        g.set_VpcId(vpc)
        groups.append(_send_request(g)["SecurityGroupId"])
    web, redis = groups
    run = RunInstancesRequest()
    run.set_ImageId("ubuntu_22_04_x64")
    run.set_InstanceType("ecs.g7.large")
    run.set_VSwitchId(vswitch)
    run.set_SecurityGroupId(web)
    instance = _send_request(run)["InstanceIdSets"]["InstanceIdSet"][0]

    join_sg(redis, instance)
    leave_sg(web, instance)
    describe = DescribeInstancesRequest()
    describe.set_InstanceIds(json.dumps([instance]))
    groups_now = _send_request(describe)["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"]
    print(f"{instance} is now in {groups_now} (joined {redis}, left {web})")
