"""Bring a local multi-PoP cloud up, report on it, and bring it down.

``up`` is a sequence an operator would follow by hand: render configs,
create databases and message-bus vhosts, run the services' own ``-manage``
tools, bootstrap keystone and register every PoP as a region, start the
services, wait until nova reports every service up, map the computes to
their cell, then add a flavor and an image and write ``clouds.yaml``.
"""

from collections.abc import Callable
import concurrent.futures
import datetime
import getpass
import grp
import importlib.metadata
import importlib.util
import os
from pathlib import Path
import shutil
import subprocess
import sys
import time

from keystoneauth1 import exceptions as ks_exc
from oslo_log import log as logging
import yaml

from discovery_nova.cloud import catalog
from discovery_nova.cloud import config_files
from discovery_nova.cloud import health
from discovery_nova.cloud import layout as layout_mod
from discovery_nova.cloud import services
from discovery_nova.cloud import sqlite_locking
from discovery_nova.cloud.settings import CLOUD_NAME
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import Supervisor
from discovery_nova.cloud.supervisor import group_members

LOG = logging.getLogger(__name__)

FLAVORS = {'dn.tiny': {'ram': 64, 'vcpus': 1, 'disk': 1},
           'dn.small': {'ram': 512, 'vcpus': 1, 'disk': 1}}
IMAGE_NAME = 'discovery-tiny'
IMAGE_BYTES = 1024 * 1024
TOOL_TIMEOUT = 600.0
START_TIMEOUT = 600.0


class CloudError(RuntimeError):
    """The cloud cannot be brought up, or is not in the expected state."""


class Progress:
    """Start-up progress, one line per step, with the elapsed time."""

    def __init__(self, stream=None, quiet: bool = False):
        self.stream = stream or sys.stdout
        self.quiet = quiet
        self.started = time.monotonic()
        self.answered: set[str] = set()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            self.stream.write('[%6.1fs] %s\n'
                              % (time.monotonic() - self.started, message))
            self.stream.flush()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started


def run_tool(argv: list[str], log_path: Path, env: dict | None = None,
             timeout: float = TOOL_TIMEOUT) -> None:
    """Run a one-shot admin command, its output appended to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    with open(log_path, 'ab') as log:
        log.write(('\n$ %s\n' % ' '.join(argv)).encode())
        log.flush()
        try:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT,
                                  stdin=subprocess.DEVNULL, env=full_env,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise CloudError('%s did not finish within %ds; see %s'
                             % (' '.join(argv[:3]), timeout,
                                log_path)) from exc
    if done.returncode != 0:
        tail = log_path.read_text(errors='replace').splitlines()[-15:]
        raise CloudError('%s failed with exit code %d; last lines of %s:\n%s'
                         % (' '.join(argv[:4]), done.returncode, log_path,
                            '\n'.join(tail)))


def wait_until(predicate: Callable[[], bool], timeout: float, what: str,
               interval: float = 1.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return
        if time.monotonic() > deadline:
            raise CloudError('timed out after %ds waiting for %s'
                             % (timeout, what))
        time.sleep(interval)


# Pre-flight checks --------------------------------------------------------

def check_prerequisites(settings: CloudSettings) -> None:
    """Fail before starting anything if the cloud cannot come up."""
    if settings.transport == 'p2p':
        found = importlib.metadata.entry_points(
            group='oslo.messaging.drivers', name='p2p')
        if not found:
            raise CloudError(
                '--transport p2p needs the p2p oslo.messaging driver, which '
                'is not installed (no "p2p" entry point in '
                'oslo.messaging.drivers); use --transport rabbit')
    if settings.transport == 'rabbit' and not shutil.which('rabbitmqctl'):
        raise CloudError('--transport rabbit creates one vhost per PoP with '
                         'rabbitmqctl, which is not on PATH')
    drivers = {'mysql': ('pymysql', 'PyMySQL'),
               'postgresql': ('psycopg2', 'psycopg2-binary')}
    if settings.database in drivers:
        module, package = drivers[settings.database]
        if importlib.util.find_spec(module) is None:
            raise CloudError('--database %s needs the %s module: pip install '
                             '%s' % (settings.database, module, package))
    # Raises MissingProgram naming the console script (conductor switch).
    services.all_specs(settings)
    taken = layout_mod.taken_ports(settings.layout)
    if taken:
        raise CloudError(
            'port(s) already in use on %s: %s; stop what listens there or '
            'choose another --base-port'
            % (settings.layout.host,
               ', '.join('%d (%s)' % (port, label)
                         for label, port in sorted(taken.items(),
                                                   key=lambda kv: kv[1]))))


# Databases and message bus -----------------------------------------------

def all_databases(settings: CloudSettings) -> list[str]:
    urls = list(config_files.shared_databases(settings).values())
    for pop in settings.layout.pops:
        urls.extend(config_files.pop_databases(settings, pop).values())
    return urls


def _run_on_each_database(settings: CloudSettings, create: bool) -> None:
    """Drop every database of the cloud on its MariaDB/PostgreSQL server,
    and create it again empty when ``create``. Raises SQLAlchemyError."""
    import sqlalchemy
    engine = sqlalchemy.create_engine(_database_server(settings),
                                      isolation_level='AUTOCOMMIT')
    quote = '`' if settings.database == 'mysql' else '"'
    try:
        with engine.connect() as conn:
            for url in all_databases(settings):
                name = '%s%s%s' % (
                    quote, sqlalchemy.engine.make_url(url).database, quote)
                conn.execute(sqlalchemy.text(
                    'DROP DATABASE IF EXISTS %s' % name))
                if create:
                    conn.execute(sqlalchemy.text('CREATE DATABASE %s' % name))
    finally:
        engine.dispose()


def _database_server(settings: CloudSettings) -> str:
    return (settings.mysql_url if settings.database == 'mysql'
            else settings.postgresql_url + '/postgres')


def recreate_databases(settings: CloudSettings) -> None:
    """Fresh, empty databases on MariaDB/PostgreSQL (sqlite needs none)."""
    if settings.database == 'sqlite':
        return
    import sqlalchemy
    try:
        _run_on_each_database(settings, create=True)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise CloudError('cannot create the databases on %s: %s'
                         % (_database_server(settings), exc)) from exc


def drop_databases(settings: CloudSettings) -> None:
    if settings.database == 'sqlite':
        return
    import sqlalchemy
    try:
        _run_on_each_database(settings, create=False)
    except sqlalchemy.exc.SQLAlchemyError as exc:
        LOG.warning("could not drop the databases on %(server)s: %(err)s",
                    {'server': _database_server(settings), 'err': exc})


def _rabbitmqctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['rabbitmqctl', '-q'] + list(args),
                          capture_output=True, text=True, timeout=120,
                          check=False)


def recreate_vhosts(settings: CloudSettings) -> None:
    """One empty RabbitMQ vhost per PoP, usable by the URL's user."""
    if settings.transport != 'rabbit':
        return
    user = settings.rabbit_url.split('://', 1)[1].split(':', 1)[0]
    for pop in settings.layout.pops:
        vhost = settings.vhost(pop)
        _rabbitmqctl('delete_vhost', vhost)
        for args in (('add_vhost', vhost),
                     ('set_permissions', '-p', vhost, user,
                      '.*', '.*', '.*')):
            done = _rabbitmqctl(*args)
            if done.returncode != 0:
                raise CloudError('rabbitmqctl %s failed: %s'
                                 % (' '.join(args),
                                    (done.stderr or done.stdout).strip()))


def delete_vhosts(settings: CloudSettings) -> None:
    if settings.transport != 'rabbit':
        return
    for pop in settings.layout.pops:
        _rabbitmqctl('delete_vhost', settings.vhost(pop))


# One-shot set-up tools ----------------------------------------------------

def setup_keystone(settings: CloudSettings) -> None:
    tool = services.find_program(settings, 'keystone-manage')
    conf = ['--config-file', str(settings.keystone_dir / 'keystone.conf')]
    log = settings.log_dir / 'keystone-manage.log'
    user = getpass.getuser()
    group = grp.getgrgid(os.getgid()).gr_name
    owner = ['--keystone-user', user, '--keystone-group', group]
    run_tool([tool] + conf + ['db_sync'], log)
    run_tool([tool] + conf + ['fernet_setup'] + owner, log)
    run_tool([tool] + conf + ['credential_setup'] + owner, log)
    url = settings.keystone_url
    run_tool([tool] + conf + [
        # One argument: a generated password may start with "-", which
        # keystone-manage would otherwise take for an option.
        'bootstrap', '--bootstrap-password=' + settings.admin_password,
        '--bootstrap-admin-url', url, '--bootstrap-internal-url', url,
        '--bootstrap-public-url', url,
        '--bootstrap-region-id', settings.layout.pops[0].name], log)


def setup_glance(settings: CloudSettings) -> None:
    tool = services.find_program(settings, 'glance-manage')
    run_tool([tool, '--config-file',
              str(settings.glance_dir / 'glance-api.conf'), 'db_sync'],
             settings.log_dir / 'glance-manage.log')


def setup_nova(settings: CloudSettings, pop) -> None:
    """API database, cell0 and cell1 of one PoP, as nova-manage does it."""
    cell0 = config_files.pop_databases(settings, pop)['nova_cell0']
    run_tool([sys.executable, '-m', 'discovery_nova.cloud.nova_setup',
              str(settings.pop_dir(pop) / 'nova.conf'), cell0],
             settings.log_dir / ('%s.nova-manage.log' % pop.name),
             env={sqlite_locking.ENV_FLAG: '1'}
             if settings.database == 'sqlite' else None)


def mapped_hosts(settings: CloudSettings, pop) -> set[str]:
    """Compute hosts mapped to a cell in this PoP's API database.

    The scheduler maps new computes every
    ``[scheduler] discover_hosts_in_cells_interval`` seconds, as
    ``nova-manage cell_v2 discover_hosts`` would; this is the table both
    write (what ``nova-manage cell_v2 list_hosts`` reads).
    """
    import sqlalchemy
    url = config_files.pop_databases(settings, pop)['nova_api']
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text(
                'SELECT host FROM host_mappings')).fetchall()
    except sqlalchemy.exc.SQLAlchemyError:
        return set()
    finally:
        engine.dispose()
    return {row[0] for row in rows}


def prepare_sqlite(settings: CloudSettings) -> None:
    """Put every sqlite database in WAL mode.

    Several processes of a PoP write the same cell and placement files;
    with the default rollback journal a writer blocks readers and busy
    services fail with "database is locked". WAL lets readers go on while
    one process writes, and the mode stays with the file.
    """
    if settings.database != 'sqlite':
        return
    import sqlite3
    for url in all_databases(settings):
        path = url.split('sqlite:///', 1)[1].split('?', 1)[0]
        conn = sqlite3.connect(path)
        try:
            conn.execute('PRAGMA journal_mode=WAL')
        finally:
            conn.close()


def run_parallel(jobs: dict[str, Callable[[], None]], progress: Progress,
                 workers: int = 3) -> None:
    """Run independent set-up jobs; the first failure is raised."""
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        futures = {pool.submit(job): label for label, job in jobs.items()}
        for future in concurrent.futures.as_completed(futures):
            future.result()
            progress('%s: done' % futures[future])


# Content: flavors, image, clouds.yaml -------------------------------------

def create_flavors(settings: CloudSettings, sess) -> None:
    for pop in settings.layout.pops:
        url = settings.nova_url(pop) + '/flavors'
        existing = {f['name'] for f in sess.get(url).json()['flavors']}
        for name, spec in FLAVORS.items():
            if name not in existing:
                sess.post(url, json={'flavor': dict(spec, name=name)})


def upload_image(settings: CloudSettings, sess) -> str:
    """A tiny raw image in the shared glance; its id."""
    base = settings.glance_url + '/v2/images'
    found = sess.get(base, params={'name': IMAGE_NAME}).json()['images']
    active = [img for img in found if img['status'] == 'active']
    if active:
        return active[0]['id']
    image = sess.post(base, json={
        'name': IMAGE_NAME, 'disk_format': 'raw', 'container_format': 'bare',
        'visibility': 'public', 'min_ram': 0, 'min_disk': 0}).json()
    sess.put('%s/%s/file' % (base, image['id']), data=bytes(IMAGE_BYTES),
             headers={'Content-Type': 'application/octet-stream',
                      'Content-Length': str(IMAGE_BYTES)})
    return image['id']


def register_pops(settings: CloudSettings, sess, topology=None) -> None:
    """Every PoP's aggregate, with coordinates, in every PoP's nova.

    A PoP's own aggregate holds its compute hosts and is its availability
    zone; the others' are its directory of the federation.
    """
    import openstack.connection

    from discovery_nova.cloud import pop_registry
    from discovery_nova.scheduler.sync import AggregateSync

    if topology is None:
        from discovery_nova.sim.topology import PlanetLabTopology
        topology = PlanetLabTopology()
    descriptors = pop_registry.describe_pops(settings.layout, topology)
    for pop in settings.layout.pops:
        conn = openstack.connection.Connection(
            session=sess, region_name=pop.name, compute_api_version='2.1')
        sync = AggregateSync(conn.compute)
        for descriptor in descriptors:
            own = descriptor.name == pop.name
            sync.sync(descriptor,
                      hosts=settings.compute_hosts(pop) if own else ())


def clouds_yaml_entry(settings: CloudSettings) -> dict:
    return {
        'auth': {'auth_url': settings.keystone_url, 'username': 'admin',
                 'password': settings.admin_password,
                 'project_name': 'admin', 'user_domain_name': 'Default',
                 'project_domain_name': 'Default'},
        # Each region's overlay agent, and the key that opens them all, for
        # "openstack discovery server locate" (operators only: the key is
        # the deployment's secret, as the admin password is).
        'regions': [{'name': pop.name, 'values': {
            'discovery_overlay_agent': '%s:%d' % (settings.layout.host,
                                                  pop.overlay_port)}}
            if pop.overlay_port else pop.name
            for pop in settings.layout.pops],
        'discovery_overlay_key_file': str(
            config_files.p2p_key_file(settings)),
        'identity_api_version': 3,
        'interface': 'public',
    }


def write_clouds_yaml(path: Path, entry: dict) -> None:
    """Add or replace the ``discovery`` cloud, keeping any other clouds."""
    data = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise CloudError('%s is not valid YAML (%s); fix it or pass '
                             '--clouds-yaml elsewhere' % (path, exc)) from exc
        if not isinstance(data, dict):
            raise CloudError('%s does not hold a "clouds:" mapping' % path)
    data.setdefault('clouds', {})[CLOUD_NAME] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + '.tmp')
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as out:
        yaml.safe_dump(data, out, default_flow_style=False)
    os.replace(tmp, path)


# The commands --------------------------------------------------------------

def supervisor_for(settings: CloudSettings) -> Supervisor:
    return Supervisor(settings.run_dir, settings.log_dir)


def running(state_dir: Path) -> dict:
    """Services of the cloud in ``state_dir`` that still run."""
    return Supervisor(Path(state_dir) / 'run',
                      Path(state_dir) / 'logs').alive()


def _reset_state_dir(settings: CloudSettings) -> None:
    """Remove what a previous, stopped cloud left in the state directory."""
    for sub in ('keystone', 'glance', 'pops', 'logs', 'run'):
        shutil.rmtree(settings.state_dir / sub, ignore_errors=True)
    for name in ('settings.json', 'clouds.yaml', 'p2p-deployment.key'):
        (settings.state_dir / name).unlink(missing_ok=True)


def _wait_healthy(settings, specs, sup, progress, timeout,
                  since: str | None = None) -> None:
    """Wait until every spec runs, its API answers and nova says it is up.

    ``since`` (UTC, ISO 8601 as nova shows it) also requires a heartbeat
    newer than that: after a crash nova still shows the dead services up
    until ``service_down_time`` passes.
    """
    http_specs = [s for s in specs
                  if s.health_url or s.kind == services.OVERLAY_AGENT]
    nova_specs = [s for s in specs
                  if s.nova_binary and s.nova_binary != 'nova-osapi_compute']

    def dead() -> list[str]:
        alive = sup.alive()
        return [s.name for s in specs if s.name not in alive]

    def check_dead():
        gone = dead()
        if gone:
            raise CloudError('service(s) exited during start-up: %s; see '
                             'their logs in %s'
                             % (', '.join(gone), settings.log_dir))

    pending = {s.name: s for s in http_specs
               if s.name not in progress.answered}

    def apis_ready() -> bool:
        check_dead()
        for name, spec in list(pending.items()):
            if health.answers(settings, spec, timeout=2.0)[0]:
                del pending[name]
                progress.answered.add(name)
                progress('%s: %s answers on port %d'
                         % (name, 'agent' if spec.kind ==
                            services.OVERLAY_AGENT else 'API', spec.port))
        return not pending

    wait_until(apis_ready, timeout, 'the APIs to answer')
    sess = catalog.admin_session(settings, timeout=30.0)
    waiting = {s.name: s for s in nova_specs}

    def nova_ready() -> bool:
        check_dead()
        for pop in settings.layout.pops:
            mine = [s for s in waiting.values() if s.pop == pop.name]
            if not mine:
                continue
            try:
                view = health.nova_heartbeats(settings, pop.name, sess)
            except (ks_exc.ClientException, OSError):
                continue
            for spec in mine:
                state, beat = view.get((spec.nova_binary, spec.nova_host),
                                       (None, None))
                fresh = since is None or (beat or '') > since
                if state == 'up' and fresh:
                    del waiting[spec.name]
                    progress('%s: up in nova' % spec.name)
        return not waiting

    wait_until(nova_ready, timeout, 'nova services to report up', 2.0)


def up(settings: CloudSettings, progress: Progress | None = None,
       start_timeout: float = START_TIMEOUT) -> dict:
    """Bring the cloud up; returns a summary (pops, timings, image)."""
    progress = progress or Progress()
    alive = running(settings.state_dir)
    if alive:
        raise CloudError(
            'a cloud is already running from %s (%d services, e.g. %s); '
            'use "discovery-nova cloud status" or "discovery-nova cloud '
            'down" first' % (settings.state_dir, len(alive),
                             sorted(alive)[0]))
    check_prerequisites(settings)
    _reset_state_dir(settings)
    settings.save()
    progress('PoPs: %s (matrix nodes %s); state in %s'
             % (', '.join(p.name for p in settings.layout.pops),
                ', '.join(str(p.node) for p in settings.layout.pops),
                settings.state_dir))
    config_files.render_keystone(settings)
    config_files.render_glance(settings)
    # The overlay agents need it whatever the transport and conductor.
    config_files.write_p2p_key(settings)
    for pop in settings.layout.pops:
        config_files.render_placement(settings, pop)
        config_files.render_nova(settings, pop)
    progress('configs written (%s databases, %s transport, %s conductor)'
             % (settings.database, settings.transport, settings.conductor))
    recreate_databases(settings)
    sup = supervisor_for(settings)
    specs = services.all_specs(settings)
    keystone = specs[0]

    def keystone_job() -> None:
        setup_keystone(settings)
        sup.start(keystone)
        _wait_healthy(settings, [keystone], sup, progress, start_timeout)
        catalog.register_cloud(settings)

    jobs = {'keystone (%d regions, catalog, service users)'
            % len(settings.layout.pops): keystone_job,
            'glance-manage': lambda: setup_glance(settings)}
    for pop in settings.layout.pops:
        jobs['%s: nova-manage' % pop.name] = (
            lambda pop=pop: setup_nova(settings, pop))
    if settings.transport == 'rabbit':
        jobs['RabbitMQ vhosts %s' % ', '.join(
            settings.vhost(p) for p in settings.layout.pops)] = (
            lambda: recreate_vhosts(settings))
    try:
        run_parallel(jobs, progress)
        prepare_sqlite(settings)
        # nova services create their placement client at start-up and die
        # if placement does not answer yet: the APIs they use come first.
        first = [s for s in specs[1:] if not s.nova_binary]
        for spec in first:
            sup.start(spec)
        progress('started %s; waiting for them'
                 % ', '.join(s.name for s in first))
        _wait_healthy(settings, specs[:1] + first, sup, progress,
                      start_timeout)
        for spec in specs[1:]:
            if spec.nova_binary:
                sup.start(spec)
        progress('started the nova services; waiting for them')
        _wait_healthy(settings, specs, sup, progress, start_timeout)
        for pop in settings.layout.pops:
            wanted = set(settings.compute_hosts(pop))
            wait_until(lambda pop=pop, wanted=wanted:
                       wanted <= mapped_hosts(settings, pop),
                       start_timeout, 'the computes of %s to be mapped to '
                       'cell1' % pop.name, 2.0)
        progress('computes mapped to their cells')
        sess = catalog.admin_session(settings, timeout=60.0)
        create_flavors(settings, sess)
        image_id = upload_image(settings, sess)
        progress('flavors %s and image %s (%s)'
                 % (', '.join(FLAVORS), IMAGE_NAME, image_id))
        register_pops(settings, sess)
        progress('PoP aggregates (coordinates, availability zones) in '
                 'every PoP')
    except BaseException:
        progress('start-up failed; stopping what was started')
        sup.stop_all()
        raise
    entry = clouds_yaml_entry(settings)
    write_clouds_yaml(settings.state_dir / 'clouds.yaml', entry)
    if settings.clouds_yaml:
        write_clouds_yaml(settings.clouds_yaml, entry)
    progress('cloud "%s" is up: %d PoPs, %d services; clouds.yaml: %s'
             % (CLOUD_NAME, len(settings.layout.pops), len(specs),
                settings.clouds_yaml or settings.state_dir / 'clouds.yaml'))
    return {'pops': [p.name for p in settings.layout.pops],
            'services': len(specs), 'image': image_id,
            'seconds': progress.elapsed}


def _load(state_dir: Path) -> CloudSettings:
    settings = CloudSettings.load(state_dir)
    if settings is None:
        raise CloudError('no cloud in %s (nothing was brought up there)'
                         % state_dir)
    return settings


def _pop_specs(settings: CloudSettings, pop_name: str):
    names = [p.name for p in settings.layout.pops]
    if pop_name not in names:
        raise CloudError('no PoP %r in this cloud; its PoPs are %s'
                         % (pop_name, ', '.join(names)))
    return [s for s in services.all_specs(settings) if s.pop == pop_name]


def stop_pop(state_dir: Path, pop_name: str, kill: bool = False,
             progress: Progress | None = None) -> list[str]:
    """Stop one PoP's services, the others untouched.

    With ``kill`` every process group gets SIGKILL at once: the PoP dies
    as in a crash, with no graceful shutdown (services stay registered as
    up until nova's ``service_down_time`` passes).
    """
    progress = progress or Progress()
    settings = _load(state_dir)
    specs = _pop_specs(settings, pop_name)
    sup = supervisor_for(settings)
    names = [s.name for s in specs]
    alive = [n for n in names if n in sup.alive()]
    sup.stop(names, kill=kill)
    progress('%s %d service(s) of %s'
             % ('killed' if kill else 'stopped', len(alive), pop_name))
    return alive


def start_pop(state_dir: Path, pop_name: str,
              progress: Progress | None = None,
              start_timeout: float = START_TIMEOUT) -> list[str]:
    """Start again the services of one PoP that are not running.

    Its databases and configs are kept, as after a power cut: nova finds
    its instances and computes where they were.
    """
    progress = progress or Progress()
    settings = _load(state_dir)
    specs = _pop_specs(settings, pop_name)
    sup = supervisor_for(settings)
    alive = sup.alive()
    shared = [s for s in services.shared_specs(settings)
              if s.name not in alive]
    if shared:
        raise CloudError('shared service(s) %s are not running; bring the '
                         'whole cloud down and up again'
                         % ', '.join(s.name for s in shared))
    todo = [s for s in specs if s.name not in alive]
    started = datetime.datetime.now(datetime.UTC).replace(
        tzinfo=None).isoformat()
    for spec in todo:
        if not spec.nova_binary:
            sup.start(spec)
    _wait_healthy(settings, [s for s in specs if not s.nova_binary], sup,
                  progress, start_timeout)
    for spec in todo:
        if spec.nova_binary:
            sup.start(spec)
    _wait_healthy(settings, specs, sup, progress, start_timeout,
                  since=started)
    progress('%s: %d service(s) started' % (pop_name, len(todo)))
    return [s.name for s in todo]


def pop_table(settings: CloudSettings, topology=None) -> str:
    """Each PoP: matrix node, compute API, and RTT to every PoP (ms)."""
    if topology is None:
        from discovery_nova.sim.topology import PlanetLabTopology
        topology = PlanetLabTopology()
    pops = settings.layout.pops
    header = ['POP', 'NODE', 'COMPUTE API'] + [
        'RTT->%s' % p.name for p in pops]
    rows = [header]
    for pop in pops:
        rows.append([pop.name, str(pop.node), settings.nova_url(pop)] + [
            '%.1f' % topology.rtt(pop.node, other.node) for other in pops])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(w) for cell, w
                               in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def status(state_dir: Path) -> list[health.ServiceHealth]:
    settings = _load(state_dir)
    sup = supervisor_for(settings)
    return health.check(settings, services.all_specs(settings),
                        sup.records())


def down(state_dir: Path, progress: Progress | None = None) -> dict:
    """Stop every service; drop vhosts and server databases."""
    progress = progress or Progress()
    state_dir = Path(state_dir)
    settings = CloudSettings.load(state_dir)
    sup = Supervisor(state_dir / 'run', state_dir / 'logs')
    records = sup.records()
    alive = sup.alive()
    progress('stopping %d running service(s)' % len(alive))
    killed = sup.stop_all()
    if killed:
        progress('had to SIGKILL: %s' % ', '.join(killed))
    left = [r.name for r in records.values() if group_members(r.pid)]
    if settings is not None:
        delete_vhosts(settings)
        drop_databases(settings)
    if left:
        raise CloudError('process groups still running after down: %s'
                         % ', '.join(left))
    progress('cloud stopped; nothing left running')
    return {'stopped': len(alive), 'killed': killed}
