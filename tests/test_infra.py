"""Infrastructure checks: every Bicep file under infra/ parsed with a real Bicep parser.

pycep-parser (PyPI) turns each file into a JSON-like tree: ``parameters``, ``variables``,
``resources``, ``modules`` and ``outputs``. A reference to a symbol appears as the bare
symbol name, a string literal as its text, and interpolation as ``${...}`` inside a
string, so values are resolved against the file's parameters and variables where a
check needs the actual value. No regex runs over Bicep text: a file that does not
parse fails here, with the line and column of the problem.

The Bicep compiler itself cannot be installed on this machine; CI on GitHub runs
``az bicep build`` and ``az bicep lint`` as well.
"""

from __future__ import annotations

import dataclasses
import json
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

import pycep  # pycep-parser, in requirements-dev.txt
import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = INFRA / "main.bicep"
MODULES = INFRA / "modules"
BICEP_FILES = sorted(INFRA.rglob("*.bicep"))

ROLE = {
    "storage_blob_data_owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "storage_blob_data_reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "storage_blob_data_contributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "key_vault_secrets_user": "4633458b-17de-408a-b874-0445c86b69e6",
    "monitoring_metrics_publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "azure_maps_data_reader": "423170ca-a8f6-4b0f-8487-9e4eb8f49bfa",
}

# Settings the platform reads (not core/settings.py).
PLATFORM_SETTINGS = {
    "AzureWebJobsStorage__accountName",
    "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    "PYTHON_THREADPOOL_THREAD_COUNT",
}
REQUIRED_APP_SETTINGS = {
    "BLOB_ACCOUNT_URL", "AZURE_CLIENT_ID", "INDEX_CONTAINER", "ADS_CONTAINER", "REDIS_HOST",
    "REDIS_PORT", "REDIS_URL", "ANTHROPIC_API_KEY", "AZURE_MAPS_CLIENT_ID",
    "APPLICATIONINSIGHTS_CONNECTION_STRING", "REQUEST_DEADLINE_S", "PYTHON_THREADPOOL_THREAD_COUNT",
} | PLATFORM_SETTINGS
# Not allowed on Flex Consumption (runtime lives in functionAppConfig), or managed by Azure.
FORBIDDEN_APP_SETTINGS = {"FUNCTIONS_WORKER_RUNTIME", "FUNCTIONS_EXTENSION_VERSION", "FUNCTION_KEYS",
                          "AzureWebJobsStorage", "AZURE_MAPS_KEY", "BLOB_CONNECTION_STRING"}
SECRETISH = re.compile(r"key|secret|password|connection_?string|token", re.IGNORECASE)


# --- parsing and tree helpers -----------------------------------------------------------


@lru_cache(maxsize=None)
def parse(path: Path) -> dict[str, Any]:
    return pycep.BicepParser().parse(file_path=path)


def unwrap(config: dict[str, Any]) -> dict[str, Any]:
    """The body of a resource/module, under any `if (...)` condition or `for` loop."""
    while isinstance(config, dict) and "config" in config and ("condition" in config or "loop_type" in config):
        config = config["config"]
    return config


def resources(tree: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """(symbol, type, api version, body) of every resource declared in a tree."""
    for symbol, res in (tree.get("resources") or {}).items():
        yield symbol, res["type"], res["api_version"], unwrap(res["config"])


def all_resources(rtype: str | None = None, existing: bool | None = False) -> list[tuple[Path, str, dict[str, Any]]]:
    out = []
    for path in BICEP_FILES:
        for symbol, res in (parse(path).get("resources") or {}).items():
            if rtype is not None and res["type"] != rtype:
                continue
            if existing is not None and res["existing"] != existing:
                continue
            out.append((path, symbol, unwrap(res["config"])))
    return out


def the_resource(rtype: str) -> tuple[Path, str, dict[str, Any]]:
    found = all_resources(rtype)
    assert len(found) == 1, f"expected exactly one {rtype}, found {[(p.name, s) for p, s, _ in found]}"
    return found[0]


def avm_modules() -> dict[str, dict[str, Any]]:
    """AVM path (avm/res/...) -> module declaration, over every file."""
    out = {}
    for path in BICEP_FILES:
        for mod in (parse(path).get("modules") or {}).values():
            if mod["type"] == "bicep_registry_alias":
                out[mod["detail"]["path"]] = mod
    return out


def module_params(mod: dict[str, Any]) -> dict[str, Any]:
    return unwrap(mod["config"])["params"]


def resolve(value: Any, tree: dict[str, Any]) -> Any:
    """Follow a bare symbol to its variable value or parameter default (one file)."""
    seen = set()
    while isinstance(value, str) and value not in seen:
        seen.add(value)
        if value in (tree.get("variables") or {}):
            value = tree["variables"][value]["value"]
        elif value in (tree.get("parameters") or {}):
            return tree["parameters"][value]["default"]
        else:
            break
    return value


_BINARY = {
    "or": lambda a, b: a or b, "and": lambda a, b: a and b,
    "equals": lambda a, b: a == b, "not_equals": lambda a, b: a != b,
    "greater_than": lambda a, b: a > b, "greater_than_or_equals": lambda a, b: a >= b,
    "less_than": lambda a, b: a < b, "less_than_or_equals": lambda a, b: a <= b,
}
_FUNCTIONS = {
    "empty": lambda p: len(p["item_to_test"]) == 0,
    "starts_with": lambda p: p["string_to_search"].lower().startswith(p["string_to_find"].lower()),
    "string": lambda p: str(p["value_to_convert"]).lower() if isinstance(p["value_to_convert"], bool)
    else str(p["value_to_convert"]),
}


def evaluate(node: Any, tree: dict[str, Any], env: dict[str, Any] | None = None) -> Any:
    """The value of a Bicep expression (as pycep renders it) for parameter values ``env``.

    Parameters not in ``env`` take their defaults; variables are evaluated in turn. Covers the
    expressions the templates use to pick values (conditions, comparisons, logic, empty,
    startsWith, string, object lookup), so a test can ask "what does main.bicep pass for a
    ServicePrincipal deployer?" instead of matching text. A bare string that names no symbol
    is a string literal.
    """
    env = env or {}
    if isinstance(node, (bool, int, float)) or node is None:
        return node
    if isinstance(node, str):
        if node in env:
            return env[node]
        if node in (tree.get("variables") or {}):
            return evaluate(tree["variables"][node]["value"], tree, env)
        if node in (tree.get("parameters") or {}):
            return evaluate(tree["parameters"][node]["default"], tree, env)
        return node
    if isinstance(node, list):
        return [evaluate(item, tree, env) for item in node]
    if "operator" in node and isinstance(node["operator"], dict) and "type" in node["operator"]:
        kind, ops = node["operator"]["type"], node["operator"]["operands"]
        if kind == "conditional":
            branch = "true_value" if evaluate(ops["condition"], tree, env) else "false_value"
            return evaluate(ops[branch], tree, env)
        if kind == "not":
            return not evaluate(ops["bool_value"], tree, env)
        if kind == "index_accessor":
            return evaluate(ops["operand_1"], tree, env)[evaluate(ops["operand_2"], tree, env)]
        if kind in _BINARY:
            for operand in (ops["operand_1"], ops["operand_2"]):
                # pycep-parser binds `? :` tighter than Bicep (`a || b ? x : y` comes out as
                # `a || (b ? x : y)`): the templates parenthesise every condition, so a
                # conditional inside a binary operator means an unparenthesised one.
                assert not (isinstance(operand, dict) and operand.get("operator", {}).get("type") == "conditional"), \
                    f"parenthesise the condition of a `? :` in the Bicep: {node}"
            return _BINARY[kind](evaluate(ops["operand_1"], tree, env), evaluate(ops["operand_2"], tree, env))
        raise AssertionError(f"evaluate() does not know operator {kind}")
    if "function" in node and isinstance(node["function"], dict) and "type" in node["function"]:
        fn = node["function"]
        if fn["type"] not in _FUNCTIONS:
            raise AssertionError(f"evaluate() does not know function {fn['type']}")
        return _FUNCTIONS[fn["type"]]({k: evaluate(v, tree, env) for k, v in fn["parameters"].items()})
    # An object literal: pycep keeps the quotes of quoted keys.
    return {str(k).strip("'"): evaluate(v, tree, env) for k, v in node.items()}


def decorator(tree: dict[str, Any], param: str, kind: str) -> Any:
    for dec in tree["parameters"][param]["decorators"]:
        if dec["type"] == kind:
            return dec.get("argument", True)
    return None


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from walk(item)


def role_definition_guid(body: dict[str, Any]) -> str:
    rid = body["properties"]["roleDefinitionId"]
    assert isinstance(rid, dict) and rid["function"]["type"] == "subscription_resource_id", rid
    params = rid["function"]["parameters"]
    assert params["resource_type"] == "Microsoft.Authorization/roleDefinitions"
    return params["resource_name_1"]


def module_output(symbol: str, output: str) -> dict[str, Any]:
    """The tree of `<symbol>.outputs.<output>` as pycep renders it."""
    return {"operator": {"type": "property_accessor", "operands": {
        "operand_1": symbol,
        "operand_2": {"operator": {"type": "property_accessor",
                                   "operands": {"operand_1": "outputs", "operand_2": output}}}}}}


def main_passes(module_file: str, param: str) -> Any:
    """What main.bicep passes to a local module's parameter."""
    for mod in parse(MAIN)["modules"].values():
        if mod["type"] == "local" and mod["detail"]["path"].endswith(module_file):
            return module_params(mod).get(param)
    raise AssertionError(f"main.bicep does not use {module_file}")


# --- the files parse and hang together ---------------------------------------------------


def test_infra_has_the_expected_files() -> None:
    assert MAIN.is_file()
    assert (INFRA / "main.parameters.json").is_file()
    assert {p.name for p in MODULES.glob("*.bicep")} >= {"functionapp.bicep", "redis.bicep", "rbac.bicep"}


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    tree = parse(path)
    assert tree.get("resources") or tree.get("modules"), f"{path.name} declares nothing"


def test_local_modules_exist_and_registry_modules_are_pinned() -> None:
    for path in BICEP_FILES:
        for symbol, mod in (parse(path).get("modules") or {}).items():
            if mod["type"] == "local":
                assert (path.parent / mod["detail"]["path"]).is_file(), f"{path.name}:{symbol}"
            else:
                assert mod["detail"]["path"].startswith("avm/res/"), f"{symbol}: only Azure Verified Modules"
                assert re.fullmatch(r"\d+\.\d+\.\d+", mod["detail"]["tag"]), f"{symbol} is not pinned"


def test_main_targets_the_subscription_and_creates_the_resource_group() -> None:
    tree = parse(MAIN)
    assert tree["globals"]["scope"]["value"] == "subscription"
    assert [s for s, t, _, _ in resources(tree) if t == "Microsoft.Resources/resourceGroups"]


def test_resource_types_present() -> None:
    declared = {t for p in BICEP_FILES for _, t, _, _ in resources(parse(p))}
    assert declared >= {
        "Microsoft.Web/serverfarms",
        "Microsoft.Web/sites",
        "Microsoft.Web/sites/config",
        "Microsoft.Cache/redisEnterprise",
        "Microsoft.Cache/redisEnterprise/databases",
        "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments",
        "Microsoft.KeyVault/vaults/secrets",
        "Microsoft.Maps/accounts",
        "Microsoft.Authorization/roleAssignments",
    }
    # These come from Azure Verified Modules.
    assert set(avm_modules()) >= {
        "avm/res/managed-identity/user-assigned-identity",
        "avm/res/storage/storage-account",
        "avm/res/key-vault/vault",
        "avm/res/operational-insights/workspace",
        "avm/res/insights/component",
    }


# --- Flex Consumption ----------------------------------------------------------------------


def test_plan_is_flex_consumption_on_linux() -> None:
    _, _, plan = the_resource("Microsoft.Web/serverfarms")
    assert plan["sku"] == {"name": "FC1", "tier": "FlexConsumption"}
    assert plan["properties"]["reserved"] is True


def test_function_app_is_flex_python_311_with_identity_based_deployment() -> None:
    path, _, site = the_resource("Microsoft.Web/sites")
    tree = parse(path)
    assert site["kind"] == "functionapp,linux"
    assert site["properties"]["httpsOnly"] is True
    config = site["properties"]["functionAppConfig"]
    assert config["runtime"] == {"name": "python", "version": "3.11"}
    storage = config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"
    assert storage["authentication"]["userAssignedIdentityResourceId"] == "identityResourceId"
    assert resolve(main_passes("functionapp.bicep", "deploymentContainerName"), parse(MAIN)) == "deployment-package"
    assert "identityResourceId" in tree["parameters"]


def test_function_app_runs_as_the_user_assigned_identity() -> None:
    _, _, site = the_resource("Microsoft.Web/sites")
    identity = site["identity"]
    assert identity["type"] == "UserAssigned"
    assert list(identity["userAssignedIdentities"]) == ["'${identityResourceId}'"]
    assert site["properties"]["keyVaultReferenceIdentity"] == "identityResourceId"
    identity = parse(MAIN)["modules"]["appIdentity"]
    assert identity["detail"]["path"] == "avm/res/managed-identity/user-assigned-identity"
    assert main_passes("functionapp.bicep", "identityResourceId") == module_output("appIdentity", "resourceId")


def test_flex_scale_settings() -> None:
    path, _, site = the_resource("Microsoft.Web/sites")
    module, main = parse(path), parse(MAIN)
    scale = site["properties"]["functionAppConfig"]["scaleAndConcurrency"]

    memory = scale["instanceMemoryMB"]
    assert set(decorator(module, memory, "allowed")) <= {512, 2048, 4096}
    assert set(decorator(main, "instanceMemoryMB", "allowed")) <= {512, 2048, 4096}

    maximum = scale["maximumInstanceCount"]
    assert decorator(module, maximum, "max_value") == 1000
    assert 40 <= resolve("maximumInstanceCount", main) <= decorator(main, "maximumInstanceCount", "max_value") <= 1000

    (always_ready,) = scale["alwaysReady"]
    assert always_ready["name"] == "http"
    count = always_ready["instanceCount"]
    assert decorator(module, count, "min_value") >= 1
    assert decorator(main, "alwaysReadyInstances", "min_value") >= 1
    assert resolve("alwaysReadyInstances", main) >= 1

    concurrency = scale["triggers"]["http"]["perInstanceConcurrency"]
    assert decorator(module, concurrency, "min_value") >= 1

    # main.bicep hands its knobs to the module unchanged (concurrency: see the per-memory test).
    for main_param, module_param in [("instanceMemoryMB", memory), ("maximumInstanceCount", maximum),
                                     ("alwaysReadyInstances", count)]:
        assert main_passes("functionapp.bicep", module_param) == main_param
    assert main_passes("functionapp.bicep", concurrency) == "perInstanceConcurrency"


# --- issue 12: instance count, per-memory concurrency, principal type, groups, doc numbers -------

DEPLOY_DOC = ROOT / "docs" / "deploy.md"
README = ROOT / "README.md"
MEMORY_SIZES = (512, 2048, 4096)


def test_maximum_instance_count_is_40_to_1000_in_both_files_and_the_doc() -> None:
    """Flex Consumption refuses a maximumInstanceCount below 40 (Microsoft Learn, Flex Consumption
    plan hosting, Considerations), apart from a few regions in preview."""
    module = parse(MODULES / "functionapp.bicep")
    main = parse(MAIN)
    for tree in (module, main):
        assert decorator(tree, "maximumInstanceCount", "min_value") == 40
        assert decorator(tree, "maximumInstanceCount", "max_value") == 1000
        assert 40 <= resolve("maximumInstanceCount", tree) <= 1000
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert 40 <= given["maximumInstanceCount"]["value"] <= 1000
    doc = DEPLOY_DOC.read_text()
    row = knob_row(doc, "maximumInstanceCount")
    assert "40-1000" in row or "40–1000" in row, row
    assert "1-1000" not in doc and "1–1000" not in doc
    assert "preview" in row, "the doc names the preview-region exception"


def per_memory_concurrency_in_readme() -> dict[int, int]:
    """The README's `instanceMemoryMB | vCPU | perInstanceConcurrency` table."""
    text = README.read_text()
    rows = re.findall(r"^\| `?(512|2048|4096)`? MB \| ([0-9.]+) \| \*\*(\d+)\*\* \|", text, re.MULTILINE)
    assert {int(m) for m, _, _ in rows} == set(MEMORY_SIZES), f"README per-memory table rows: {rows}"
    return {int(m): int(c) for m, _, c in rows}


def test_per_instance_concurrency_defaults_per_memory_size_and_match_the_readme() -> None:
    main = parse(MAIN)
    passed = main_passes("functionapp.bicep", "httpPerInstanceConcurrency")
    measured = per_memory_concurrency_in_readme()
    assert set(decorator(main, "instanceMemoryMB", "allowed")) == set(MEMORY_SIZES)
    for memory in MEMORY_SIZES:
        assert evaluate(passed, main, {"instanceMemoryMB": memory}) == measured[memory], memory
    # More CPU, at least as much concurrency.
    assert measured[512] <= measured[2048] <= measured[4096]
    # An explicit value still wins, and the parameters file does not pin one (it would hide the map).
    assert evaluate(passed, main, {"instanceMemoryMB": 2048, "httpPerInstanceConcurrency": 7}) == 7
    assert resolve("httpPerInstanceConcurrency", main) == 0
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert "httpPerInstanceConcurrency" not in given
    # Every value fits under the host's per-instance throttle and the Redis pool of one instance.
    host = json.loads((ROOT / "host.json").read_text())["extensions"]["http"]
    from core.settings import Settings

    pool = {f.name: f.default for f in dataclasses.fields(Settings)}["redis_max_connections"]
    for value in measured.values():
        assert value <= host["maxConcurrentRequests"] <= host["maxOutstandingRequests"]
        assert value <= pool


@pytest.mark.parametrize(("given", "expected"), [
    ("${AZURE_PRINCIPAL_TYPE}", "User"),  # parameters file used without azd
    ("", "User"),
    ("User", "User"),
    ("ServicePrincipal", "ServicePrincipal"),
    ("Group", "Group"),
])
def test_principal_type_of_the_deployer_reaches_every_user_role_assignment(given: str, expected: str) -> None:
    main = parse(MAIN)
    entry = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]["principalType"]
    assert entry == {"value": "${AZURE_PRINCIPAL_TYPE}"}  # azd fills it: User or ServicePrincipal
    # No @allowed on main.bicep's parameter: the literal placeholder must pass validation...
    assert decorator(main, "principalType", "allowed") is None
    # ...and rbac.bicep, which uses it, accepts exactly the three kinds.
    rbac = parse(MODULES / "rbac.bicep")
    assert set(decorator(rbac, "userPrincipalType", "allowed")) == {"User", "ServicePrincipal", "Group"}
    env = {"principalType": given, "principalId": "11111111-2222-3333-4444-555555555555"}
    assert evaluate(main_passes("rbac.bicep", "userPrincipalType"), main, env) == expected
    assert evaluate(main_passes("rbac.bicep", "userPrincipalId"), main, env) == env["principalId"]
    # Every grant to the deploying principal uses that type, none a hard-coded one.
    user_grants = [unwrap(res["config"]) for res in rbac["resources"].values()
                   if res["type"] == "Microsoft.Authorization/roleAssignments"
                   and unwrap(res["config"])["properties"]["principalId"] == "userPrincipalId"]
    assert len(user_grants) >= 2
    assert {g["properties"]["principalType"] for g in user_grants} == {"userPrincipalType"}


@pytest.mark.parametrize(("kind", "gets_redis"), [("User", True), ("ServicePrincipal", True), ("Group", False),
                                                   ("${AZURE_PRINCIPAL_TYPE}", True)])
def test_an_entra_group_gets_no_redis_access_policy_assignment(kind: str, gets_redis: bool) -> None:
    """Azure Managed Redis access policy assignments do not support Entra groups: for a Group the
    template skips that one assignment (documented) and still grants the Blob and Key Vault roles."""
    main, redis = parse(MAIN), parse(MODULES / "redis.bicep")
    object_id = "11111111-2222-3333-4444-555555555555"
    env = {"principalType": kind, "principalId": object_id}
    redis_user = evaluate(main_passes("redis.bicep", "userPrincipalId"), main, env)
    assert redis_user == (object_id if gets_redis else "")
    (user_access,) = [res for res in redis["resources"].values()
                      if res["type"] == "Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments"
                      and unwrap(res["config"])["properties"]["user"]["objectId"] == "userPrincipalId"]
    assert evaluate(user_access["config"]["condition"], redis, {"userPrincipalId": redis_user}) is gets_redis
    # The Blob and Key Vault grants do not depend on the kind.
    assert evaluate(main_passes("rbac.bicep", "userPrincipalId"), main, env) == object_id
    assert "group" in DEPLOY_DOC.read_text().lower() and "access policy" in DEPLOY_DOC.read_text().lower()


def knob_row(doc: str, knob: str) -> str:
    rows = [line for line in doc.splitlines() if line.startswith(f"| `{knob}`")]
    assert len(rows) == 1, f"docs/deploy.md: expected one table row for {knob}, found {len(rows)}"
    return rows[0]


def test_deploy_doc_numbers_are_the_code_defaults() -> None:
    """docs/deploy.md's defaults and connection counts, recomputed from core/settings.py and the Bicep."""
    from core.settings import documented

    defaults = {env: default for env, default, _ in documented()}
    main = parse(MAIN)
    doc = DEPLOY_DOC.read_text()
    pool = defaults["REDIS_MAX_CONNECTIONS"]
    instances = resolve("maximumInstanceCount", main)
    always_ready = resolve("alwaysReadyInstances", main)
    for knob in ("maximumInstanceCount", "alwaysReadyInstances", "pythonThreadpoolThreadCount", "redisSkuName",
                 "redisHighAvailability", "deployMaps"):
        value = resolve(knob, main)
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert f"[**{shown}**]" in knob_row(doc, knob), (knob, value)
    assert "**2048**" in knob_row(doc, "instanceMemoryMB") and resolve("instanceMemoryMB", main) == 2048
    # The Bicep sets no REDIS_MAX_CONNECTIONS app setting, so the code default is what runs in Azure.
    settings, _ = app_settings()
    assert "REDIS_MAX_CONNECTIONS" not in settings
    assert f"`REDIS_MAX_CONNECTIONS` ({pool})" in doc
    assert f"{instances * pool:,}" in doc and f"{(instances + always_ready) * pool:,}" in doc
    # Per-instance concurrency: the doc shows the same per-memory values as the README and the Bicep.
    row = knob_row(doc, "httpPerInstanceConcurrency")
    for memory, value in per_memory_concurrency_in_readme().items():
        assert f"{memory}: {value}" in row, (memory, value, row)
    # Python worker threads: the Bicep passes its parameter into the app setting the worker reads.
    assert settings["PYTHON_THREADPOOL_THREAD_COUNT"]["function"]["parameters"]["value_to_convert"] == \
        "pythonThreadpoolThreadCount"


# Knobs that `azd provision` cannot change back on an existing deployment (each documented and
# checked against Microsoft's documentation): name -> what the doc must say about it.
ONE_WAY_KNOBS = {
    "redisHighAvailability": "Enabled",   # Disabled -> Enabled only (Redis Enterprise cluster API)
    "vaultPurgeProtection": "true",       # cannot be turned off once on
    "vaultSoftDeleteRetentionDays": "creation",  # set at vault creation only
}


def test_deploy_doc_names_the_knobs_that_cannot_be_changed_back() -> None:
    doc = DEPLOY_DOC.read_text()
    assert "every knob" not in doc.lower()
    section = doc.split("### Knobs that cannot be changed back", 1)
    assert len(section) == 2, "docs/deploy.md has a section on the one-way knobs"
    body = section[1].split("\n## ", 1)[0]
    params = parse(MAIN)["parameters"]
    for knob, must_say in ONE_WAY_KNOBS.items():
        assert knob in params, knob
        lines = [line for line in body.splitlines() if f"`{knob}`" in line]
        assert lines and any(must_say in line for line in lines), (knob, lines)


# --- app settings ---------------------------------------------------------------------------


def app_settings() -> tuple[dict[str, Any], dict[str, Any]]:
    path, _, body = the_resource("Microsoft.Web/sites/config")
    assert body["name"] == "appsettings"
    return body["properties"], parse(path)


def test_app_settings_wire_what_the_app_reads() -> None:
    from core.settings import documented

    settings, _ = app_settings()
    app_names = {env for env, _, _ in documented()}
    assert set(settings) >= REQUIRED_APP_SETTINGS
    assert not set(settings) & FORBIDDEN_APP_SETTINGS
    unknown = set(settings) - app_names - PLATFORM_SETTINGS
    assert not unknown, f"app settings the app does not read (typo?): {sorted(unknown)}"


def test_app_settings_use_identities_not_secrets() -> None:
    settings, tree = app_settings()
    assert settings["REDIS_URL"] == ""  # empty: the app connects to REDIS_HOST with Entra ID
    assert settings["REDIS_HOST"] == "redisHostName"
    assert main_passes("functionapp.bicep", "redisHostName") == module_output("redis", "hostName")
    assert settings["REDIS_PORT"]["function"]["parameters"]["value_to_convert"] == "redisPort"
    assert main_passes("functionapp.bicep", "redisPort") == module_output("redis", "port")
    assert settings["AzureWebJobsStorage__credential"] == "managedidentity"
    assert settings["AZURE_CLIENT_ID"] == settings["AzureWebJobsStorage__clientId"] == "identityClientId"
    assert main_passes("functionapp.bicep", "identityClientId") == module_output("appIdentity", "clientId")
    assert settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"] == "ClientId=${identityClientId};Authorization=AAD"


def test_no_app_setting_holds_a_literal_secret() -> None:
    settings, tree = app_settings()
    anthropic = settings["ANTHROPIC_API_KEY"]
    assert isinstance(anthropic, str) and anthropic.startswith("@Microsoft.KeyVault(SecretUri=")
    assert "${vault.properties.vaultUri}secrets/" in anthropic
    for name, value in settings.items():
        text = json.dumps(value)
        assert "AccountKey=" not in text and "SharedAccessSignature" not in text, name
        assert not any(isinstance(n, dict) and "function" in n and n["function"]["type"].startswith("list")
                       for n in walk(value)), f"{name} calls a list*() function"
        if SECRETISH.search(name) and name != "APPLICATIONINSIGHTS_CONNECTION_STRING":
            # Must be a Key Vault reference, a parameter reference or empty: never a literal.
            literal = isinstance(value, str) and "${" not in value and value not in tree["parameters"]
            assert not literal or value == "" or value.startswith("@Microsoft.KeyVault("), name
    # The secret's value only ever comes from a @secure() parameter.
    for path in BICEP_FILES:
        t = parse(path)
        for _, rtype, _, body in resources(t):
            if rtype == "Microsoft.KeyVault/vaults/secrets":
                assert decorator(t, body["properties"]["value"], "secure") is True
    assert decorator(parse(MAIN), "anthropicApiKey", "secure") is True
    assert parse(MAIN)["parameters"]["anthropicApiKey"]["default"] == ""


# --- role assignments -------------------------------------------------------------------------


def test_role_assignments_by_role_definition_id() -> None:
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path, _symbol, body in all_resources("Microsoft.Authorization/roleAssignments"):
        found.setdefault(role_definition_guid(body), []).append((path.name, body))
    assert set(found) >= set(ROLE.values()), {k: v for k, v in ROLE.items() if v not in found}

    def scope_type(path_name: str, body: dict[str, Any]) -> str:
        scope = body["scope"]
        if isinstance(scope, dict):  # dataContainers[i]
            scope = scope["operator"]["operands"]["operand_1"]
        return parse(MODULES / path_name)["resources"][scope]["type"]

    owner = found[ROLE["storage_blob_data_owner"]]
    assert [scope_type(*o) for o in owner] == ["Microsoft.Storage/storageAccounts"]
    reader = found[ROLE["storage_blob_data_reader"]]
    assert [scope_type(*r) for r in reader] == ["Microsoft.Storage/storageAccounts/blobServices/containers"]
    assert scope_type(*found[ROLE["key_vault_secrets_user"]][0]) == "Microsoft.KeyVault/vaults"
    assert scope_type(*found[ROLE["monitoring_metrics_publisher"]][0]) == "Microsoft.Insights/components"
    assert scope_type(*found[ROLE["azure_maps_data_reader"]][0]) == "Microsoft.Maps/accounts"

    for guid in (ROLE["storage_blob_data_owner"], ROLE["storage_blob_data_reader"], ROLE["key_vault_secrets_user"],
                 ROLE["monitoring_metrics_publisher"], ROLE["azure_maps_data_reader"]):
        for _, body in found[guid]:
            assert body["properties"]["principalType"] == "ServicePrincipal"
            assert body["properties"]["principalId"] == "appPrincipalId"
    # The deploying user's grant is optional and conditional on a principal id.
    (contributor,) = [
        res for res in parse(MODULES / "rbac.bicep")["resources"].values()
        if res["type"] == "Microsoft.Authorization/roleAssignments"
        and role_definition_guid(unwrap(res["config"])) == ROLE["storage_blob_data_contributor"]
    ]
    assert contributor["config"]["condition"] is not None
    assert unwrap(contributor["config"])["properties"]["principalId"] == "userPrincipalId"


def test_data_containers_and_storage_hardening() -> None:
    main = parse(MAIN)
    params = module_params(avm_modules()["avm/res/storage/storage-account"])
    assert params["allowSharedKeyAccess"] is False
    assert params["allowBlobPublicAccess"] is False
    assert params["minimumTlsVersion"] == "TLS1_2"
    assert params["supportsHttpsTrafficOnly"] is True
    containers = params["blobServices"]["containers"]
    assert {resolve(c["name"], main) for c in containers} == {"deployment-package", "search-index", "ads-catalog"}
    assert {c["publicAccess"] for c in containers} == {"None"}
    readable = main_passes("rbac.bicep", "dataContainerNames")
    assert {resolve(n, main) for n in readable} == {"search-index", "ads-catalog"}


# --- Redis, Key Vault, monitoring -----------------------------------------------------------


def test_redis_is_tls_only_with_entra_access() -> None:
    path, _, cluster = the_resource("Microsoft.Cache/redisEnterprise")
    tree = parse(path)
    api = {t: v for _, t, v, _ in resources(tree)}
    # accessKeysAuthentication and accessPolicyAssignments: 2024-09-01-preview onwards (GA 2025-04-01).
    assert all(v[:10] >= "2024-09-01" for t, v in api.items() if t.startswith("Microsoft.Cache/"))
    assert cluster["properties"]["minimumTlsVersion"] == "1.2"
    assert resolve(cluster["sku"]["name"], tree) == "Balanced_B0"

    _, _, database = the_resource("Microsoft.Cache/redisEnterprise/databases")
    props = database["properties"]
    assert database["name"] == "default"
    assert props["clientProtocol"] == "Encrypted"
    assert props["port"] == 10000
    assert props["accessKeysAuthentication"] == "Disabled"
    assert props["clusteringPolicy"] in {"EnterpriseCluster", "OSSCluster"}
    assert resolve(props["evictionPolicy"], tree) in decorator(tree, "evictionPolicy", "allowed")

    assignments = all_resources("Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments")
    users = {body["properties"]["user"]["objectId"] for _, _, body in assignments}
    assert "appPrincipalId" in users
    assert {body["properties"]["accessPolicyName"] for _, _, body in assignments} == {"default"}
    assert main_passes("redis.bicep", "appPrincipalId") == main_passes("rbac.bicep", "appPrincipalId")


def test_key_vault_uses_rbac_with_soft_delete_and_purge_protection() -> None:
    main = parse(MAIN)
    params = module_params(avm_modules()["avm/res/key-vault/vault"])
    assert params["enableRbacAuthorization"] is True
    assert resolve(params["enablePurgeProtection"], main) is True
    assert 7 <= resolve(params["softDeleteRetentionInDays"], main) <= 90
    secret_module = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/kv-secret.bicep"]
    (secret_module,) = secret_module
    assert secret_module["config"]["condition"] is not None  # only written when a key is given
    assert resolve(module_params(secret_module)["secretName"], main) == "anthropic-api-key"


def test_monitoring_is_workspace_based_and_entra_only() -> None:
    main = parse(MAIN)
    params = module_params(avm_modules()["avm/res/insights/component"])
    assert resolve(params["disableLocalAuth"], main) is True
    assert "workspaceResourceId" in params


def test_maps_is_optional_and_entra_only() -> None:
    main = parse(MAIN)
    assert main["parameters"]["deployMaps"]["type"] == "bool"
    (maps,) = [m for m in main["modules"].values() if m["detail"]["path"] == "modules/maps.bicep"]
    assert maps["config"]["condition"] == "deployMaps"
    _, _, account = the_resource("Microsoft.Maps/accounts")
    assert account["properties"]["disableLocalAuth"] is True
    client_id = main_passes("functionapp.bicep", "mapsClientId")
    assert client_id["operator"]["type"] == "conditional"
    assert client_id["operator"]["operands"]["condition"] == "deployMaps"
    assert client_id["operator"]["operands"]["false_value"] == ""


# --- outputs and parameters --------------------------------------------------------------------


def test_no_output_exposes_keys_secrets_or_connection_strings() -> None:
    banned = re.compile(r"key|secret|password|connection_?string|listkeys", re.IGNORECASE)
    for path in BICEP_FILES:
        for name, output in (parse(path).get("outputs") or {}).items():
            assert not banned.search(name), f"{path.name}: output {name}"
            assert not banned.search(json.dumps(output["value"])), f"{path.name}: output {name} = {output['value']}"
            assert not any(d["type"] == "secure" for d in output["decorators"]), f"{path.name}: {name}"


def test_main_outputs_what_deploy_and_upload_need() -> None:
    outputs = parse(MAIN)["outputs"]
    assert set(outputs) >= {"AZURE_FUNCTION_APP_NAME", "FUNCTION_BASE_URL", "AZURE_STORAGE_ACCOUNT_NAME",
                            "BLOB_ACCOUNT_URL", "INDEX_CONTAINER", "ADS_CONTAINER", "REDIS_HOST",
                            "APP_IDENTITY_CLIENT_ID", "AZURE_RESOURCE_GROUP"}
    assert outputs["FUNCTION_BASE_URL"]["value"].startswith("https://")
    assert outputs["FUNCTION_BASE_URL"]["value"].endswith("/api")


def test_parameters_file_matches_main() -> None:
    main = parse(MAIN)["parameters"]
    given = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    assert set(given) <= set(main), f"unknown parameters: {sorted(set(given) - set(main))}"
    required = {name for name, p in main.items() if p["default"] is None}
    assert required <= set(given), f"required parameters missing: {sorted(required - set(given))}"
    for name, entry in given.items():
        value = entry["value"]
        allowed = decorator(parse(MAIN), name, "allowed")
        if allowed and not (isinstance(value, str) and value.startswith("${")):
            assert value in allowed, name
        if decorator(parse(MAIN), name, "secure"):
            # Secure values never sit in the file: an azd environment placeholder only.
            assert re.fullmatch(r"\$\{[A-Z_][A-Z0-9_]*\}", value), name


# --- azd and CI -----------------------------------------------------------------------------


def test_azure_yaml_declares_the_api_service() -> None:
    spec = yaml.safe_load((ROOT / "azure.yaml").read_text())
    assert spec["services"]["api"] == {"project": ".", "language": "python", "host": "function"}
    assert spec.get("infra", {}).get("path", "infra") == "infra"


def test_ci_builds_and_lints_the_bicep() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    runs = [step.get("run", "") for job in workflow["jobs"].values() for step in job["steps"]]
    script = "\n".join(runs)
    assert "az bicep build --file infra/main.bicep" in script
    assert "az bicep lint" in script
    assert "ruff check" in script
    assert "bash .ci/run" in script
