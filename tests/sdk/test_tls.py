"""`stockade serve --tls-cert/--tls-key`: both SDK generations over HTTPS (some Terraform
provider calls force HTTPS), trusting a certificate made for the test; a client that does
not trust it, and plain HTTP to the TLS port, get no answer."""

import json
import ssl
import urllib.error
import urllib.request

import pytest
from aliyunsdkcore.acs_exception.exceptions import ClientException
from aliyunsdkcore.client import AcsClient
from aliyunsdkecs.request.v20140526 import CreateSecurityGroupRequest, DescribeSecurityGroupsRequest
from alibabacloud_ecs20140526 import models as ecs_models
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
from alibabacloud_tea_util.models import RuntimeOptions

from conftest import REGION, TLS_AK as AK, TLS_SK as SK


def test_old_sdk_over_https(tls):
    endpoint, cert = tls
    client = AcsClient(AK, SK, REGION, verify=cert)
    r = CreateSecurityGroupRequest.CreateSecurityGroupRequest()
    r.set_endpoint(endpoint)
    r.set_protocol_type("https")
    r.set_SecurityGroupName("over-tls")
    sg = json.loads(client.do_action_with_exception(r))["SecurityGroupId"]
    d = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    d.set_endpoint(endpoint)
    d.set_protocol_type("https")
    groups = json.loads(client.do_action_with_exception(d))["SecurityGroups"]["SecurityGroup"]
    assert sg in [g["SecurityGroupId"] for g in groups]


def test_new_sdk_over_https(tls):
    endpoint, cert = tls
    client = EcsClient(Config(access_key_id=AK, access_key_secret=SK, region_id=REGION, endpoint=endpoint,
                              protocol="https"))
    runtime = RuntimeOptions(ca=cert)
    made = client.create_security_group_with_options(
        ecs_models.CreateSecurityGroupRequest(region_id=REGION, security_group_name="over-tls-v3"), runtime)
    got = client.describe_security_groups_with_options(
        ecs_models.DescribeSecurityGroupsRequest(region_id=REGION, security_group_id=made.body.security_group_id),
        runtime)
    assert got.body.security_groups.security_group[0].security_group_name == "over-tls-v3"


def test_an_untrusted_certificate_and_plain_http_get_nothing(tls):
    endpoint, _ = tls
    client = AcsClient(AK, SK, REGION)  # trusts only the system's authorities
    d = DescribeSecurityGroupsRequest.DescribeSecurityGroupsRequest()
    d.set_endpoint(endpoint)
    d.set_protocol_type("https")
    with pytest.raises(ClientException):
        client.do_action_with_exception(d)
    with pytest.raises(Exception) as e:
        urllib.request.urlopen(f"http://{endpoint}/healthz", timeout=5)
    assert not isinstance(e.value, urllib.error.HTTPError), "no HTTP answer on the TLS port"
    ctx = ssl.create_default_context(cafile=tls[1])
    assert urllib.request.urlopen(f"https://{endpoint}/healthz", context=ctx, timeout=5).status == 200
