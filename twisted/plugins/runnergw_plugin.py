"""twistd plugin: ``twistd -n runnergw --config settings/my-domain.yaml``."""

from twisted.application.service import ServiceMaker

runnergw = ServiceMaker(
    "runnergw",
    "runnergw.tap",
    "A TLS gateway for Ollama and command-line model runners.",
    "runnergw",
)
