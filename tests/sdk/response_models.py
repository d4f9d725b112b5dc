"""Every answer carries every field of the official SDK's response model.

The expected fields are read from the installed SDKs, not typed here: each
`<Action>ResponseBody` class of `alibabacloud_ecs20140526.models` (and of
`alibabacloud_vpc20160428.models` for the VPC API) reads its fields in `from_map`, one
`m.get('Name')` per field and a nested model class per object or list of objects. A new
action, or a new SDK release with a new field, is checked without a line changed here.

`conftest.py` records every successful JSON answer the suite's SDK calls receive; at the end
of a run of the whole suite, every served action that has an SDK model must have been
answered at least once, and every answer must carry every field of its model at every
level. The served actions are read from the server's `actions!` table."""

import functools
import importlib
import inspect
import os
import re

ACTIONS_RS = os.path.join(os.path.dirname(__file__), "../../crates/server/src/actions/mod.rs")
MODELS = {"2014-05-26": "alibabacloud_ecs20140526.models", "2016-04-28": "alibabacloud_vpc20160428.models"}
PRODUCT_VERSION = {"Ecs": "2014-05-26", "Vpc": "2016-04-28"}

FIELD = re.compile(r"if m\.get\('([^']+)'\) is not None:")
NESTED = re.compile(r"main_models\.(\w+)\(\)")


@functools.lru_cache(maxsize=None)
def module(version):
    return importlib.import_module(MODELS[version])


@functools.lru_cache(maxsize=None)
def fields(version, cls_name):
    """{field: nested model class name or None} of one model class."""
    cls = getattr(module(version), cls_name)
    src = inspect.getsource(cls.from_map)
    out = {}
    # One block per field: from its `if m.get(...)` to the next.
    starts = [(m.start(), m.group(1)) for m in FIELD.finditer(src)]
    for i, (pos, name) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(src)
        nested = NESTED.search(src, pos, end)
        out[name] = nested.group(1) if nested else None
    return out


def has_model(version, action):
    return hasattr(module(version), f"{action}ResponseBody")


def missing(version, cls_name, value, path):
    """The model fields absent from `value` (an answer or part of one), as paths."""
    gaps = []
    if isinstance(value, list):
        for i, item in enumerate(value):
            gaps += missing(version, cls_name, item, f"{path}[]")
        return gaps
    if not isinstance(value, dict):
        return gaps
    for name, nested in fields(version, cls_name).items():
        if name not in value:
            gaps.append(f"{path}.{name}")
        elif nested:
            gaps += missing(version, nested, value[name], f"{path}.{name}")
    return gaps


def served_actions():
    """(wire name, version) of every action the server serves, from its `actions!` table."""
    text = open(ACTIONS_RS).read()
    table = text[text.index("actions! {"):]
    out, product = [], None
    for line in table.splitlines():
        head = re.match(r"\s{4}(\w+) \{$", line)
        if head:
            product = head.group(1)
            continue
        entry = re.match(r"\s{8}(\w+)(?: as \"(\w+)\")? =>", line)
        if entry and product:
            out.append((entry.group(2) or entry.group(1), PRODUCT_VERSION[product]))
        if line == "}":
            break
    return out


class Recorder:
    """What the answers of one suite run lacked: every answer is checked as it arrives, so
    the check sees every answer, not a sample."""

    def __init__(self):
        self.answered = set()
        self.gaps = set()

    def record(self, action, version, body):
        if version not in MODELS or not isinstance(body, dict):
            return
        self.answered.add((action, version))
        if has_model(version, action):
            for gap in missing(version, f"{action}ResponseBody", body, action):
                self.gaps.add(f"{version} {gap}: absent")

    def problems(self, whole_run):
        """What is wrong, one line each: answers missing model fields and, on a whole run,
        served actions with a model that the suite never saw answered."""
        out = sorted(self.gaps)
        if whole_run:
            for action, version in served_actions():
                if has_model(version, action) and (action, version) not in self.answered:
                    out.append(f"{version} {action}: never answered in the suite")
        return out
