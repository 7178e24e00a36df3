"""flux-secrets: the Python client for Flux Secrets.

Reads a project's secrets from ``fluxd`` over the project's Unix socket
(``FLUX_SECRETS_SOCKET``)::

    from flux_secrets import Secrets

    secrets = Secrets()                                 # FLUX_SECRETS_SOCKET
    api_key = secrets.get("OPENAI_API_KEY")             # raises SecretNotFound if not set
    region = secrets.get("AWS_REGION", "us-east-1")     # the default only when not set

and with asyncio::

    from flux_secrets import AsyncSecrets

    secrets = AsyncSecrets()
    api_key = await secrets.get("OPENAI_API_KEY")
"""

from ._async import AsyncSecrets
from ._common import CLIENT_NAME, SOCKET_ENV, VERSION
from ._errors import (
    CODE_NAMES,
    DaemonUnreachable,
    FluxSecretsError,
    SecretNotFound,
    UntrustedSocket,
)
from ._sync import Secrets
from ._trust import DAEMON_USER_ENV

__version__ = VERSION

__all__ = [
    "AsyncSecrets",
    "CLIENT_NAME",
    "CODE_NAMES",
    "DAEMON_USER_ENV",
    "DaemonUnreachable",
    "FluxSecretsError",
    "SOCKET_ENV",
    "SecretNotFound",
    "Secrets",
    "UntrustedSocket",
    "__version__",
]
