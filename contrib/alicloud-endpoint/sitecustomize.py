"""Points the Alibaba Cloud Python core SDK (aliyun-python-sdk-core) at a Stockade endpoint,
for clients that build their own `AcsClient` and give no endpoint option: footmark and the
Ansible alicloud modules built on it.

Put this directory on `PYTHONPATH` and set `ALICLOUD_ENDPOINT_OVERRIDE=host:port` (and
`ALICLOUD_REGION`, `cn-hangzhou` by default): every ECS and VPC request of the process then
goes to that endpoint, over plain HTTP (the core SDK's default protocol). Python imports
`sitecustomize` at start-up, so the clients need no change."""

import os

_endpoint = os.environ.get("ALICLOUD_ENDPOINT_OVERRIDE")
if _endpoint:
    try:
        from aliyunsdkcore.profile import region_provider
    except ImportError:  # a Python without the core SDK: nothing to point
        region_provider = None
    if region_provider is not None:
        for _product in ("Ecs", "Vpc"):
            region_provider.modify_point(_product, os.environ.get("ALICLOUD_REGION", "cn-hangzhou"), _endpoint)
