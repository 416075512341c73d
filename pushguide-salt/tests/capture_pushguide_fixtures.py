"""Captures the real salt-api exchanges of the pushguide module into fixture files (114-121 in
pushguide-salt/tests/fixtures), in the format of the other samples.

Usage, with the salt lab up (scripts/salt-lab up):
    python3 pushguide-salt/tests/capture_pushguide_fixtures.py OUT_DIR pushguide-salt/module/pushguide.py

117a (a first sync) needs minions without the module: remove
<lab dir>/minions/*/cache/extmods/modules/pushguide.py first; a second run gives 117b's empty lists.
"""
import hashlib, json, os, sys, threading, time, urllib.request, shutil

env = {}
for line in open(os.path.join(os.environ.get("PUSHGUIDE_SALT_LAB_DIR", "/tmp/pg-salt"), "env")):
    if line.startswith("export "):
        k, v = line[7:].strip().split("=", 1)
        env[k] = v.strip('"')
URL = env["PUSHGUIDE_SALT_URL"]
OUT = sys.argv[1]
LAB = env["PUSHGUIDE_SALT_LAB_DIR"]

def req(method, path, body=None, token=None, timeout=120):
    headers = {"Accept": "application/json"}
    data = None
    if body is not None:
        headers["Content-Type"] = "application/json"
        data = json.dumps(body).encode()
    if token:
        headers["X-Auth-Token"] = token
    r = urllib.request.Request(URL + path, data=data, method=method, headers=headers)
    t = time.monotonic()
    with urllib.request.urlopen(r, timeout=timeout) as resp:
        raw = resp.read()
        status = resp.status
        rh = dict(resp.headers.items())
    el = time.monotonic() - t
    try:
        b = json.loads(raw)
    except ValueError:
        b = raw.decode()
    return {"request": {"method": method, "path": path, "headers": headers, "body": body},
            "response": {"status": status, "headers": rh, "body": b}, "elapsed_s": round(el, 6)}

def save(name, ex):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(ex, f, indent=2)
        f.write("\n")
    print("saved", name, ex["elapsed_s"])

login = req("POST", "/login", {"username": env["PUSHGUIDE_SALT_USER"], "password": env["PUSHGUIDE_SALT_PASSWORD"], "eauth": env["PUSHGUIDE_SALT_EAUTH"]})
tok = login["response"]["body"]["return"][0]["token"]

src = open(sys.argv[2]).read()
w = req("POST", "/", [{"client": "wheel", "fun": "file_roots.write", "data": src, "path": "_modules/pushguide.py", "saltenv": "base"}], tok)
# keep the fixture small: the module's text is replaced by a marker in the stored request
w["request"]["body"][0]["data"] = "<the text of pushguide-salt/module/pushguide.py>"
save("114-wheel-file-roots-write.json", w)
w2 = req("POST", "/", [{"client": "wheel", "fun": "file_roots.write", "data": "x", "path": "_modules/x.py", "saltenv": "nosuchenv"}], tok)
save("115-wheel-file-roots-write-unknown-env.json", w2)
w3 = req("POST", "/", [{"client": "wheel", "fun": "file_roots.write", "data": "x", "path": "../../etc/x.py", "saltenv": "base"}], tok)
save("116-wheel-file-roots-write-invalid-path.json", w3)
s = req("POST", "/", [{"client": "local", "tgt": "web-01,web-02", "tgt_type": "list", "fun": "saltutil.sync_modules"}], tok)
save("117a-local-saltutil-sync-modules.json", s)
v = req("POST", "/", [{"client": "local", "tgt": "web-01,web-02", "tgt_type": "list", "fun": "pushguide.version"}], tok)
save("118-local-pushguide-version.json", v)

def root(m):
    return f"{LAB}/minions/{m}/root/capture"
for m in ("web-01", "web-02"):
    shutil.rmtree(root(m), ignore_errors=True)
rel1 = root("web-01") + "/releases/1.0.0"
content = "hello pushguide\n"
ok_plan = [
    {"fun": "pushguide.free_space", "arg": [root("web-01"), 1000], "check": "succeeds"},
    {"fun": "file.makedirs", "arg": [rel1 + "/"]},
    {"fun": "file.write", "arg": [rel1 + "/app.txt", "hello pushguide"]},
    {"fun": "file.get_hash", "arg": [rel1 + "/app.txt"], "kwarg": {"form": "sha256"},
     "check": {"equals": hashlib.sha256(content.encode()).hexdigest().upper()}},
    {"fun": "file.symlink", "arg": [rel1, root("web-01") + "/current"], "kwarg": {"force": True}},
    {"fun": "file.readlink", "arg": [root("web-01") + "/current"], "check": {"equals": rel1}},
]
rel2 = root("web-02") + "/releases/1.0.0"
fail_plan = [
    {"fun": "file.makedirs", "arg": [rel2 + "/"], "unless": {"fun": "file.directory_exists", "arg": [rel2]}},
    {"fun": "cmd.run_all", "arg": ["echo starting >&2; exit 3"], "kwarg": {"python_shell": True}},
    {"fun": "file.touch", "arg": [rel2 + "/never"]},
]

events = []
ready = threading.Event()
def listen():
    """Keeps the first two `salt/job/<jid>/ret/<id>` records of the event stream."""
    r = urllib.request.Request(URL + "/events", headers={"Accept": "text/event-stream", "X-Auth-Token": tok})
    with urllib.request.urlopen(r, timeout=60) as resp:
        ready.set()
        record = b""
        while len(events) < 2:
            line = resp.readline()
            if not line:
                return
            record += line
            if line == b"\n":
                if b"/ret/" in record:
                    events.append(record.decode())
                record = b""


th = threading.Thread(target=listen, daemon=True)
th.start()
ready.wait(10)
time.sleep(0.5)
a = req("POST", "/", [{"client": "local_async", "tgt": "web-01,web-02", "tgt_type": "list", "fun": "pushguide.steps",
                       "kwarg": {"plans": [ok_plan, fail_plan], "hosts": {"web-01": 0, "web-02": 1}}}], tok)
save("119-local-async-pushguide-steps.json", a)
jid = a["response"]["body"]["return"][0]["jid"]
th.join(30)
for i in range(60):
    j = req("GET", "/jobs/" + jid, token=tok)
    if len(j["response"]["body"]["info"][0].get("Result") or {}) == 2:
        break
    time.sleep(0.5)
save("120-jobs-jid-pushguide-steps.json", j)
with open(os.path.join(OUT, "121-events-pushguide-steps-ret.txt"), "w") as f:
    f.write("retry: 400\n\n" + "".join(events))
print("events", len(events))
print(json.dumps(j["response"]["body"]["info"][0]["Result"], indent=1)[:4000])
