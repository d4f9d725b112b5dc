"""The server's table of each action's SDK model parameters (which unread parameters it
refuses rather than ignores) is the installed SDKs' own: regenerated here and compared."""

import os

import request_parameters

TABLE = os.path.join(os.path.dirname(__file__), "../../crates/server/src/actions/request_parameters.rs")


def test_the_committed_parameter_table_is_the_installed_sdks():
    with open(TABLE) as f:
        committed = f.read()
    assert committed == request_parameters.render(), (
        "regenerate: target/sdk-venv/bin/python tests/sdk/request_parameters.py > " + TABLE)
