// Alibaba Cloud's two Node.js clients against a running `stockade serve`, endpoint only
// changed: @alicloud/pop-core (V1 RPC signature, parameters in a GET query or a POST form
// body) and @alicloud/ecs20140526 (ACS3-HMAC-SHA256, strict response models). Run by
// scripts/node-tests, which starts the server and sets STOCKADE_ENDPOINT and the key pair.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const RPCClient = require('@alicloud/pop-core');
const Ecs = require('@alicloud/ecs20140526');
const OpenApi = require('@alicloud/openapi-client');

const endpoint = process.env.STOCKADE_ENDPOINT;
const accessKeyId = process.env.ALIBABA_CLOUD_ACCESS_KEY_ID;
const accessKeySecret = process.env.ALIBABA_CLOUD_ACCESS_KEY_SECRET;
const region = 'cn-hangzhou';

const pop = new RPCClient({ accessKeyId, accessKeySecret, endpoint, apiVersion: '2014-05-26' });
const vpc = new RPCClient({ accessKeyId, accessKeySecret, endpoint, apiVersion: '2016-04-28' });

test('pop-core: groups, rules and errors by GET and by POST', async () => {
  const regions = await pop.request('DescribeRegions', {}, { method: 'GET' });
  assert.ok(regions.Regions.Region.some((r) => r.RegionId === region));
  const { SecurityGroupId: sg } = await pop.request('CreateSecurityGroup', {
    RegionId: region, SecurityGroupName: 'node-pop', Description: 'made by pop-core',
  }, { method: 'POST' });
  for (const [method, port] of [['GET', '22/22'], ['POST', '443/443']]) {
    await pop.request('AuthorizeSecurityGroup', {
      RegionId: region, SecurityGroupId: sg, IpProtocol: 'tcp', PortRange: port, SourceCidrIp: '10.0.0.0/8',
    }, { method });
  }
  const attr = await pop.request('DescribeSecurityGroupAttribute', { RegionId: region, SecurityGroupId: sg });
  assert.deepEqual(attr.Permissions.Permission.map((p) => p.PortRange).sort(), ['22/22', '443/443']);
  await assert.rejects(
    pop.request('DescribeSecurityGroupAttribute', { RegionId: region, SecurityGroupId: 'sg-nosuch' }),
    (e) => e.code === 'InvalidSecurityGroupId.NotFound' && typeof e.data.RequestId === 'string',
  );
  await assert.rejects(
    pop.request('AuthorizeSecurityGroup', {
      RegionId: region, SecurityGroupId: sg, IpProtocol: 'tcp', PortRange: '22', SourceCidrIp: '10.0.0.0/8',
    }),
    (e) => e.code === 'InvalidPortRange.Malformed',
  );
  const made = await vpc.request('CreateVpc', { RegionId: region, CidrBlock: '10.90.0.0/16' }, { method: 'POST' });
  assert.match(made.VpcId, /^vpc-/);
  await pop.request('DeleteSecurityGroup', { RegionId: region, SecurityGroupId: sg });
});

test('ecs20140526: typed requests and strict responses over ACS3 signatures', async () => {
  const config = new OpenApi.Config({ accessKeyId, accessKeySecret, regionId: region, protocol: 'http' });
  config.endpoint = endpoint.replace(/^https?:\/\//, '');
  const client = new Ecs.default(config);
  const created = await client.createSecurityGroup(new Ecs.CreateSecurityGroupRequest({
    regionId: region, securityGroupName: 'node-ecs', description: 'made by ecs20140526',
  }));
  const sg = created.body.securityGroupId;
  assert.match(sg, /^sg-/);
  await client.authorizeSecurityGroup(new Ecs.AuthorizeSecurityGroupRequest({
    regionId: region, securityGroupId: sg,
    permissions: [new Ecs.AuthorizeSecurityGroupRequestPermissions({
      ipProtocol: 'tcp', portRange: '80/80', sourceCidrIp: '0.0.0.0/0', priority: '1', policy: 'accept',
    })],
  }));
  const attr = await client.describeSecurityGroupAttribute(new Ecs.DescribeSecurityGroupAttributeRequest({
    regionId: region, securityGroupId: sg,
  }));
  const [rule] = attr.body.permissions.permission;
  assert.equal(rule.portRange, '80/80');
  assert.match(rule.securityGroupRuleId, /^sgr-/);
  const groups = await client.describeSecurityGroups(new Ecs.DescribeSecurityGroupsRequest({
    regionId: region, securityGroupIds: JSON.stringify([sg]),
  }));
  assert.equal(groups.body.securityGroups.securityGroup[0].securityGroupName, 'node-ecs');
  await assert.rejects(
    client.deleteSecurityGroup(new Ecs.DeleteSecurityGroupRequest({ regionId: region, securityGroupId: 'sg-nosuch' })),
    (e) => e.code === 'InvalidSecurityGroupId.NotFound',
  );
  await client.deleteSecurityGroup(new Ecs.DeleteSecurityGroupRequest({ regionId: region, securityGroupId: sg }));
});
