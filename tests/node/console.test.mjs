// The web console in a real browser: Debian's Chromium, headless, driven by playwright-core
// (never a downloaded browser). The seed's walkthrough end to end, then the security
// checks (inert tenant strings, forged cross-site posts, other accounts' ids, sign-out) and
// an accessibility check (axe-core) of every page. Screenshots of each page are written to
// STOCKADE_ARTIFACTS. Run by scripts/console-tests, which starts the server and sets the
// endpoint and two accounts' keys.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(import.meta.url);
const RPCClient = require('@alicloud/pop-core');
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const endpoint = process.env.STOCKADE_ENDPOINT;
const key = { id: process.env.ALIBABA_CLOUD_ACCESS_KEY_ID, secret: process.env.ALIBABA_CLOUD_ACCESS_KEY_SECRET };
const other = { id: process.env.STOCKADE_OTHER_ACCESS_KEY_ID, secret: process.env.STOCKADE_OTHER_ACCESS_KEY_SECRET };
const artifacts = process.env.STOCKADE_ARTIFACTS || 'target/console-artifacts';
const region = 'cn-hangzhou';
mkdirSync(artifacts, { recursive: true });

const client = (k, apiVersion = '2014-05-26') =>
  new RPCClient({ accessKeyId: k.id, accessKeySecret: k.secret, endpoint, apiVersion });
const ecs = client(key);
const vpcApi = client(key, '2016-04-28');
const theirs = client(other);

let browser;
let profile;
const fleet = {};

before(async () => {
  // The instances the walkthrough secures: made through the API, as a tenant's tooling would.
  const { VpcId } = await vpcApi.request('CreateVpc', { RegionId: region, CidrBlock: '10.70.0.0/16', VpcName: 'shop' });
  const { VSwitchId } = await vpcApi.request('CreateVSwitch', {
    RegionId: region, VpcId, ZoneId: `${region}-h`, CidrBlock: '10.70.1.0/24',
  });
  const { SecurityGroupId: base } = await ecs.request('CreateSecurityGroup', {
    RegionId: region, VpcId, SecurityGroupName: 'sg-base', Description: 'where new instances start',
  });
  for (const [name, ip] of [['web-1', '10.70.1.10'], ['redis-1', '10.70.1.20']]) {
    const made = await ecs.request('RunInstances', {
      RegionId: region, ImageId: 'ubuntu_22_04_x64', InstanceType: 'ecs.g7.large', VSwitchId,
      'SecurityGroupIds.1': base, InstanceName: name, PrivateIpAddress: ip,
    });
    fleet[name] = made.InstanceIdSets.InstanceIdSet[0];
  }
  Object.assign(fleet, { vpc: VpcId, vswitch: VSwitchId, base });
  const { SecurityGroupId } = await theirs.request('CreateSecurityGroup', {
    RegionId: region, SecurityGroupName: 'their-secret-project',
  });
  fleet.theirs = SecurityGroupId;

  // playwright-core gives every launch a fresh --user-data-dir of its own (and refuses one
  // in args); the profile directory below is where it is told to keep its temporary files.
  profile = mkdtempSync(join(tmpdir(), 'stockade-chromium-'));
  browser = await chromium.launch({
    artifactsDir: profile,
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run',
    ],
  });
});

after(async () => {
  await browser?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

/// A fresh browser context (its own cookies), watching for any dialog a script might open.
async function fresh() {
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  page.dialogs = [];
  page.on('dialog', async (d) => { page.dialogs.push(d.message()); await d.dismiss(); });
  page.cspErrors = [];
  page.on('console', (m) => { if (/Content Security Policy/i.test(m.text())) page.cspErrors.push(m.text()); });
  return { context, page };
}

async function signIn(page, k = key) {
  await page.goto(`${endpoint}/console`);
  await page.getByLabel('AccessKey ID').fill(k.id);
  await page.getByLabel('AccessKey secret').fill(k.secret);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL('**/console/groups');
}

async function shot(page, name) {
  await page.screenshot({ path: join(artifacts, `${name}.png`), fullPage: true });
}

/// axe-core over the page: no serious or critical violation.
async function accessible(page, name) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, { resultTypes: ['violations'] }));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  assert.deepEqual(serious.map((v) => `${v.id}: ${v.nodes.map((n) => n.target).join(' ')}`), [], `axe on ${name}`);
}

async function notice(page) {
  return (await page.locator('.notice').first().textContent()).trim();
}

/// Adds a rule through the form, previews it and applies it.
async function addRule(page, rule) {
  const form = page.locator('#rule-form form');
  await form.getByLabel('Direction').selectOption(rule.direction || 'ingress');
  await form.getByLabel('Policy', { exact: true }).selectOption(rule.policy || 'accept');
  await form.getByLabel(/^Priority/).fill(String(rule.priority || 1));
  await form.getByLabel('Protocol').selectOption(rule.protocol || 'TCP');
  await form.getByLabel(/^Port range/).fill(rule.ports);
  await form.getByLabel('Peer type').selectOption(rule.kind || 'cidr');
  await form.getByLabel(/^Peer \(/).fill(rule.peer);
  if (rule.description) await form.getByLabel('Description').fill(rule.description);
  await form.getByRole('button', { name: /^Preview/ }).click();
  await page.getByRole('heading', { name: 'Preview the change' }).waitFor();
  await page.getByRole('button', { name: 'Apply the change' }).click();
  await page.getByRole('heading', { name: /^Security group sg-/ }).waitFor();
  assert.match(await notice(page), /applied/);
}

async function createGroup(page, name, description) {
  await page.goto(`${endpoint}/console/groups`);
  const form = page.locator('form[action="/console/groups"][method="post"]');
  await form.getByLabel('Name').fill(name);
  await form.getByLabel('Description').fill(description);
  await form.getByLabel('VPC').selectOption(fleet.vpc);
  await form.getByRole('button', { name: 'Create' }).click();
  await page.getByRole('heading', { name: /^Security group sg-/ }).waitFor();
  return page.url().split('/').pop();
}

test("the seed's walkthrough in the browser", async () => {
  const { context, page } = await fresh();
  await shot(page, '00-before-sign-in');
  await signIn(page);
  await accessible(page, 'groups');

  const web = await createGroup(page, 'sg-web', 'web servers');
  await addRule(page, { ports: '80/80', peer: '0.0.0.0/0', description: 'http from anywhere' });
  await addRule(page, { ports: '22/22', peer: '0.0.0.0/0', description: 'ssh from anywhere (audit should flag this)' });
  const redis = await createGroup(page, 'sg-redis', 'redis cache');
  await addRule(page, { ports: '6379/6379', peer: '0.0.0.0/0', policy: 'drop', priority: 100, description: 'no redis for strangers' });
  await addRule(page, { ports: '6379/6379', peer: web, kind: 'group', description: 'redis from the web tier' });

  // Engine order: the priority-1 accept from sg-web is listed (and applied) before the
  // priority-100 drop, though it was created after it.
  const inbound = page.locator('table.rules[data-direction="ingress"] tbody tr');
  assert.equal(await inbound.count(), 2);
  assert.match(await inbound.nth(0).textContent(), new RegExp(`group ${web}`));
  assert.match(await inbound.nth(1).textContent(), /100.*Drop/);
  await accessible(page, 'group');
  await shot(page, '01-group-rules-in-engine-order');

  // Join: preview shows what would open, then applies.
  for (const [instance, group] of [['web-1', web], ['redis-1', redis]]) {
    await page.goto(`${endpoint}/console/instances`);
    const row = page.locator(`tr[id="${fleet[instance]}"]`);
    await row.getByLabel(`Group for ${fleet[instance]}`).selectOption(group);
    await row.getByRole('button', { name: 'Preview the join' }).click();
    await page.getByRole('heading', { name: 'Preview the change' }).waitFor();
    if (instance === 'web-1') {
      // (redis-1 already reaches web-1 through sg-base's intra-group policy: its join
      // flips nothing, and the preview says so.)
      assert.ok(await page.locator('table.flips tbody tr.allowed').count() > 0, 'joining sg-web opens flows');
      assert.match(await page.locator('table.flips').textContent(), /80\/80/);
      await shot(page, '02-preview-join');
      await accessible(page, 'preview');
    }
    await page.getByRole('button', { name: 'Apply the change' }).click();
    await page.waitForURL('**/console/instances');
    assert.match(await notice(page), /join applied/);
  }
  const groupsOfWeb = await page.locator(`tr[id="${fleet['web-1']}"] ol li`).allTextContents();
  assert.equal(groupsOfWeb.length, 2);
  assert.match(groupsOfWeb[0], new RegExp(fleet.base));
  assert.match(groupsOfWeb[1], new RegExp(web));
  await accessible(page, 'instances');
  await shot(page, '03-instances');

  // Check a flow: web-1 reaches redis-1 on 6379 through the group rule; a stranger does not.
  await page.goto(`${endpoint}/console/flow`);
  await page.getByLabel(/^Source \(/).fill(fleet['web-1']);
  await page.getByLabel(/^Destination \(/).fill(fleet['redis-1']);
  await page.getByLabel('Protocol').selectOption('tcp');
  await page.getByLabel(/^Destination port/).fill('6379');
  await page.getByRole('button', { name: 'Check' }).click();
  await page.getByRole('heading', { name: 'Verdict: Accept' }).waitFor();
  const ruleLink = page.locator('a.rule-link');
  assert.equal(await ruleLink.count(), 1, 'the ingress stage is decided by a rule');
  await accessible(page, 'flow');
  await shot(page, '04-flow-accept');
  await ruleLink.click();
  await page.waitForURL(new RegExp(`/console/groups/${redis}#sgr-`));
  const target = decodeURIComponent(new URL(page.url()).hash.slice(1));
  assert.match(await page.locator(`tr[id="${target}"]`).textContent(), new RegExp(`group ${web}`));

  await page.goto(`${endpoint}/console/flow?Source=198.51.100.7&Destination=${fleet['redis-1']}&IpProtocol=tcp&DestinationPort=6379`);
  await page.getByRole('heading', { name: 'Verdict: Drop' }).waitFor();
  assert.match(await page.locator('section.verdict').textContent(), /Drop/);

  // Audit: ssh open to the world is a finding, linked to its rule.
  await page.goto(`${endpoint}/console/audit`);
  const finding = page.locator('table.findings tbody tr', { hasText: '22' }).first();
  await finding.waitFor();
  assert.match(await finding.textContent(), new RegExp(web));
  await accessible(page, 'audit');
  await shot(page, '05-audit');

  // Exposure: web-1 is open to the internet on 80 and 22.
  await page.goto(`${endpoint}/console/exposure?InstanceId=${fleet['web-1']}`);
  const open = await page.locator('section table tbody').first().textContent();
  assert.match(open, /80\/80/);
  await accessible(page, 'exposure');
  await shot(page, '06-exposure');

  // The map: web-1's class reaches redis-1's on 6379 (through the sg-web rule), and the
  // picture zooms.
  await page.goto(`${endpoint}/console/map`);
  const classOf = async (instance) => (await page.locator('table.reach-classes tr', { hasText: instance }).getAttribute('id')).replace('class-', '');
  const [from, to] = [await classOf(fleet['web-1']), await classOf(fleet['redis-1'])];
  const pair = page.locator('table.reach-edges tbody tr').filter({ hasText: new RegExp(`^${from}${to}`) });
  assert.match(await pair.textContent(), /tcp:6379/);
  assert.equal(await page.locator(`svg#map line.edge[data-from="${from}"][data-to="${to}"]`).count(), 1);
  const viewBox = () => page.locator('svg#map').getAttribute('viewBox');
  const whole = await viewBox();
  await page.getByRole('button', { name: 'Zoom in' }).click();
  assert.notEqual(await viewBox(), whole, 'zoom moves the view');
  await page.getByRole('button', { name: 'Reset view' }).click();
  assert.equal(await viewBox(), whole);
  await page.locator(`svg#map a.node[data-class="${from}"]`).focus();
  assert.ok(await page.locator('svg#map .edge.lit').count() > 0, 'focusing a class lights its arrows');
  await accessible(page, 'map');
  await shot(page, '09-map');

  // Leaving the last group is explained before it is tried.
  await page.goto(`${endpoint}/console/groups/${fleet.base}`);
  const leave = page.locator(`tr:has-text("${fleet['web-1']}") button`, { hasText: 'Leave' });
  assert.equal(await leave.isDisabled(), false, 'web-1 has two groups');

  // Deleting a group that still has members: refused, with the ECS reason shown.
  await page.goto(`${endpoint}/console/groups/${web}`);
  assert.match(await page.locator('section', { hasText: 'still has' }).first().textContent(), /DependencyViolation/);
  await page.getByRole('button', { name: 'Delete this group' }).click();
  await page.getByRole('heading', { name: /^Security group sg-/ }).waitFor();
  assert.match(await notice(page), /DependencyViolation/);

  assert.deepEqual(page.dialogs, []);
  assert.deepEqual(page.cspErrors, []);
  await context.close();
});

test('prefix lists and network interfaces', async () => {
  const { context, page } = await fresh();
  await signIn(page);
  await page.goto(`${endpoint}/console/prefix-lists`);
  const create = page.locator('section', { hasText: 'Create a prefix list' });
  await create.getByLabel('Name').fill('office');
  await create.getByLabel('First block (optional)').fill('203.0.113.0/24');
  await create.getByRole('button', { name: 'Create' }).click();
  await page.waitForURL('**/console/prefix-lists');
  assert.match(await notice(page), /prefix list applied/);
  const list = page.locator('section.prefix-list', { hasText: 'office' });
  await list.getByLabel('Add block').fill('198.51.100.0/24');
  await list.getByRole('button', { name: 'Preview the entry' }).click();
  await page.getByRole('heading', { name: 'Preview the change' }).waitFor();
  await page.getByRole('button', { name: 'Apply the change' }).click();
  await page.waitForURL('**/console/prefix-lists');
  assert.match(await list.textContent(), /198\.51\.100\.0\/24/);
  await accessible(page, 'prefix lists');
  await shot(page, '10-prefix-lists');

  // Interfaces: web-1's primary interface lists its groups in the instance's order.
  await page.goto(`${endpoint}/console/instances`);
  const eni = page.locator('table.interfaces tbody tr', { hasText: fleet['web-1'] });
  const groups = await eni.locator('ol li').allTextContents();
  assert.equal(groups.length, 2);
  assert.match(groups[0], new RegExp(fleet.base));

  // A secondary interface attached through the console, previewed, then detached.
  const { NetworkInterfaceId: secondary } = await ecs.request('CreateNetworkInterface', {
    RegionId: region, VSwitchId: fleet.vswitch, 'SecurityGroupIds.1': fleet.base,
  });
  await page.goto(`${endpoint}/console/instances`);
  const row = () => page.locator(`table.interfaces tr[id="${secondary}"]`);
  await row().getByLabel(`Instance for ${secondary}`).selectOption(fleet['redis-1']);
  await row().getByRole('button', { name: 'Attach' }).click();
  await page.getByRole('heading', { name: 'Preview the change' }).waitFor();
  await page.getByRole('button', { name: 'Apply the change' }).click();
  await page.waitForURL('**/console/instances');
  assert.match(await notice(page), /attachment applied/);
  assert.match(await row().textContent(), /InUse/);
  await accessible(page, 'instances with a secondary interface');
  await shot(page, '11-secondary-interface');
  await row().getByRole('button', { name: `Detach from ${fleet['redis-1']}` }).click();
  await page.getByRole('heading', { name: 'Preview the change' }).waitFor();
  await page.getByRole('button', { name: 'Apply the change' }).click();
  await page.waitForURL('**/console/instances');
  assert.match(await row().textContent(), /Available/);
  await context.close();
});

test('tenant strings stay inert', async () => {
  const { context, page } = await fresh();
  await signIn(page);
  // Names are limited to letters, digits and `._-:` by the API; descriptions and tag
  // values carry anything.
  const xss = '<img src=x onerror=alert(1)>';
  const script = '<script>alert(2)</script>';
  const id = await createGroup(page, 'xss-probe', xss);
  assert.equal((await page.locator('dd.description').textContent()).trim(), xss);
  assert.equal(await page.locator('dd.description img').count(), 0);
  await page.getByLabel('Tag key').fill('owner');
  await page.getByLabel('Tag value').fill(script);
  await page.getByRole('button', { name: 'Add tag' }).click();
  await page.getByRole('heading', { name: /^Security group sg-/ }).waitFor();
  assert.match(await notice(page), /tag applied/);
  assert.equal((await page.locator('dd .tag').textContent()).trim(), `owner=${script}`);
  await page.goto(`${endpoint}/console/groups`);
  assert.equal(await page.locator('td.description img').count(), 0);
  assert.ok((await page.locator('td.description').allTextContents()).includes(xss));
  await shot(page, '07-inert-strings');
  assert.deepEqual(page.dialogs, [], 'no script ran');
  await ecs.request('DeleteSecurityGroup', { RegionId: region, SecurityGroupId: id });
  await context.close();
});

test('a cross-site form post is refused', async () => {
  const { context, page } = await fresh();
  await signIn(page);
  const { SecurityGroupId: victim } = await ecs.request('CreateSecurityGroup', { RegionId: region, SecurityGroupName: 'victim' });
  // A page of another origin (same host, other port: same site, so SameSite alone would
  // let the cookie through) that posts a deletion as soon as it loads.
  const evil = createServer((_, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<form id=f method=post action="${endpoint}/console/do">
      <input name=Action value=DeleteSecurityGroup><input name=SecurityGroupId value=${victim}>
      <input name=confirm value=1><input name=return value=/console/groups></form>
      <script>document.getElementById('f').submit()</script>`);
  });
  await new Promise((r) => evil.listen(0, '127.0.0.1', r));
  try {
    await page.goto(`http://127.0.0.1:${evil.address().port}/`);
    await page.waitForURL(`${endpoint}/console/do`);
    await page.getByRole('heading', { name: 'Request refused' }).waitFor();
    await shot(page, '08-forged-post-refused');
  } finally {
    evil.close();
  }
  const still = await ecs.request('DescribeSecurityGroups', { RegionId: region, SecurityGroupId: victim });
  assert.equal(still.TotalCount, 1, 'the group survived');
  await ecs.request('DeleteSecurityGroup', { RegionId: region, SecurityGroupId: victim });
  await context.close();
});

test("another account's ids give nothing", async () => {
  const { context, page } = await fresh();
  await signIn(page);
  const response = await page.goto(`${endpoint}/console/groups/${fleet.theirs}`);
  assert.equal(response.status(), 404);
  assert.doesNotMatch(await page.content(), /their-secret-project/);
  await page.goto(`${endpoint}/console/groups`);
  assert.doesNotMatch(await page.content(), new RegExp(fleet.theirs));
  await page.goto(`${endpoint}/console/flow?Source=${fleet['web-1']}&Destination=${fleet.theirs}&IpProtocol=tcp&DestinationPort=80`);
  assert.doesNotMatch(await page.content(), /their-secret-project/);
  await context.close();
});

test('signing out ends the session', async () => {
  const { context, page } = await fresh();
  await signIn(page);
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'stockade_console');
  assert.ok(session.httpOnly);
  assert.equal(session.sameSite, 'Strict');
  assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.waitForURL('**/console/signin');
  await accessible(page, 'signin');
  // The old token, replayed, is worth nothing.
  const replay = await browser.newContext();
  await replay.addCookies([{ ...session }]);
  const p = await replay.newPage();
  await p.goto(`${endpoint}/console/groups`);
  assert.match(p.url(), /\/console\/signin$/);
  await replay.close();
  await context.close();
});

test('keyboard: the skip link comes first and every control is reachable', async () => {
  const { context, page } = await fresh();
  await signIn(page);
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
  const seen = new Set();
  for (let i = 0; i < 40; i += 1) {
    await page.keyboard.press('Tab');
    seen.add(await page.evaluate(() => document.activeElement.getAttribute('name') || document.activeElement.textContent.trim()));
  }
  for (const name of ['Security groups', 'Check a flow', 'Sign out', 'VpcId', 'SecurityGroupName']) {
    assert.ok(seen.has(name), `${name} is reachable by keyboard (${[...seen].join(', ')})`);
  }
  await context.close();
});
