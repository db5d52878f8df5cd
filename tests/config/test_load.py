"""Loading settings: runner-gateway's files unchanged, overlays, environment, and clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.filters import filter_names
from runnergw.config.load import config_path_from, load_settings, read_settings
from tests.helpers.reference import reference_file

_GOOD = """\
logging:
  level: debug
paseto:
  version: v4
  expiration: 8766h
  keyPath: ./settings/paseto.key
  publicPath: ./settings/paseto.pub
runners:
  - host: 127.0.0.1:11434
    name: ollama
    path: /local-ollama
    scheme: http
server:
  address: "127.0.0.1:8443"
  readTimeoutSeconds: 5s
  writeTimeoutSeconds: 1m30s
"""


class LoadSettingsTests(SynchronousTestCase):
    """``load_settings`` reads files, overlays and environment overrides."""

    def write(self, text: str, name: str = "settings.yaml") -> str:
        directory = Path(self.mktemp())
        directory.mkdir(exist_ok=True, parents=True)
        path = directory / name
        path.write_text(text)
        return str(path)

    def errors(self, text: str, environ: dict[str, str] | None = None) -> list[str]:
        path = self.write(text)
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(path, environ or {})
        return [str(error) for error in caught.exception.errors]

    def test_runner_gateway_style_file(self) -> None:
        """camelCase keys and Go durations load into typed settings."""
        settings = load_settings(self.write(_GOOD), {})
        self.assertEqual(settings.logging.level, "debug")
        self.assertEqual(settings.paseto.expiration, 8766 * 3600)
        self.assertEqual(settings.paseto.public_paths, ("./settings/paseto.pub",))
        self.assertEqual(settings.server.read_timeout, 5.0)
        self.assertEqual(settings.server.write_timeout, 90.0)
        runner = settings.runners[0]
        self.assertEqual((runner.host, runner.port, runner.path),
                         ("127.0.0.1", 11434, "/local-ollama"))
        self.assertEqual(runner.prefix_segments, ("local-ollama",))
        self.assertEqual(filter_names(runner.filters), ("token", "role", "rewrite", "audit"))

    def test_runner_gateway_sample_loads_unchanged(self) -> None:
        """runner-gateway's own sample settings.yaml loads without a single change."""
        sample = reference_file("runner-gateway", "settings.yaml")
        copy = Path(self.mktemp())
        copy.mkdir()
        shutil.copy(sample, copy / "settings.yaml")
        settings = load_settings(str(copy / "settings.yaml"), {})
        self.assertEqual(settings.paseto.version, "v4")
        self.assertEqual(settings.runners[0].path, "/")
        self.assertEqual(settings.server.address.port, 8443)
        self.assertEqual(settings.server.read_timeout, 5.0)
        # Loading works; listening in plain HTTP on every interface is what startup refuses.
        self.assertIn("refusing to listen", settings.server.plaintext_refusal() or "")

    def test_environment_overrides(self) -> None:
        """runner-gateway's environment variables win over the file."""
        settings = load_settings(self.write(_GOOD), {
            "SERVER_ADDRESS": ":9443",
            "PASETO_SECRET_KEY": "ab" * 32,
            "LOGGING_LEVEL": "warn",
            "SERVER_CERTIFICATE_PATH": "/etc/x/fullchain.cer",
            "SERVER_KEY_PATH": "/etc/x/key.pem",
        })
        self.assertEqual(settings.server.address.port, 9443)
        self.assertEqual(settings.server.address.host, "")
        self.assertEqual(settings.paseto.secret_key, "ab" * 32)
        self.assertEqual(settings.logging.level, "warn")
        self.assertTrue(settings.server.tls_enabled)

    def test_bad_environment_value_names_the_variable(self) -> None:
        """A bad value from the environment is reported against that variable."""
        errors = self.errors(_GOOD, {"SERVER_ADDRESS": "nonsense"})
        self.assertEqual(len(errors), 1)
        self.assertIn("environment variable SERVER_ADDRESS: server.address:", errors[0])

    def test_go_env_overlay(self) -> None:
        """GO_ENV=my-domain lays my-domain.yaml over settings.yaml, as runner-gateway did."""
        base = self.write(_GOOD)
        Path(base).with_name("my-domain.yaml").write_text(
            "server:\n  address: 127.0.0.1:9000\nlogging:\n  level: error\n")
        settings = load_settings(base, {"GO_ENV": "my-domain"})
        self.assertEqual(settings.server.address.port, 9000)
        self.assertEqual(settings.logging.level, "error")
        self.assertEqual(settings.server.read_timeout, 5.0)
        self.assertEqual(len(settings.files), 2)

    def test_overlay_errors_point_at_the_overlay(self) -> None:
        """A mistake in the overlay file names the overlay file and its line."""
        base = self.write(_GOOD)
        overlay = Path(base).with_name("prod.yaml")
        overlay.write_text("server:\n  readTimeoutSeconds: soon\n")
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(base, {"GO_ENV": "prod"})
        self.assertEqual(str(caught.exception.errors[0]),
                         f"{overlay}:2: server.readTimeoutSeconds: expected a duration such as "
                         "5s, 10m or 8766h (units ns us ms s m h)")

    def test_every_problem_listed_with_file_path_and_line(self) -> None:
        """Several mistakes are reported together, each with file, line and YAML path."""
        errors = self.errors(
            "server:\n  adress: x\nrunners:\n  - host: 127.0.0.1:11434\n    path: /a\n"
            "  - host: 127.0.0.1:11435\n    path: /b\n    scheme: ftp\n"
        )
        joined = "\n".join(errors)
        self.assertIn(":2: server.adress: unknown setting", joined)
        self.assertIn(":8: runners[1].scheme: expected one of http, https; got \"ftp\"", joined)
        self.assertEqual(len(errors), 2)

    def test_unknown_keys_are_errors_everywhere(self) -> None:
        """A typo in any section, or a runner, is an error instead of a silent no-op."""
        errors = self.errors(_GOOD.replace("    scheme: http\n", "    schema: http\n")
                             + "extra:\n  x: 1\n")
        joined = "\n".join(errors)
        self.assertIn("runners[0].schema: unknown setting", joined)
        self.assertIn("extra: unknown setting", joined)

    def test_missing_file(self) -> None:
        """A missing settings file is one clear error naming it."""
        with self.assertRaises(ConfigErrors) as caught:
            load_settings("/nonexistent/settings.yaml", {})
        self.assertIn("/nonexistent/settings.yaml: cannot read settings file",
                      str(caught.exception))

    def test_value_types_checked(self) -> None:
        """Wrong types are refused with what was expected."""
        errors = self.errors(
            "runners:\n  - host: 127.0.0.1:1\n    maxConnections: lots\n    filters: [token, 3]\n"
            "server:\n  allowPlaintext: maybe\n")
        joined = "\n".join(errors)
        self.assertIn("runners[0].maxConnections: expected a whole number", joined)
        self.assertIn("runners[0].filters[1]: expected a filter name or {name: options}, "
                      "got 3", joined)
        self.assertIn("server.allowPlaintext: expected true or false", joined)

    def test_config_path_choice(self) -> None:
        """--config wins over RUNNERGW_CONFIG, which wins over the default."""
        self.assertEqual(config_path_from("a.yaml", {"RUNNERGW_CONFIG": "b.yaml"}), "a.yaml")
        self.assertEqual(config_path_from(None, {"RUNNERGW_CONFIG": "b.yaml"}), "b.yaml")
        self.assertEqual(config_path_from(None, {}), "settings/settings.yaml")

    def test_shipped_default_settings_load(self) -> None:
        """The settings file shipped with the project loads and listens on loopback."""
        shipped = Path(__file__).resolve().parents[2] / "settings" / "settings.yaml"
        settings = load_settings(str(shipped), {})
        self.assertTrue(settings.server.address.is_loopback())
        self.assertIsNone(settings.server.plaintext_refusal())


class ReadSettingsTests(SynchronousTestCase):
    """``read_settings`` gives what it could read beside the problems, for ``check``."""

    def write(self, text: str) -> str:
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text(text)
        return str(path)

    def test_partly_read_settings_come_with_every_problem(self) -> None:
        """A bad value reads as its default, the rest as written; load_settings refuses the
        same file with the same problems."""
        path = self.write("pipelines:\n  modelsPath: models\n  jobNiceness: lots\n"
                          "server:\n  address: 127.0.0.1:9000\n")
        settings, errors = read_settings(path, {}, dotenv_path=None)
        assert settings is not None
        self.assertEqual(settings.pipelines.models_path, "models")
        self.assertTrue(settings.pipelines.enabled)
        self.assertEqual(settings.pipelines.job_niceness, 10)
        self.assertEqual(str(settings.server.address), "127.0.0.1:9000")
        self.assertEqual([str(error) for error in errors], [
            f"{path}:3: pipelines.jobNiceness: expected a whole number, got \"lots\"",
            f"{path}:2: pipelines.serverId: required: the id agreed with the SaaS (runnergw "
            "server-id makes one; SERVER_ID in the environment works too)",
        ])
        with self.assertRaises(ConfigErrors) as caught:
            load_settings(path, {}, dotenv_path=None)
        self.assertEqual([str(error) for error in caught.exception.errors],
                         [str(error) for error in errors])

    def test_no_settings_without_a_file(self) -> None:
        """A file that cannot be parsed gives no settings, only its problem."""
        settings, errors = read_settings(self.write("server: [\n"), {}, dotenv_path=None)
        self.assertIsNone(settings)
        self.assertEqual(len(errors), 1)
        self.assertIn("invalid YAML", str(errors[0]))

    def test_good_settings_have_no_problems(self) -> None:
        """A good file reads with an empty problem list."""
        path = self.write(_GOOD)
        settings, errors = read_settings(path, {}, dotenv_path=None)
        self.assertEqual(errors, [])
        self.assertEqual(settings, load_settings(path, {}, dotenv_path=None))


class DotenvTests(SynchronousTestCase):
    """The WebSaaS node's .env file and variable names keep working."""

    def test_dotenv_names(self) -> None:
        """SERVER_ID, SAAS_PUBLIC_KEY_PATH and FASTAPI_PRIVATE_KEY_PATH come from .env;
        the environment wins over the file."""
        directory = Path(self.mktemp())
        directory.mkdir()
        settings_path = directory / "settings.yaml"
        settings_path.write_text("pipelines:\n  modelsPath: models-enabled\n")
        dotenv = directory / ".env"
        dotenv.write_text(
            "# the node's settings\nSAAS_PUBLIC_KEY_PATH=keys/saas_public.pem\n"
            "export FASTAPI_PRIVATE_KEY_PATH='keys/fastapi_private.pem'\n"
            'SERVER_ID="base64:from-dotenv"\n')
        settings = load_settings(str(settings_path), {}, dotenv_path=str(dotenv))
        pipelines = settings.pipelines
        self.assertTrue(pipelines.enabled)
        self.assertEqual(pipelines.server_id, "base64:from-dotenv")
        self.assertEqual(pipelines.node_private_key_path, "keys/fastapi_private.pem")
        overridden = load_settings(str(settings_path), {"SERVER_ID": "base64:env"},
                                   dotenv_path=str(dotenv))
        self.assertEqual(overridden.pipelines.server_id, "base64:env")

    def test_server_id_alone_does_not_enable_pipelines(self) -> None:
        """SERVER_ID in the environment without a pipelines section leaves pipelines off."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text("runners:\n  - host: 127.0.0.1:11434\n")
        settings = load_settings(str(path), {"SERVER_ID": "base64:x"}, dotenv_path=None)
        self.assertFalse(settings.pipelines.enabled)
