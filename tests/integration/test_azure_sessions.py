"""Sessions on Azure Blob storage (az://), on the Azurite of ctest's fixture `azurite`: the user
flow end to end (new, session, run alone and under mpirun, stat, results, destroy), the local
mirror and its reuse, bad input, and that the key shows nowhere."""
import base64
import csv as csv_module
import email.utils
import hashlib
import hmac
import http.server
import json
import os
import re
import secrets
import socket
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
import unittest

import h5py

import mpmuxtest
from mpmuxtest import MPIEXEC, MPMUX

ACCOUNT = "devstoreaccount1"
# Azurite's published development key (its README); a test key, not a secret.
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
WRONG_KEY = base64.b64encode(b"not the key of devstoreaccount1, 64 bytes long to look real....").decode()


def azurite_endpoint():
    path = os.path.join(os.environ["MPMUX_BINARY_DIR"], "azurite", "endpoint")
    with open(path) as f:
        return f.read().strip()


def blob_request(method, path, query=None, body=b"", key=KEY, endpoint=None):
    """One SharedKey-signed request to Azurite (path: /CONTAINER[/BLOB]); returns (status, body)."""
    endpoint = endpoint or azurite_endpoint()
    url_path = urllib.parse.urlparse(endpoint).path + path
    query = query or {}
    headers = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": "2021-12-02"}
    if method == "PUT" and path.count("/") > 1:
        headers["x-ms-blob-type"] = "BlockBlob"
    length = str(len(body)) if body else ""
    # urllib sends a Content-Type with every body (also an empty one): one of ours, signed.
    content_type = "application/octet-stream" if method == "PUT" else ""
    to_sign = "\n".join([method, "", "", length, "", content_type, "", "", "", "", "", ""]) + "\n"
    to_sign += "".join(f"{k}:{v}\n" for k, v in sorted(headers.items()))
    to_sign += f"/{ACCOUNT}{url_path}" + "".join(f"\n{k}:{v}" for k, v in sorted(query.items()))
    mac = hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest()
    headers["Authorization"] = f"SharedKey {ACCOUNT}:{base64.b64encode(mac).decode()}"
    if content_type:
        headers["Content-Type"] = content_type
    url = endpoint + path
    if query:
        url += "?" + urllib.parse.urlencode(query)
    req = urllib.request.Request(url, data=body if method == "PUT" else None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def list_blobs(container):
    """Every blob of the container: {name: length}."""
    status, body = blob_request("GET", f"/{container}", {"restype": "container", "comp": "list"})
    assert status == 200, body
    text = body.decode()
    names = re.findall(r"<Name>([^<]*)</Name>", text)
    lengths = re.findall(r"<Content-Length>(\d+)</Content-Length>", text)
    return dict(zip(names, map(int, lengths)))


class SkewedClockServer:
    """Answers every request as Azure does to a client whose clock is far off."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            if length:
                self.rfile.read(length)
            body = (b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>'
                    b"Server failed to authenticate the request. Make sure the value of Authorization header "
                    b"is formed correctly including the signature.</Message><AuthenticationErrorDetail>Request "
                    b"date header too old: 'Fri, 04 Dec 2026 01:00:00 GMT'</AuthenticationErrorDetail></Error>")
            self.send_response(403)
            self.send_header("x-ms-error-code", "AuthenticationFailed")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_PUT = do_DELETE = do_HEAD = answer

        def log_message(self, *args):
            pass

    def __enter__(self):
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self.Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return f"http://127.0.0.1:{self.server.server_address[1]}/{ACCOUNT}"

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class AzureSessionTest(mpmuxtest.TempDirTest):
    def setUp(self):
        super().setUp()
        self.container = "it" + secrets.token_hex(10)
        status, body = blob_request("PUT", f"/{self.container}", {"restype": "container"})
        self.assertEqual(status, 201, body)
        self.cache = os.path.join(self.tmp, "cache")
        self.env = dict(mpmuxtest.ENV, AZURE_STORAGE_BLOB_ENDPOINT=azurite_endpoint(), AZURE_STORAGE_KEY=KEY,
                        MPMUX_CACHE=self.cache)
        self.env.pop("AZURE_STORAGE_CONNECTION_STRING", None)
        self.root = f"az://{ACCOUNT}/{self.container}/sweeps/ana"
        self.grid = self.write("grid.csv", "alpha\n" + "".join(f"{a}\n" for a in range(12)))
        self.printed = []  # every stdout and stderr, for the key grep

    def tearDown(self):
        blob_request("DELETE", f"/{self.container}", {"restype": "container"})
        super().tearDown()

    def az(self, *args, check=None, env=None, timeout=300):
        """mpmux ARGS with the Azurite environment (or `env`), from the test's folder."""
        p = subprocess.run([MPMUX, *args], capture_output=True, text=True, env=env or self.env, timeout=timeout,
                           cwd=self.tmp)
        self.printed += [p.stdout, p.stderr]
        if check is not None:
            self.assertEqual(p.returncode, check, f"mpmux {' '.join(args)}\nstdout: {p.stdout}\nstderr: {p.stderr}")
        return p

    def az_mpirun(self, np, *args):
        p = subprocess.run([MPIEXEC, "-n", str(np), "--oversubscribe", MPMUX, *args], capture_output=True,
                           text=True, env=self.env, timeout=600, cwd=self.tmp)
        self.printed += [p.stdout, p.stderr]
        return p

    def new_az_session(self):
        mux = self.az("new", self.root, "--from", self.grid, "--tag", "big", check=0).stdout.strip()
        mux_id = self.az("session", mux, check=0).stdout.strip()
        return mux, mux_id

    def download(self, blob):
        status, body = blob_request("GET", f"/{self.container}/{blob}")
        self.assertEqual(status, 200, blob)
        return body

    def test_the_user_flow_runs_alone_and_under_mpirun_with_results_next_to_the_journals(self):
        mux, mux_id = self.new_az_session()
        self.assertRegex(mux, rf"^{re.escape(self.root)}/\d{{8}}-\d{{6}}-big$")
        self.assertTrue(mux_id.startswith(mux + "#s="), mux_id)
        blobs = list_blobs(self.container)
        prefix = mux[len(f"az://{ACCOUNT}/{self.container}/"):]
        self.assertIn(f"{prefix}/elements.h5", blobs)
        self.assertIn(f"{prefix}/mux.json", blobs)
        session = mux_id.split("#s=")[1]
        self.assertIn(f"{prefix}/sessions/{session}/session.json", blobs)

        # Alone, with the elements from 6 on failing; then under mpirun, again only those, which the
        # second run knows of from the first run's journal, mirrored.
        p = self.az("run", mux_id, "--exec", "test {alpha} -lt 6")
        self.assertEqual(p.returncode, 1, p.stderr)
        mirror = os.path.join(self.cache, "az", ACCOUNT, self.container, prefix, "sessions", session, "journal")
        first_journals = {name: os.stat(os.path.join(mirror, name)).st_ino for name in os.listdir(mirror)}
        self.assertEqual(len(first_journals), 1, first_journals)
        p = self.az_mpirun(3, "run", mux_id, "--rerun-failed", "--exec", "echo again {alpha}")
        self.assertEqual(p.returncode, 0, p.stderr)

        st = json.loads(self.az("stat", mux_id, "--json", check=0).stdout)
        self.assertEqual((st["total"], st["done"], st["failed"]), (12, 12, 0))
        journals = [b for b in list_blobs(self.container) if b.startswith(f"{prefix}/sessions/{session}/journal/")]
        self.assertGreaterEqual(len(journals), 2, journals)
        self.assertTrue(all(b.endswith(".mjl") for b in journals), journals)
        # The mirror holds every journal as the blob has it, the first one grown in place, not replaced.
        for blob in journals:
            with open(os.path.join(mirror, os.path.basename(blob)), "rb") as f:
                self.assertEqual(f.read(), self.download(blob), blob)
        for name, inode in first_journals.items():
            self.assertEqual(os.stat(os.path.join(mirror, name)).st_ino, inode)

        results = os.path.join(self.tmp, "results.h5")
        with open(results, "wb") as f:
            f.write(self.download(f"{prefix}/sessions/{session}/results.h5"))
        with h5py.File(results, "r") as h5:
            rows = h5["results"][()]
        self.assertEqual([int(r["index"]) for r in rows], list(range(12)))
        self.assertEqual({r["status"].decode().rstrip("\0") for r in rows}, {"done"})
        attempts = [int(r["attempts"]) for r in rows]
        self.assertEqual(attempts, [1] * 6 + [2] * 6)

        csv = os.path.join(self.tmp, "r.csv")
        self.az("results", mux_id, "-o", csv, check=0)
        with open(csv, newline="") as f:
            rows = list(csv_module.DictReader(f))
        self.assertEqual([r["result"] for r in rows], [""] * 6 + [f"again {a}\n" for a in range(6, 12)])

        self.az("destroy", mux, check=0)
        self.assertEqual([b for b in list_blobs(self.container) if b.startswith(prefix + "/")], [])
        self.assertUsageError(self.az("stat", mux_id), mux, "does not exist")
        self.assertUsageError(self.az("destroy", mux), mux, "no such mux")

        # What a `new` that died before its marker leaves: no command opens it, destroy removes it.
        blob_request("PUT", f"/{self.container}/sweeps/ana/20000101-000000/elements.h5", body=b"set")
        self.assertUsageError(self.az("session", f"{self.root}/20000101-000000"), "does not exist")
        self.az("destroy", f"{self.root}/20000101-000000", check=0)
        self.assertEqual(list_blobs(self.container), {})

    def test_a_second_open_reuses_the_mirrored_set_and_a_damaged_set_is_refused_by_its_checksum(self):
        mux, mux_id = self.new_az_session()
        self.az("stat", mux_id, check=0)
        mirror = os.path.join(self.cache, "az", ACCOUNT, self.container, mux[len(f"az://{ACCOUNT}/{self.container}/"):])
        elements = os.path.join(mirror, "elements.h5")
        first = os.stat(elements)
        self.assertEqual(os.stat(self.cache).st_mode & 0o777, 0o700)
        self.assertEqual(os.stat(mirror).st_mode & 0o777, 0o700)
        self.az("stat", mux_id, check=0)
        again = os.stat(elements)
        self.assertEqual((first.st_ino, first.st_mtime_ns), (again.st_ino, again.st_mtime_ns))

        # Another set under the same name: the mirror's checksum no longer matches, so it is fetched,
        # and one that does not match the marker is an error naming the blob.
        prefix = mux[len(f"az://{ACCOUNT}/{self.container}/"):]
        status, _ = blob_request("PUT", f"/{self.container}/{prefix}/elements.h5", body=b"not an HDF5 file")
        self.assertEqual(status, 201)
        marker = json.loads(self.download(f"{prefix}/mux.json"))
        marker["elements_sha256"] = hashlib.sha256(b"something else").hexdigest()
        blob_request("PUT", f"/{self.container}/{prefix}/mux.json", body=json.dumps(marker).encode())
        p = self.az("stat", mux_id)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn(f"{mux}/elements.h5", p.stderr)
        self.assertIn("SHA-256", p.stderr)

    def test_bad_input_is_one_line_with_its_exit_code_and_changes_nothing_stored(self):
        mux, mux_id = self.new_az_session()
        before = list_blobs(self.container)
        wrong_key = dict(self.env, AZURE_STORAGE_KEY=WRONG_KEY)
        self.assertUsageError(self.az("session", mux, env=wrong_key), "the key is not the account")
        self.assertUsageError(self.az("new", self.root, "--range", "3", env=wrong_key), "the key is not the account")
        missing = f"az://{ACCOUNT}/nosuch{secrets.token_hex(4)}/x"
        self.assertUsageError(self.az("new", missing, "--range", "3"), "does not exist")
        self.assertUsageError(self.az("session", missing + "/mux"), "does not exist")
        for scheme in ("s3", "gs"):
            p = self.az("stat", f"{scheme}://bucket/mux#s=20261205T101500Z-7f3a")
            self.assertUsageError(p, f"'{scheme}'")
            p = self.az("new", f"{scheme}://bucket/sweeps", "--range", "3")
            self.assertUsageError(p, f"'{scheme}'")
        self.assertEqual(sorted(os.listdir(self.tmp)), ["cache", "grid.csv"])

        with SkewedClockServer() as skewed:
            p = self.az("stat", mux_id, env=dict(self.env, AZURE_STORAGE_BLOB_ENDPOINT=skewed))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("clock", p.stderr)

        # Nothing listens on a port just closed.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        p = self.az("session", mux, timeout=200,
                    env=dict(self.env, AZURE_STORAGE_BLOB_ENDPOINT=f"http://127.0.0.1:{port}/{ACCOUNT}"))
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)
        self.assertIn("cannot reach", p.stderr)
        self.assertEqual(list_blobs(self.container), before)

    def test_the_key_appears_in_nothing_printed_or_written(self):
        mux, mux_id = self.new_az_session()
        self.az("run", mux_id, "--exec", "echo {alpha}", check=0)
        self.az("stat", mux_id, check=0)
        self.az("stat", mux_id, "--json", check=0)
        exports = os.path.join(self.tmp, "exports")
        os.mkdir(exports)
        for fmt in ("csv", "jsonl", "h5"):
            self.az("results", mux_id, "--format", fmt, "-o", os.path.join(exports, "r." + fmt), check=0)
        wrong = dict(self.env, AZURE_STORAGE_KEY=WRONG_KEY)
        self.az("run", mux_id, "--exec", "echo {alpha}", env=wrong, check=2)
        self.az("new", self.root, "--range", "3", env=wrong, check=2)
        connection_string = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                             f"BlobEndpoint={azurite_endpoint()}")
        cs_env = dict(self.env, AZURE_STORAGE_CONNECTION_STRING=connection_string)
        cs_env.pop("AZURE_STORAGE_KEY")
        self.az("stat", mux_id, env=cs_env, check=0)

        secrets_ = [k.encode() for k in (KEY, WRONG_KEY)] + [base64.b64decode(k) for k in (KEY, WRONG_KEY)]
        texts = [t.encode() for t in self.printed]
        for top in (self.cache, exports):
            for dirpath, _, files in os.walk(top):
                for name in files:
                    with open(os.path.join(dirpath, name), "rb") as f:
                        texts.append(f.read())
        self.assertGreater(len(texts), 20)
        for secret in secrets_:
            for text in texts:
                self.assertNotIn(secret, text)
        self.assertNotIn(KEY, mux_id)


if __name__ == "__main__":
    unittest.main()
