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

A function, written as on the product page (``async def`` works too)::

    from flux_secrets import define_function

    @define_function(name="call_openai")
    def call_openai(input, ctx):
        api_key = ctx.secrets.get("OPENAI_API_KEY")
        region = ctx.env.get("AWS_REGION", "us-east-1")
        ...

    call_openai.invoke({"messages": []})
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
from ._function import (
    PROJECT_ENV,
    AsyncFunctionContext,
    FluxFunction,
    FunctionContext,
    define_function,
)
from ._sync import Secrets
from ._trust import DAEMON_USER_ENV

__version__ = VERSION

__all__ = [
    "AsyncFunctionContext",
    "AsyncSecrets",
    "CLIENT_NAME",
    "CODE_NAMES",
    "DAEMON_USER_ENV",
    "DaemonUnreachable",
    "FluxFunction",
    "FluxSecretsError",
    "FunctionContext",
    "PROJECT_ENV",
    "SOCKET_ENV",
    "SecretNotFound",
    "Secrets",
    "UntrustedSocket",
    "__version__",
    "define_function",
]
