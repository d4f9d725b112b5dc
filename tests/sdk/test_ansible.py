"""Ansible's alicloud modules (ansible_alicloud, on footmark) run the seed's story against
`stockade serve` in a real `ansible-playbook` run: a VPC and vSwitch, a security group with
a rule, an instance in it, its facts, an interface, stop, deletion. Every module's answer is
checked field by field. The modules have no endpoint option; `contrib/alicloud-endpoint`
points the core SDK they use at Stockade (README, "Other clients")."""

import json
import os
import subprocess
import sys
import tempfile
import textwrap

from conftest import REGION

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))
VENV_BIN = os.path.dirname(sys.executable)

PLAYBOOK = textwrap.dedent("""
    - hosts: localhost
      gather_facts: false
      tasks:
        - ali_vpc: {cidr_block: 10.80.0.0/16, vpc_name: ans-vpc, description: by ansible}
          register: vpc
        - ali_vswitch:
            vpc_id: "{{ vpc.vpc.id }}"
            cidr_block: 10.80.1.0/24
            zone_id: %(region)s-h
            vswitch_name: ans-vsw
          register: vsw
        - ali_security_group:
            name: ans-web
            description: by ansible
            vpc_id: "{{ vpc.vpc.id }}"
            rules:
              - {ip_protocol: tcp, port_range: 22/22, source_cidr_ip: 192.0.2.0/24, priority: 1, policy: accept}
          register: sg
        - ali_instance:
            image_id: ubuntu_22_04_x64
            instance_type: ecs.g7.large
            security_groups: ["{{ sg.group.id }}"]
            vswitch_id: "{{ vsw.vswitch.id }}"
            instance_name: ans-node
            host_name: ans-host
            internet_charge_type: PayByTraffic
            tags: {app: web}
            count_tag: "{'app': 'web'}"
          register: made
        - set_fact:
            ids: "{{ made.instances | map(attribute='id') | list }}"
        - ali_instance_info:
            instance_ids: "{{ ids }}"
          register: info
        - ali_eni:
            vswitch_id: "{{ vsw.vswitch.id }}"
            security_groups: ["{{ sg.group.id }}"]
            name: ans-eni
            description: by ansible
          register: eni
        - ali_instance:
            instance_ids: "{{ ids }}"
            state: stopped
            # The module re-sends user data whenever it stops an instance (and fails without).
            user_data: "#!/bin/sh"
          register: stopped
        # (The module's own answer lists no instance: footmark empties the list it is given.)
        - ali_instance_info:
            instance_ids: "{{ ids }}"
          register: stopped
        - ali_instance:
            instance_ids: "{{ ids }}"
            state: absent
            force: true
          register: gone
        - copy:
            dest: "{{ results }}"
            content: "{{ [vpc, vsw, sg, made, info, eni, stopped, gone] | to_json }}"
""") % {"region": REGION}


def test_ansible_modules_run_the_story(server):
    site = os.path.join(os.path.dirname(sys.executable), "..", "lib",
                        "python%d.%d" % sys.version_info[:2], "site-packages")
    env = dict(
        os.environ,
        PATH=VENV_BIN + os.pathsep + os.environ.get("PATH", ""),
        PYTHONPATH=os.path.join(ROOT, "contrib", "alicloud-endpoint"),
        ALICLOUD_ENDPOINT_OVERRIDE=server.endpoint,
        ALICLOUD_ACCESS_KEY=server.ak,
        ALICLOUD_SECRET_KEY=server.sk,
        ALICLOUD_REGION=REGION,
        ANSIBLE_LIBRARY=os.path.join(os.path.abspath(site), "ansible", "modules", "cloud", "alicloud"),
        ANSIBLE_LOCALHOST_WARNING="false",
        ANSIBLE_INVENTORY_UNPARSED_WARNING="false",
    )
    with tempfile.TemporaryDirectory() as d:
        book = os.path.join(d, "story.yml")
        with open(book, "w") as f:
            f.write(PLAYBOOK)
        results = os.path.join(d, "results.json")
        run = subprocess.run(
            [os.path.join(VENV_BIN, "ansible-playbook"), "-e", "ansible_python_interpreter=" + sys.executable,
             "-e", "results=" + results, book],
            env=env, capture_output=True, text=True, timeout=600, cwd=d)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        with open(results) as f:
            by_step = json.load(f)
    vpc, vsw, sg, made, info, eni, stopped, gone = by_step

    assert (vpc["vpc"]["cidr_block"], vpc["vpc"]["vpc_name"], vpc["vpc"]["description"]) == (
        "10.80.0.0/16", "ans-vpc", "by ansible")
    assert (vsw["vswitch"]["cidr_block"], vsw["vswitch"]["vpc_id"], vsw["vswitch"]["zone_id"]) == (
        "10.80.1.0/24", vpc["vpc"]["id"], REGION + "-h")
    group = sg["group"]
    assert (group["group_name"], group["description"], group["vpc_id"]) == ("ans-web", "by ansible", vpc["vpc"]["id"])
    [rule] = group["permissions"]
    assert (rule["ip_protocol"], rule["port_range"], rule["source_cidr_ip"], rule["policy"], rule["priority"]) == (
        "TCP", "22/22", "192.0.2.0/24", "Accept", "1")

    [instance] = made["instances"]
    assert (instance["instance_name"], instance["host_name"], instance["status"], instance["vpc_id"],
            instance["vswitch_id"], instance["tags"]) == (
        "ans-node", "ans-host", "running", vpc["vpc"]["id"], vsw["vswitch"]["id"], {"app": "web"})
    assert instance["private_ip_address"].startswith("10.80.1.")
    assert (instance["internet_charge_type"], instance["internet_max_bandwidth_in"], instance["instance_charge_type"],
            instance["deletion_protection"]) == ("PayByTraffic", 200, "PostPaid", False)
    [disk] = instance["block_device_mappings"]
    assert (disk["device_name"], disk["status"], disk["volume_id"]) == ("/dev/xvda", "in_use", "d-" + instance["id"][2:])
    [described] = info["instances"]
    assert (described["id"], described["instance_type"], described["image_id"]) == (
        instance["id"], "ecs.g7.large", "ubuntu_22_04_x64")

    made_eni = eni["interface"]
    assert (made_eni["name"], made_eni["description"], made_eni["vswitch_id"], made_eni["state"],
            made_eni["security_groups"], made_eni["type"]) == (
        "ans-eni", "by ansible", vsw["vswitch"]["id"], "available", [group["id"]], "Secondary")
    [address] = made_eni["private_ip_addresses"]
    assert address["primary_address"] and address["private_ip_address"] == made_eni["private_ip_address"]

    assert [(i["id"], i["status"], i["user_data"]) for i in stopped["instances"]] == [
        (instance["id"], "stopped", "#!/bin/sh")]
    assert gone["changed"] and gone["ids"] == [instance["id"]] and gone["instances"] == []
