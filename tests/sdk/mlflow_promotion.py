"""MLflow promotion end to end (scripts/check-mlflow.sh starts the servers): the real MLflow
client registers model-1 with versions 1 and 2, subscribes the agent's /mlflow/webhook with a
secret, checks the signed test delivery is accepted, moves champion to 2, and waits for the
promote commit on origin's main, the first write on the sandbox and version 2 answering the
scoring URI. Prints the latencies. Contract: ../shared/reference/mlflow/CONTRACT.md."""
import json, os, subprocess, sys, time, urllib.parse, urllib.request

from mlflow import MlflowClient

AGENT = os.environ["AGENT"]
ORIGIN = os.environ["ORIGIN"]
client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
NAME = "model-1"


def fail(message):
    print(f"mlflow_promotion: {message}", file=sys.stderr)
    sys.exit(1)


def wait(what, check, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    fail(f"timed out after {timeout:.0f} s waiting for {what}")


def main_head():
    out = subprocess.run(["git", "--git-dir", ORIGIN, "log", "-1", "--format=%H %s", "main"],
                         check=True, capture_output=True, text=True).stdout.strip()
    return out.split(" ", 1)


def agent_json(path):
    with urllib.request.urlopen(AGENT + path, timeout=5) as r:
        return json.load(r)


# Registry: versions are non-local sources (the server refuses local paths outside runs); OSS
# MLflow marks them READY at once [MLFLOW A3].
client.create_registered_model(NAME)
for i in (1, 2):
    v = client.create_model_version(NAME, source=f"s3://flightdeck-ci/{NAME}/{i}")
    if v.status != "READY":
        fail(f"version {v.version} is {v.status}")
client.set_registered_model_alias(NAME, "champion", "1")  # what the deployment declares

hook = client.create_webhook(name="flightdeck-agent", url=f"{AGENT}/mlflow/webhook",
                             events=["model_version_alias.created"], secret=os.environ["WEBHOOK_SECRET"])
# [MLFLOW B12]: the example payload, signed like a real delivery; the agent verifies and queues
# it (and then refuses it: no environment maps example_model).
result = client.test_webhook(hook.webhook_id)
if not result.success or result.response_status != 202:
    fail(f"the agent refused MLflow's signed test delivery: {result}")
print(f"test delivery: HTTP {result.response_status} {result.response_body}")

before, _ = main_head()
sandbox = os.environ["FLIGHTDECK_ARM_ENDPOINT"].rstrip("/")
set_at = time.time()
client.set_registered_model_alias(NAME, "champion", "2")


def promoted():
    head, subject = main_head()
    return head != before and (head, subject)


head, subject = wait("the promote commit on origin main", promoted)
committed_at = time.time()
print(f"commit {head[:12]}: {subject}")
if not subject.startswith("promote sandbox/my-endpoint: model-1 1 → 2"):
    fail(f"unexpected commit subject: {subject}")


def first_write():
    with urllib.request.urlopen(sandbox + "/_sandbox/log", timeout=5) as r:
        entries = json.load(r)
    for e in entries:
        when = time.mktime(time.strptime(e["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
        when += float("0." + e["time"][20:26]) if len(e["time"]) > 20 else 0.0
        if e["method"] in ("PUT", "PATCH", "POST") and when >= set_at and "/onlineEndpoints/" in e["path"] \
                and not e["path"].endswith(("/listKeys", "/score")):
            return (when, e["method"], e["path"])
    return None


written_at, method, path = wait("the rollout's first write on the sandbox", first_write)
print(f"first sandbox write: {method} {path}")

# Scoring through the sandbox's scoring URI with the endpoint key (as scripts/demo.sh does).
authority = os.environ["AZURE_AUTHORITY_HOST"].rstrip("/")
form = urllib.parse.urlencode({"grant_type": "client_credentials", "client_id": os.environ["AZURE_CLIENT_ID"],
                               "client_secret": os.environ["AZURE_CLIENT_SECRET"],
                               "scope": "https://management.azure.com/.default"}).encode()
token = json.load(urllib.request.urlopen(f"{authority}/{os.environ['AZURE_TENANT_ID']}/oauth2/v2.0/token", form))["access_token"]
ep = (f"{sandbox}/subscriptions/{os.environ['AZURE_SUBSCRIPTION_ID']}/resourceGroups/flightdeck-demo/providers/"
      "Microsoft.MachineLearningServices/workspaces/demo/onlineEndpoints/my-endpoint")


def arm(url, method="GET"):
    req = urllib.request.Request(url + "?api-version=2025-12-01", data=b"" if method == "POST" else None,
                                 method=method, headers={"Authorization": f"Bearer {token}",
                                                         "Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(req, timeout=10))


key = arm(ep + "/listKeys", "POST")["primaryKey"]
uri = arm(ep)["properties"]["scoringUri"]
body = open(os.path.join(os.environ["WORK"], "src/environments/sandbox/sample-request.json"), "rb").read()


def serving_two():
    req = urllib.request.Request(uri, data=body, headers={"Authorization": f"Bearer {key}",
                                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            model = json.load(r).get("model", "")
    except OSError:
        return None
    return model.rstrip("/").endswith("/versions/2") and model


model = wait("version 2 answering the scoring URI", serving_two)
serving_at = time.time()
print(f"scoring answered by {model}")

status = agent_json("/status")
recent = status.get("promotion", {}).get("recent", [])
if not any(e["result"] == "committed" and e.get("version") == "2" for e in recent):
    fail(f"/status shows no committed promotion: {recent}")
refused = [e for e in recent if e["result"] == "refused" and "example_model" in e["message"]]
if not refused:
    fail(f"/status shows no refusal of the unmapped test delivery: {recent}")
print(f"refused as expected: {refused[0]['message']}")
ms = lambda a, b: f"{(b - a) * 1000:.0f} ms"
print(f"promotion latency: alias set → commit {ms(set_at, committed_at)}, → first sandbox write "
      f"{ms(set_at, written_at)}, → version 2 serving {ms(set_at, serving_at)}")
