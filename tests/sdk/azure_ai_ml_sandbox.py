"""Drives `flightdeck sandbox` with Microsoft's azure-ai-ml SDK (MLClient), unchanged.

Run by scripts/check-azure-ai-ml.sh, which starts the sandbox with --tls-cert and exports what
it prints. The only sandbox-specific code is the documented custom-cloud override
(`cloud=` + `cloud_metadata=`); the credential is azure-identity's DefaultAzureCredential,
which reaches the sandbox's managed-identity endpoint via AZURE_POD_IDENTITY_AUTHORITY_HOST.
"""

import json
import os
import sys
import tempfile

from azure.ai.ml import MLClient
from azure.ai.ml.entities import ManagedOnlineDeployment, ManagedOnlineEndpoint
from azure.identity import DefaultAzureCredential

BASE = os.environ["FLIGHTDECK_ARM_ENDPOINT"]
SUBSCRIPTION = os.environ["AZURE_SUBSCRIPTION_ID"]
ENDPOINT = "sdk-endpoint"


def check(condition, message):
    if not condition:
        sys.exit(f"FAIL: {message}")
    print(f"ok: {message}")


def invoke(ml, request_file, **kwargs):
    return json.loads(ml.online_endpoints.invoke(endpoint_name=ENDPOINT, request_file=request_file, **kwargs))


def main():
    ml = MLClient(
        DefaultAzureCredential(),
        subscription_id=SUBSCRIPTION,
        resource_group_name="sdk-rg",
        workspace_name="sdk-ws",
        cloud="FlightdeckSandbox",
        cloud_metadata={
            "azure_portal": BASE + "/",
            "resource_manager": BASE + "/",
            "active_directory": BASE + "/",
            "aml_resource_id": BASE + "/",
            "storage_endpoint": "core.windows.net",
            "registry_discovery_endpoint": BASE + "/",
        },
        show_progress=False,
    )

    check(list(ml.online_endpoints.list()) == [], "an empty workspace lists no endpoints")

    endpoint = ManagedOnlineEndpoint(name=ENDPOINT, auth_mode="key", tags={"team": "sdk"})
    created = ml.online_endpoints.begin_create_or_update(endpoint).result()
    check(created.provisioning_state == "Succeeded", "begin_create_or_update creates the endpoint")
    check(created.scoring_uri.startswith(BASE + "/inference/"), "the scoring URI points at the sandbox")

    deployments = {}
    for name, model in [("blue", "azureml:sdk-model:1"), ("green", "azureml:sdk-model:2")]:
        deployment = ManagedOnlineDeployment(
            name=name,
            endpoint_name=ENDPOINT,
            model=model,
            environment="azureml:sdk-env:1",
            instance_type="Standard_DS3_v2",
            instance_count=1,
        )
        deployments[name] = ml.online_deployments.begin_create_or_update(deployment).result()
        check(deployments[name].provisioning_state == "Succeeded", f"deployment {name} is created from {model}")
    got = ml.online_deployments.get(name="blue", endpoint_name=ENDPOINT)
    check(got.model.endswith("/models/sdk-model/versions/1"), "the deployment keeps its model asset reference")

    endpoint = ml.online_endpoints.get(ENDPOINT)
    check(endpoint.traffic == {"blue": 0, "green": 0}, "get shows both deployments at 0 %")
    endpoint.traffic = {"blue": 100}
    updated = ml.online_endpoints.begin_create_or_update(endpoint).result()
    check(updated.traffic == {"blue": 100}, "traffic update: blue takes 100 %")

    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"data": [[1, 2, 3]]}, f)
        request = f.name
    # Without a deployment name first: MLClient keeps the deployment header in a shared dict
    # once it has been set (azure-ai-ml's EndpointInvokeFields.DEFAULT_HEADER).
    by_traffic = invoke(ml, request)
    check(by_traffic["deployment"] == "blue", "invoke without deployment_name follows the traffic split")
    direct = invoke(ml, request, deployment_name="green")
    check(direct["deployment"] == "green", "invoke with deployment_name reaches a 0 % deployment")
    check(by_traffic["model"] != direct["model"], "the two deployments serve their own models")

    endpoint = ml.online_endpoints.get(ENDPOINT)
    endpoint.traffic = {"blue": 0, "green": 100}
    ml.online_endpoints.begin_create_or_update(endpoint).result()
    check(ml.online_endpoints.get(ENDPOINT).traffic == {"blue": 0, "green": 100}, "traffic moves to green")
    ml.online_deployments.begin_delete(name="blue", endpoint_name=ENDPOINT).result()
    names = [d.name for d in ml.online_deployments.list(endpoint_name=ENDPOINT)]
    check(names == ["green"], "begin_delete removes the drained deployment")

    ml.online_endpoints.begin_delete(name=ENDPOINT).result()
    check([e.name for e in ml.online_endpoints.list()] == [], "begin_delete removes the endpoint")
    print("azure-ai-ml drove the sandbox end to end")


if __name__ == "__main__":
    main()
