import json

from core.settings import PROJECT_ROOT, Settings, documented


def test_defaults_work_with_an_empty_environment():
    s = Settings.from_env({})
    assert s.errors == ()
    assert s.fusion_method in ("convex", "rrf")
    assert not s.blob_configured and not s.claude_configured
    assert s.keys == frozenset({"local-dev-key"})


def test_values_are_parsed_by_type():
    s = Settings.from_env({"REQUEST_DEADLINE_S": "2.5", "DEFAULT_TOP_K": "7", "FUNCTION_KEYS": "a, b,,c",
                           "BLOB_ACCOUNT_URL": "https://acct.blob.core.windows.net"})
    assert s.request_deadline_s == 2.5 and s.default_top_k == 7
    assert s.keys == frozenset({"a", "b", "c"})
    assert s.blob_configured


def test_bad_values_are_reported_not_raised():
    s = Settings.from_env({"DEFAULT_TOP_K": "ten", "FUSION_METHOD": "magic", "CONVEX_ALPHA": "3"})
    assert s.default_top_k == 10  # default kept
    joined = " ".join(s.errors)
    assert "DEFAULT_TOP_K" in joined and "FUSION_METHOD" in joined and "CONVEX_ALPHA" in joined


def test_redacted_hides_secrets():
    s = Settings.from_env({"ANTHROPIC_API_KEY": "sk-secret", "REDIS_URL": "redis://:pw@host:6379"})
    red = s.redacted()
    assert red["anthropic_api_key"] is True and red["redis_url"] is True
    assert "sk-secret" not in json.dumps(red)


def test_local_settings_example_lists_every_setting_with_default_and_meaning():
    example = json.loads((PROJECT_ROOT / "local.settings.json.example").read_text())
    for env, default, meaning in documented():
        assert example["Values"].get(env) == str(default), env
        assert example["SettingsHelp"].get(env) == meaning, env


def test_unresolved_key_vault_reference_counts_as_unset():
    s = Settings.from_env({"ANTHROPIC_API_KEY": "@Microsoft.KeyVault(SecretUri=https://kv.vault.azure.net/secrets/x/)"})
    assert s.anthropic_api_key == "" and not s.claude_configured
    assert any("Key Vault" in e for e in s.errors)


def test_readme_documents_every_setting():
    readme = (PROJECT_ROOT / "README.md").read_text()
    missing = [env for env, _, _ in documented() if f"| `{env}` |" not in readme]
    assert missing == []
