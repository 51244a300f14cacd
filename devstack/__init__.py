"""The development stack: Redis Stack, Azurite (Azure Blob emulator), a Prefect server and the provider stand-ins,
run as local processes. Not part of the pipeline: nothing in ``headwater/``, ``streamer/``, ``flows/``,
``features/`` or ``expectations/`` imports it.

The embedded stack is the default for development, tests and the demo. Each service is skipped when its
external configuration is set, with the same names ``headwater.settings`` reads:

* Redis   -- ``HEADWATER_REDIS_URL`` / ``REDIS_URL`` (any Redis with the TimeSeries, Search, JSON and Bloom
  modules: Redis Stack, Redis 8, Azure Managed Redis, Redis Cloud);
* Blob    -- ``HEADWATER_BLOB_CONNECTION_STRING`` / ``AZURE_STORAGE_CONNECTION_STRING``;
* Prefect -- ``PREFECT_API_URL``.

``up`` writes the embedded services' endpoints to ``$HEADWATER_HOME/services.env``, which the core's settings
read when the environment does not set them; ``down`` removes it. State (data, logs, the install's Redis
password, ``services.json``) lives in ``$HEADWATER_HOME``, by default ``<repo>/.headwater`` (git-ignored).

CLI: ``python -m devstack {up,down,status,env,ensure-libs}`` (see ``--help``).

Modules: ``process`` (launch, wait, stop), ``openssl`` (OpenSSL 1.1 for the Redis binaries), ``redis_stack``
(one server or a cluster), ``azurite``, ``prefect_server``, ``standins``, ``state`` (services.json,
services.env, the Redis password) and ``stack`` (up / down / status / resolve).
"""

from devstack.azurite import AZURITE_ACCOUNT, AZURITE_KEY, azurite_connection_string, start_azurite
from devstack.prefect_server import start_prefect
from devstack.process import LOOPBACK, PortInUseError, ServiceError, ServiceHandle, free_port
from devstack.redis_stack import ClusterHandle, ensure_libs, redis_server_binary, start_redis, start_redis_cluster
from devstack.stack import EXTERNAL_ENV, SERVICES, Endpoints, down, resolve, status, up
from devstack.standins import start_standins
from devstack.state import ServicesNotRunningError, redis_password

__all__ = [
    "AZURITE_ACCOUNT", "AZURITE_KEY", "EXTERNAL_ENV", "LOOPBACK", "SERVICES", "ClusterHandle", "Endpoints",
    "PortInUseError", "ServiceError", "ServiceHandle", "ServicesNotRunningError", "azurite_connection_string",
    "down", "ensure_libs", "free_port", "redis_password", "redis_server_binary", "resolve", "start_azurite",
    "start_prefect", "start_redis", "start_redis_cluster", "start_standins", "status", "up",
]  # fmt: skip
