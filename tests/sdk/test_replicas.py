"""Limits and changes under concurrency. On the embedded store this races requests inside one
server; with STOCKADE_TEST_DATABASE_URL the requests alternate between two replicas on one
PostgreSQL database, and the agent feed of one replica must see changes made through the
other."""

import json
import threading
import time
import urllib.request

import pytest
from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupRequest,
    CreateSecurityGroupRequest,
    DescribeInstancesRequest,
    DescribeSecurityGroupAttributeRequest,
    JoinSecurityGroupRequest,
    RunInstancesRequest,
)

from conftest import AGENT_TOKEN, DATABASE_URL, OldSdk, signed_v1_url, raw


def group(client, vpc):
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_VpcId(vpc)
    return client.call(r)["SecurityGroupId"]


def race(n, work):
    """Runs work(i) for i in 0..n at once; returns (i, exception or None) per call."""
    results, lock = [], threading.Lock()
    start = threading.Barrier(n)

    def run(i):
        start.wait()
        try:
            work(i)
            outcome = None
        except Exception as e:  # an ECS refusal
            outcome = e
        with lock:
            results.append((i, outcome))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def vpc_and_vswitch(server):
    _, vpc = raw(signed_v1_url(server, {"Action": "CreateVpc", "Version": "2016-04-28", "CidrBlock": "10.77.0.0/16"})[0])
    _, vsw = raw(signed_v1_url(server, {"Action": "CreateVSwitch", "Version": "2016-04-28", "VpcId": vpc["VpcId"],
                                        "ZoneId": "cn-hangzhou-b", "CidrBlock": "10.77.1.0/24"})[0])
    return vpc["VpcId"], vsw["VSwitchId"]


def test_parallel_joins_never_exceed_five_groups(server):
    client = OldSdk(server, server.ak, server.sk)
    vpc, vsw = vpc_and_vswitch(server)
    first = group(client, vpc)
    run = RunInstancesRequest.RunInstancesRequest()
    run.set_ImageId("img")
    run.set_InstanceType("t")
    run.set_VSwitchId(vsw)
    run.set_SecurityGroupId(first)
    instance = client.call(run)["InstanceIdSets"]["InstanceIdSet"][0]
    groups = [group(client, vpc) for _ in range(20)]

    def join(i):
        r = JoinSecurityGroupRequest.JoinSecurityGroupRequest()
        r.set_InstanceId(instance)
        r.set_SecurityGroupId(groups[i])
        OldSdk(server, server.ak, server.sk).call(r)

    results = race(20, join)
    joined = [i for i, e in results if e is None]
    assert len(joined) == 4, results  # 1 + 4 = the five-group limit
    for _, e in results:
        assert e is None or "InstanceSecurityGroupLimitExceeded" in str(e), e
    d = DescribeInstancesRequest.DescribeInstancesRequest()
    d.set_InstanceIds(json.dumps([instance]))
    got = client.call(d)["Instances"]["Instance"][0]["SecurityGroupIds"]["SecurityGroupId"]
    assert sorted(got) == sorted([first] + [groups[i] for i in joined])


def test_parallel_authorizations_never_exceed_the_rule_limit_and_lose_nothing(server):
    client = OldSdk(server, server.ak, server.sk)
    vpc, _ = vpc_and_vswitch(server)
    sg = group(client, vpc)

    def authorize(i):
        r = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
        r.set_SecurityGroupId(sg)
        r.set_Permissions([{"IpProtocol": "tcp", "PortRange": f"{p}/{p}", "SourceCidrIp": "10.0.0.0/8"}
                           for p in range(1 + i * 8, 9 + i * 8)])
        OldSdk(server, server.ak, server.sk).call(r)

    results = race(30, authorize)  # 30 × 8 = 240 rules race for 200
    accepted = [i for i, e in results if e is None]
    assert len(accepted) == 25, results
    d = DescribeSecurityGroupAttributeRequest.DescribeSecurityGroupAttributeRequest()
    d.set_SecurityGroupId(sg)
    d.set_MaxResults(1000)
    ports = {p["PortRange"] for p in client.call(d)["Permissions"]["Permission"]}
    assert ports == {f"{p}/{p}" for i in accepted for p in range(1 + i * 8, 9 + i * 8)}


@pytest.mark.skipif(not DATABASE_URL, reason="one server: there is no other replica")
def test_the_feed_of_one_replica_sees_changes_made_through_the_other(server):
    a, b = server.replica_ports

    def feed(port, query):
        req = urllib.request.Request(f"http://127.0.0.1:{port}/agent/v1/policy?{query}",
                                     headers={"Authorization": f"Bearer {AGENT_TOKEN}"})
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read())

    revision = feed(a, "host=h1")["Revision"]
    result = {}

    def wait():
        result["feed"] = feed(a, f"host=h1&after={revision}&wait=20")

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.2)
    start = time.time()
    # A write through replica B only.
    url, _ = signed_v1_url(server, {"Action": "CreateSecurityGroup"})
    status, body = raw(url.replace(f":{server.port}/", f":{b}/"))
    assert status == 200, body
    waiter.join()
    assert result["feed"]["Revision"] > revision
    assert time.time() - start < 5, "replica A noticed replica B's commit by polling the log"
