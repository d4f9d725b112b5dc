"""Durability: `kill -9` in the middle of a write burst loses no acknowledged change and
keeps no half-applied one. On PostgreSQL the killed process is one of two replicas."""

import signal
import threading
import time

from aliyunsdkecs.request.v20140526 import (
    AuthorizeSecurityGroupRequest,
    CreateSecurityGroupRequest,
    DescribeSecurityGroupAttributeRequest,
    DescribeSecurityGroupsRequest,
)

from conftest import OldSdk, Server


def test_kill_9_mid_burst_loses_no_acknowledged_change():
    server = Server()
    try:
        client = OldSdk(server, server.ak, server.sk)
        acknowledged, lock, stop = [], threading.Lock(), threading.Event()

        def writer(n):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
                    r.set_SecurityGroupName(f"crash{n}x{i}")
                    r.set_Tags([{"Key": "a", "Value": "1"}, {"Key": "b", "Value": "2"}])
                    sg = client.call(r)["SecurityGroupId"]
                    a = AuthorizeSecurityGroupRequest.AuthorizeSecurityGroupRequest()
                    a.set_SecurityGroupId(sg)
                    a.set_Permissions([{"IpProtocol": "tcp", "PortRange": f"{p}/{p}", "SourceCidrIp": "0.0.0.0/0"} for p in (1, 2, 3)])
                    with lock:
                        acknowledged.append((sg, False))
                    client.call(a)
                    with lock:
                        acknowledged.append((sg, True))
                except Exception:
                    return  # the server is gone

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        server.proc.send_signal(signal.SIGKILL)
        server.proc.wait()
        stop.set()
        for t in threads:
            t.join()
        assert len(acknowledged) > 20, "the burst did write"
        server.restart()
        groups = {}
        token = None
        while True:
            r = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
            r.set_MaxResults(100)
            if token:
                r.set_NextToken(token)
            body = client.call(r)
            for g in body["SecurityGroups"]["SecurityGroup"]:
                groups[g["SecurityGroupId"]] = g
            token = body["NextToken"]
            if not token:
                break
        for sg, with_rules in acknowledged:
            assert sg in groups, f"acknowledged group {sg} lost"
            if with_rules:
                d = DescribeSecurityGroupAttributeRequest.DescribeSecurityGroupAttributeRequest()
                d.set_SecurityGroupId(sg)
                assert len(client.call(d)["Permissions"]["Permission"]) == 3, f"acknowledged rules of {sg} lost"
        for sg, g in groups.items():
            assert len(g["Tags"]["Tag"]) == 2, f"half-created group {sg}"
            assert g["RuleCount"] in (0, 3), f"half-applied authorization on {sg}: {g['RuleCount']} rules"
    finally:
        server.stop()
