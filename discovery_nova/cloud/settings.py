"""What a local cloud was asked to be, and where its files live.

The settings are saved in the state directory at ``up`` so that ``status``
and ``down`` (and a later ``up``) see the same cloud without repeating its
options.
"""

import dataclasses
import json
import os
from pathlib import Path
import secrets
import sys

from discovery_nova.cloud.layout import CloudLayout
from discovery_nova.cloud.layout import PopSpec

DATABASES = ('sqlite', 'mysql', 'postgresql')
TRANSPORTS = ('rabbit', 'p2p')
CONDUCTORS = ('nova', 'discovery')
DEFAULT_TRANSPORT = 'p2p'
DEFAULT_CONDUCTOR = 'discovery'
DEFAULT_BASE_PORT = 25000
DEFAULT_COMPUTES = 2
DEFAULT_COMPUTE_VCPUS = 16
DEFAULT_COMPUTE_RAM_MB = 16384
CLOUD_NAME = 'discovery'
#: nova's fake driver that keeps its node identity on disk, so that a
#: compute can be stopped and started again (fake.FakeDriver cannot).
DEFAULT_COMPUTE_DRIVER = 'fake.FakeDriverWithoutFakeNodes'


def default_state_dir() -> Path:
    """``$DISCOVERY_NOVA_STATE_DIR`` or the XDG state directory."""
    env = os.environ.get('DISCOVERY_NOVA_STATE_DIR')
    if env:
        return Path(env)
    xdg = os.environ.get('XDG_STATE_HOME') or os.path.join(
        os.path.expanduser('~'), '.local', 'state')
    return Path(xdg) / 'discovery-nova' / 'cloud'


def default_clouds_yaml() -> Path:
    """Where ``openstack --os-cloud`` looks first for the current user."""
    return Path(os.path.expanduser('~')) / '.config' / 'openstack' / \
        'clouds.yaml'


@dataclasses.dataclass
class CloudSettings:
    """Everything ``up`` decides once; saved as ``settings.json``."""

    state_dir: Path
    layout: CloudLayout
    database: str = 'sqlite'
    transport: str = DEFAULT_TRANSPORT
    conductor: str = DEFAULT_CONDUCTOR
    computes_per_pop: int = DEFAULT_COMPUTES
    #: vCPUs and MiB of RAM each compute offers to placement (the fake
    #: driver's huge host is cut down by reserving the rest), so that a PoP
    #: fills up after a known number of servers.
    compute_vcpus: int = DEFAULT_COMPUTE_VCPUS
    compute_ram_mb: int = DEFAULT_COMPUTE_RAM_MB
    compute_driver: str = DEFAULT_COMPUTE_DRIVER
    nova_conf_extra: list[Path] = dataclasses.field(default_factory=list)
    clouds_yaml: Path | None = None
    rabbit_url: str = 'rabbit://guest:guest@127.0.0.1:5672'
    mysql_url: str = 'mysql+pymysql://root@127.0.0.1:3306'
    postgresql_url: str = 'postgresql+psycopg2://postgres@127.0.0.1:5432'
    admin_password: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(12))
    service_password: str = dataclasses.field(
        default_factory=lambda: secrets.token_urlsafe(12))

    def __post_init__(self):
        if self.database not in DATABASES:
            raise ValueError('database %r is not one of %s'
                             % (self.database, ', '.join(DATABASES)))
        if self.transport not in TRANSPORTS:
            raise ValueError('transport %r is not one of %s'
                             % (self.transport, ', '.join(TRANSPORTS)))
        if self.conductor not in CONDUCTORS:
            raise ValueError('conductor %r is not one of %s'
                             % (self.conductor, ', '.join(CONDUCTORS)))
        if not 1 <= self.compute_vcpus <= 1000:
            raise ValueError('vCPUs per compute must be 1-1000, got %d'
                             % self.compute_vcpus)
        if not 128 <= self.compute_ram_mb <= 800000:
            raise ValueError('RAM per compute must be 128-800000 MiB, got %d'
                             % self.compute_ram_mb)
        if not 1 <= self.computes_per_pop <= 20:
            raise ValueError('computes per PoP must be 1-20, got %d'
                             % self.computes_per_pop)

    # Paths -----------------------------------------------------------
    @property
    def keystone_dir(self) -> Path:
        return self.state_dir / 'keystone'

    @property
    def glance_dir(self) -> Path:
        return self.state_dir / 'glance'

    @property
    def log_dir(self) -> Path:
        return self.state_dir / 'logs'

    @property
    def run_dir(self) -> Path:
        return self.state_dir / 'run'

    def pop_dir(self, pop: PopSpec) -> Path:
        return self.state_dir / 'pops' / pop.name

    @property
    def settings_file(self) -> Path:
        return self.state_dir / 'settings.json'

    # URLs ------------------------------------------------------------
    @property
    def keystone_url(self) -> str:
        return 'http://%s:%d/v3' % (self.layout.host,
                                    self.layout.keystone_port)

    @property
    def glance_url(self) -> str:
        return 'http://%s:%d' % (self.layout.host, self.layout.glance_port)

    @property
    def network_url(self) -> str:
        return 'http://%s:%d' % (self.layout.host, self.layout.network_port)

    def nova_url(self, pop: PopSpec) -> str:
        return 'http://%s:%d/v2.1' % (self.layout.host, pop.nova_api_port)

    def placement_url(self, pop: PopSpec) -> str:
        return 'http://%s:%d' % (self.layout.host, pop.placement_port)

    @property
    def db_prefix(self) -> str:
        """Database names of this cloud on a shared MariaDB/PostgreSQL.

        The base port is in the prefix: two clouds on one machine need
        distinct ports anyway, so they also get distinct databases.
        """
        return 'dn%d' % self.layout.keystone_port

    def vhost(self, pop: PopSpec) -> str:
        return '%s-%s' % (self.db_prefix, pop.name)

    def compute_hosts(self, pop: PopSpec) -> list[str]:
        return ['%s-cmp%d' % (pop.name, i + 1)
                for i in range(self.computes_per_pop)]

    def control_host(self, pop: PopSpec) -> str:
        return '%s-ctl' % pop.name

    @property
    def bin_dir(self) -> Path:
        """The console scripts beside this interpreter (the venv's bin)."""
        return Path(sys.executable).parent

    # Persistence -----------------------------------------------------
    def to_json(self) -> dict:
        data = dataclasses.asdict(self)
        data['state_dir'] = str(self.state_dir)
        data['nova_conf_extra'] = [str(p) for p in self.nova_conf_extra]
        data['clouds_yaml'] = (str(self.clouds_yaml)
                               if self.clouds_yaml else None)
        return data

    @classmethod
    def from_json(cls, data: dict) -> 'CloudSettings':
        layout = dict(data['layout'])
        layout['pops'] = tuple(PopSpec(**p) for p in layout['pops'])
        fields = dict(data)
        fields['layout'] = CloudLayout(**layout)
        fields['state_dir'] = Path(data['state_dir'])
        fields['nova_conf_extra'] = [Path(p)
                                     for p in data['nova_conf_extra']]
        fields['clouds_yaml'] = (Path(data['clouds_yaml'])
                                 if data.get('clouds_yaml') else None)
        return cls(**fields)

    def save(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.settings_file.with_suffix('.tmp')
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, 'w') as out:
            json.dump(self.to_json(), out, indent=2)
        os.replace(tmp, self.settings_file)

    @classmethod
    def load(cls, state_dir: Path) -> 'CloudSettings | None':
        path = Path(state_dir) / 'settings.json'
        if not path.exists():
            return None
        try:
            with open(path) as src:
                return cls.from_json(json.load(src))
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError('%s is not a cloud settings file this version '
                             'understands (%s); remove the state directory '
                             'after checking nothing of it still runs'
                             % (path, exc)) from exc
