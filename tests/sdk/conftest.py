"""Fixtures for the SDK compatibility suite: a real `stockade serve` on a free loopback port
with a temporary data directory, and clients of both official SDK generations."""

import base64
import datetime
import hashlib
import hmac
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import pytest
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.acs_exception.exceptions import ClientException, ServerException
from alibabacloud_ecs20140526.client import Client as EcsClient
from alibabacloud_tea_openapi.models import Config
import alibabacloud_tea_openapi.client as tea_client

import response_models

# Every successful JSON answer the SDKs receive, checked against the SDKs' response models
# when the run ends (response_models.py).
ANSWERS = response_models.Recorder()
_old_do = AcsClient._implementation_of_do_action
_new_call = tea_client.Client.call_api


def _recording_old(self, request, signer=None):
    status, headers, body, exception = _old_do(self, request, signer)
    if status == 200 and exception is None and request.get_accept_format().upper() == "JSON":
        try:
            ANSWERS.record(request.get_action_name(), request.get_version(), json.loads(body))
        except ValueError:
            pass
    return status, headers, body, exception


def _recording_new(self, params, request, runtime):
    answer = _new_call(self, params, request, runtime)
    if isinstance(answer, dict) and answer.get("statusCode") == 200:
        ANSWERS.record(params.action, params.version, answer.get("body"))
    return answer


AcsClient._implementation_of_do_action = _recording_old
tea_client.Client.call_api = _recording_new


def pytest_sessionfinish(session, exitstatus):
    """Fails the run if an answer lacks a field of its SDK model, or (on a whole run, every
    test collected and passed) a served action with a model was never answered."""
    whole = (exitstatus == 0 and not session.config.option.keyword and not session.config.option.markexpr
             and session.testscollected == len(session.items) and not session.config.args[1:]
             and os.path.abspath(session.config.args[0] if session.config.args else ".").rstrip("/")
             .endswith("tests/sdk"))
    problems = ANSWERS.problems(whole)
    if problems:
        print("\nanswers against the SDKs' response models:\n  " + "\n  ".join(problems))
        session.exitstatus = 1


BIN = os.environ.get("STOCKADE_BIN", os.path.join(os.path.dirname(__file__), "../../target/debug/stockade"))
REGION = "cn-hangzhou"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# With STOCKADE_TEST_DATABASE_URL (a PostgreSQL server whose role may create databases),
# every Server is two `stockade serve` replicas on a fresh database of that server, behind a
# round-robin TCP proxy on the endpoint: consecutive connections (the SDKs open one per call)
# alternate between the replicas.
DATABASE_URL = os.environ.get("STOCKADE_TEST_DATABASE_URL")
AGENT_TOKEN = "sdk-suite-agent-token"


def fresh_database():
    """A new empty database on the test PostgreSQL server; returns its URL."""
    parsed = urllib.parse.urlparse(DATABASE_URL)
    name = "sdk_" + uuid.uuid4().hex[:12]
    subprocess.run(["psql", "-h", parsed.hostname, "-p", str(parsed.port), "-U", parsed.username,
                    "-d", parsed.path.lstrip("/"), "-qc", f"CREATE DATABASE {name}"], check=True)
    return parsed._replace(path="/" + name).geturl()


class Proxy:
    """Forwards each HTTP request to the next replica in turn. The SDKs keep connections
    alive, so the proxy answers every request with `Connection: close`: the next call opens
    a new connection and goes to the other replica. A replica that refuses connections (it
    was killed) is skipped."""

    def __init__(self, port, backends):
        self.backends, self.next, self.lock = backends, 0, threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(64)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(client,), daemon=True).start()

    @staticmethod
    def read_request(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(body) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            body += chunk
        return head, body

    @staticmethod
    def closing(head):
        lines = [l for l in head.split(b"\r\n") if not l.lower().startswith(b"connection:")]
        return b"\r\n".join(lines + [b"Connection: close"])

    def serve(self, client):
        try:
            request = self.read_request(client)
            if request is None:
                return
            head, body = request
            for _ in range(len(self.backends)):
                with self.lock:
                    port = self.backends[self.next % len(self.backends)]
                    self.next += 1
                try:
                    upstream = socket.create_connection(("127.0.0.1", port))
                    break
                except OSError:
                    continue
            else:
                return
            with upstream:
                upstream.sendall(self.closing(head) + b"\r\n\r\n" + body)
                response = b""
                while True:
                    chunk = upstream.recv(65536)
                    if not chunk:
                        break
                    response += chunk
            rhead, _, rbody = response.partition(b"\r\n\r\n")
            client.sendall(self.closing(rhead) + b"\r\n\r\n" + rbody)
        except OSError:
            pass
        finally:
            client.close()


class Server:
    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="stockade-sdk-")
        self.port = free_port()
        self.endpoint = f"127.0.0.1:{self.port}"
        self.ak = "LTAItestbootstrapkey01"
        self.sk = "bootstrapsecretbootstrapsecret"
        if DATABASE_URL:
            # Replicas and `stockade account` share one master key file.
            self.store = ["--database-url", fresh_database(), "--key-file", os.path.join(self.dir, "master.key")]
            self.replica_ports = [free_port(), free_port()]
            self.procs = [self.launch(p) for p in self.replica_ports]
            self.proxy = Proxy(self.port, self.replica_ports)
        else:
            self.store = ["--data-dir", self.dir]
            self.replica_ports = [self.port]
            self.procs = [self.launch(self.port)]

    @property
    def proc(self):
        """The first replica (the only one on the embedded store)."""
        return self.procs[0]

    @proc.setter
    def proc(self, p):
        self.procs[0] = p

    def launch(self, port):
        env = dict(os.environ, STOCKADE_BOOTSTRAP_ACCESS_KEY_ID=self.ak, STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET=self.sk,
                   STOCKADE_AGENT_TOKEN=AGENT_TOKEN)
        proc = subprocess.Popen(
            [BIN, "serve", "--listen", f"127.0.0.1:{port}"] + self.store,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
        deadline = time.time() + 30
        for line in proc.stdout:
            if line.startswith("listening on"):
                return proc
            if time.time() > deadline:
                raise RuntimeError("stockade serve did not start")
        raise RuntimeError("stockade serve exited: %s" % proc.wait())

    def restart(self):
        """Starts the first replica again (after it was killed)."""
        self.proc = self.launch(self.replica_ports[0])

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()

    def create_account(self, name):
        out = subprocess.run([BIN, "account", "create", "--name", name] + self.store,
                             check=True, capture_output=True, text=True).stdout
        return json.loads(out)


@pytest.fixture(scope="session")
def server():
    s = Server()
    yield s
    s.stop()


class OldSdk:
    """aliyun-python-sdk-core + aliyun-python-sdk-ecs: RPC signature (HMAC-SHA1)."""

    def __init__(self, server, ak, sk, fmt="json"):
        self.client = AcsClient(ak, sk, REGION)
        self.endpoint = server.endpoint
        self.fmt = fmt

    def prepare(self, request):
        request.set_endpoint(self.endpoint)
        request.set_protocol_type("http")
        request.set_accept_format(self.fmt)
        return request

    def call(self, request):
        if self.fmt != "json":
            # do_action_with_exception forces JSON; the older do_action (the seed document's
            # `clt.do_action(request)`) keeps the requested format.
            return self.client.do_action(self.prepare(request)).decode()
        return json.loads(self.client.do_action_with_exception(self.prepare(request)))

    def error(self, request):
        """The (code, HTTP status) an erroneous request fails with."""
        try:
            self.client.do_action_with_exception(self.prepare(request))
        except ServerException as e:
            return e.get_error_code(), e.get_http_status()
        except ClientException as e:
            return e.get_error_code(), None
        raise AssertionError("the request succeeded")


def stockade_action(old, action, **params):
    """Calls one of Stockade's own actions (DescribeFlowVerdict, ...) through the old SDK's
    CommonRequest, as a user of that SDK would; returns the parsed body."""
    from aliyunsdkcore.request import CommonRequest

    r = CommonRequest(domain=old.endpoint, version="2014-05-26", action_name=action)
    r.set_protocol_type("http")
    r.add_query_param("RegionId", REGION)
    for k, v in params.items():
        r.add_query_param(k, str(v))
    return json.loads(old.client.do_action_with_exception(r))


@pytest.fixture(scope="session")
def old(server):
    return OldSdk(server, server.ak, server.sk)


def new_client(server, ak, sk, algorithm=None):
    cfg = Config(access_key_id=ak, access_key_secret=sk, region_id=REGION, endpoint=server.endpoint, protocol="http")
    if algorithm:
        cfg.signature_algorithm = algorithm
    return EcsClient(cfg)


@pytest.fixture(scope="session")
def new_v3(server):
    """alibabacloud-ecs20140526 with its default ACS3-HMAC-SHA256 signature."""
    return new_client(server, server.ak, server.sk)


@pytest.fixture(scope="session")
def new_v2(server):
    """alibabacloud-ecs20140526 forced to the RPC (HMAC-SHA1) signature."""
    return new_client(server, server.ak, server.sk, "v2")


def percent(s):
    return urllib.parse.quote(s, safe="~")


def signed_v1_url(server, params, secret=None, method="GET", timestamp=None, nonce=None):
    """A V1-signed URL built independently of the SDKs (Alibaba's documented algorithm)."""
    p = {
        "AccessKeyId": server.ak, "Format": "JSON", "SignatureMethod": "HMAC-SHA1", "SignatureVersion": "1.0",
        "SignatureNonce": nonce or uuid.uuid4().hex, "Version": "2014-05-26", "RegionId": REGION,
        "Timestamp": timestamp or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    p.update(params)
    canonical = "&".join(f"{percent(k)}={percent(v)}" for k, v in sorted(p.items()))
    sts = f"{method}&%2F&{percent(canonical)}"
    key = ((secret or server.sk) + "&").encode()
    p["Signature"] = base64.b64encode(hmac.new(key, sts.encode(), hashlib.sha1).digest()).decode()
    return f"http://{server.endpoint}/?" + urllib.parse.urlencode(p), sts


def raw(url, method="GET", body=None, headers=None):
    """(status, parsed JSON or text) of a raw HTTP request."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


TLS_AK, TLS_SK = "LTAItlstestkey", "tlstestsecrettlstestsecret"


@pytest.fixture(scope="session")
def tls():
    """A `stockade serve --tls-cert/--tls-key` of its own (embedded store), with a
    certificate made for it: `(endpoint, certificate file)`."""
    d = tempfile.mkdtemp(prefix="stockade-tls-")
    cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-days", "2"],
        check=True, capture_output=True)
    port = free_port()
    env = dict(os.environ, STOCKADE_BOOTSTRAP_ACCESS_KEY_ID=TLS_AK, STOCKADE_BOOTSTRAP_ACCESS_KEY_SECRET=TLS_SK)
    proc = subprocess.Popen(
        [BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", os.path.join(d, "data"),
         "--tls-cert", cert, "--tls-key", key],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("listening on"):
                break
        else:
            raise RuntimeError("stockade serve exited: %s" % proc.wait())
        yield f"127.0.0.1:{port}", cert
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(d, ignore_errors=True)
