"""The ``pipelines`` section: command models, the keys their tokens are checked and signed
with, where jobs run, and each model's timeout, concurrency and queue."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.filters import filter_names
from runnergw.config.load import load_settings
from runnergw.config.pipelines import ModelSettings, PipelineSettings
from runnergw.config.settings import Settings
from tests.helpers.settings_text import read_text

__all__ = ["JobNicenessTests", "ModelSettingsTests", "PipelineEnvironmentTests",
           "PipelineSettingsTests"]


class PipelineSettingsTests(SynchronousTestCase):
    """The section on its own."""

    def read(self, text: str, present: bool = True) -> tuple[PipelineSettings, list[str]]:
        return read_text(self, text, lambda root: PipelineSettings.from_yaml(
            root.section("pipelines"), present))

    def test_off_without_the_section(self) -> None:
        """A node without the section serves no models and needs no server id."""
        settings, errors = self.read("", present=False)
        self.assertEqual(errors, [])
        self.assertFalse(settings.enabled)

    def test_on_with_the_section(self) -> None:
        """The section turns pipelines on with the WebSaaS node's defaults and chain."""
        settings, errors = self.read("pipelines:\n  serverId: base64:node\n")
        self.assertEqual(errors, [])
        self.assertTrue(settings.enabled)
        self.assertEqual((settings.models_path, settings.saas_public_key_path,
                          settings.node_private_key_path),
                         ("models-enabled", "keys/saas_public.pem", "keys/node_private.pem"))
        self.assertEqual(filter_names(settings.filters),
                         ("websaas", "role", "mediaLimits", "audit"))
        self.assertEqual((settings.max_user_token_age, settings.max_request_size),
                         (3600.0, 2 << 30))
        self.assertEqual(settings.origin.line, 2)

    def test_turned_off(self) -> None:
        """``enabled: false`` keeps the section without serving it (no server id needed)."""
        settings, errors = self.read("pipelines:\n  enabled: false\n")
        self.assertEqual((settings.enabled, errors), (False, []))

    def test_every_key(self) -> None:
        """Each key reads into its setting."""
        settings, errors = self.read(
            "pipelines:\n  serverId: base64:node\n  modelsPath: m\n  jobsPath: /srv/jobs\n"
            "  saasPublicKeyPath: s.pem\n  nodePrivateKeyPath: n.pem\n"
            "  maxUserTokenAge: 10m\n  issuer: saas\n  audience: node\n"
            "  maxRequestSize: 64MiB\n  filters: [websaas, role, audit]\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.server_id, settings.models_path, settings.jobs_path,
                          settings.saas_public_key_path, settings.node_private_key_path),
                         ("base64:node", "m", "/srv/jobs", "s.pem", "n.pem"))
        self.assertEqual((settings.max_user_token_age, settings.issuer, settings.audience,
                          settings.max_request_size), (600.0, "saas", "node", 64 << 20))
        self.assertEqual(filter_names(settings.filters), ("websaas", "role", "audit"))

    def test_server_id_never_shown(self) -> None:
        """The server id, which signs replies, is not in the settings' repr."""
        settings, _ = self.read("pipelines:\n  serverId: base64:s3cr3t\n")
        self.assertNotIn("s3cr3t", repr(settings))

    def test_wrong_types_located(self) -> None:
        """Each wrong value is named at its line; the rest still reads."""
        settings, errors = self.read("pipelines:\n  serverId: x\n  modelsPath: [a]\n"
                                     "  maxRequestSize: huge\n")
        self.assertEqual(settings.models_path, "models-enabled")
        self.assertEqual(errors, [
            "settings.yaml:3: pipelines.modelsPath: expected a string, got a list",
            "settings.yaml:4: pipelines.maxRequestSize: expected a size such as 8KiB, 64MiB "
            "or 2GiB"])

    def test_unknown_key(self) -> None:
        """A misspelt key is an error at its line."""
        _, errors = self.read("pipelines:\n  serverId: x\n  modelPath: m\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("settings.yaml:3: pipelines.modelPath: unknown setting", errors[0])

    def test_missing_server_id_is_an_error(self) -> None:
        """A pipelines section without a server id names the setting to fix."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text("pipelines:\n  modelsPath: m\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(str(path), {}, dotenv_path=None)
        self.assertIn("pipelines.serverId: required", str(caught.exception))


class ModelSettingsTests(SynchronousTestCase):
    """Each model's timeout, concurrency and queue: defaults for all, overrides per model."""

    def read(self, text: str) -> tuple[PipelineSettings, list[str]]:
        return read_text(self, "pipelines:\n  serverId: x\n" + text, lambda root:
                         PipelineSettings.from_yaml(root.section("pipelines"), True))

    def test_defaults(self) -> None:
        """One job at a time, eight waiting, 1000 seconds each."""
        settings, errors = self.read("")
        self.assertEqual(errors, [])
        self.assertEqual(settings.model("any"), ModelSettings(1000.0, 1, 8))

    def test_overrides_inherit_the_section_defaults(self) -> None:
        """A model's own settings lie over the section's, which lie over the built-in ones."""
        settings, errors = self.read("  timeout: 2m\n  concurrency: 2\n  models:\n"
                                     "    audio-gain:\n      queueSize: 0\n")
        self.assertEqual(errors, [])
        self.assertEqual(settings.model("audio-gain"), ModelSettings(120.0, 2, 0))
        self.assertEqual(settings.model("text-stats"), ModelSettings(120.0, 2, 8))

    def test_rules(self) -> None:
        """A zero timeout, no concurrency or a misspelt key in an override are located."""
        _, errors = self.read("  models:\n    a:\n      timeout: 0s\n      concurrency: 0\n"
                              "      queue: 3\n")
        self.assertEqual(errors, [
            "settings.yaml:6: pipelines.models.a.concurrency: expected at least 1 and at most "
            "256, got 0",
            "settings.yaml:5: pipelines.models.a.timeout: must be longer than zero",
            "settings.yaml:7: pipelines.models.a.queue: unknown setting (check the spelling; "
            "see the settings reference)"])


    def test_bad_default_told_once(self) -> None:
        """A zero timeout in the section's defaults is told once, where it is written; the
        models that inherit it are not blamed for a key they do not have."""
        _, errors = self.read("  timeout: 0s\n  models:\n    a:\n      concurrency: 2\n")
        self.assertEqual(errors, ["settings.yaml:3: pipelines.timeout: must be longer than "
                                  "zero"])


class PipelineEnvironmentTests(SynchronousTestCase):
    """Variables the operator adds to every job's environment."""

    def test_environment(self) -> None:
        """Good names load; a name that is not a variable name is refused."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text("pipelines:\n  serverId: x\n  environment:\n"
                        "    CUDA_VISIBLE_DEVICES: '0'\n    PATH: /opt/venv/bin:/usr/bin\n")
        settings = load_settings(str(path), {}, dotenv_path=None)
        self.assertEqual(dict(settings.pipelines.environment),
                         {"CUDA_VISIBLE_DEVICES": "0", "PATH": "/opt/venv/bin:/usr/bin"})
        path.write_text("pipelines:\n  serverId: x\n  environment:\n    BAD-NAME: x\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(str(path), {}, dotenv_path=None)
        self.assertIn('pipelines.environment: "BAD-NAME" is not a usable', str(caught.exception))

    def test_nul_in_a_value_refused(self) -> None:
        """A value holding NUL cannot be put in a process environment."""
        _, errors = read_text(self, "pipelines:\n  serverId: x\n  environment:\n"
                              "    TOKEN: \"a\\0b\"\n", lambda root:
                              PipelineSettings.from_yaml(root.section("pipelines"), True))
        self.assertEqual(errors, ['settings.yaml:3: pipelines.environment: "TOKEN" is not a '
                                  'usable environment variable'])


class JobNicenessTests(SynchronousTestCase):
    """How much nicer than the gateway jobs run: 10 unless set, 0 to 19."""

    def load(self, extra: str) -> Settings:
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text(f"pipelines:\n  serverId: base64:x\n{extra}")
        return load_settings(str(path), {}, dotenv_path=None)

    def test_default_and_set(self) -> None:
        """10 unless set; 0 runs jobs as nice as the gateway."""
        self.assertEqual(self.load("").pipelines.job_niceness, 10)
        self.assertEqual(self.load("  jobNiceness: 0\n").pipelines.job_niceness, 0)

    def test_out_of_range_names_the_setting(self) -> None:
        """20 is past the range nice(1) knows: refused, naming the setting."""
        with self.assertRaises(ConfigErrors) as caught:
            self.load("  jobNiceness: 20\n")
        self.assertIn("pipelines.jobNiceness", str(caught.exception))
