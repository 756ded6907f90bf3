"""Render the config files of every service of a local cloud.

Each file is what an operator would write by hand for that service: one
keystone with the PoPs as regions, one glance on the file store, and per
PoP a nova.conf (API, conductor, scheduler), one small override per compute
host, and a placement.conf. Extra nova.conf snippets (our scheduler filters
and weighers, for instance) are copied into each PoP's ``nova.conf.d`` and
read after nova.conf by every nova service.
"""

import configparser
import json
import os
from pathlib import Path
import secrets
import sys

from discovery_nova.cloud.layout import PopSpec
from discovery_nova.cloud.settings import CloudSettings

Sections = dict[str, dict[str, object]]

#: The paste pipelines pip installs with nova and glance.
NOVA_API_PASTE = Path(sys.prefix) / 'etc' / 'nova' / 'api-paste.ini'
GLANCE_API_PASTE = Path(sys.prefix) / 'etc' / 'glance' / \
    'glance-api-paste.ini'


def write_ini(path: Path, sections: Sections) -> Path:
    """Write ``sections`` as an oslo.config INI file, readable by us only.

    The files hold service passwords, hence mode 0600.
    """
    lines = ['# Written by discovery-nova cloud up; rewritten at each up.']
    for section, options in sections.items():
        lines.append('')
        lines.append('[%s]' % section)
        for key, value in options.items():
            if isinstance(value, bool):
                value = 'true' if value else 'false'
            elif isinstance(value, (list, tuple)):
                value = ','.join(str(v) for v in value)
            lines.append('%s = %s' % (key, value))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as out:
        out.write('\n'.join(lines) + '\n')
    return path


def db_name(settings: CloudSettings, name: str) -> str:
    return '%s_%s' % (settings.db_prefix, name.replace('-', '_'))


def database_url(settings: CloudSettings, directory: Path,
                 name: str) -> str:
    """The SQLAlchemy URL of database ``name`` of this cloud."""
    if settings.database == 'sqlite':
        # Wait up to 30 s for another process's write lock rather than
        # the default 5 s: several services share each file.
        return 'sqlite:///%s?timeout=30' % (directory / ('%s.sqlite' % name))
    if settings.database == 'mysql':
        return '%s/%s?charset=utf8' % (settings.mysql_url,
                                       db_name(settings, name))
    return '%s/%s' % (settings.postgresql_url, db_name(settings, name))


def pop_databases(settings: CloudSettings, pop: PopSpec) -> dict[str, str]:
    """The databases one PoP needs, by role."""
    directory = settings.pop_dir(pop)
    prefix = pop.name
    return {
        'nova_api': database_url(settings, directory,
                                 '%s_nova_api' % prefix),
        'nova_cell0': database_url(settings, directory,
                                   '%s_nova_cell0' % prefix),
        'nova_cell1': database_url(settings, directory,
                                   '%s_nova_cell1' % prefix),
        'placement': database_url(settings, directory,
                                  '%s_placement' % prefix),
    }


def shared_databases(settings: CloudSettings) -> dict[str, str]:
    return {
        'keystone': database_url(settings, settings.keystone_dir,
                                 'keystone'),
        'glance': database_url(settings, settings.glance_dir, 'glance'),
    }


def transport_url(settings: CloudSettings, pop: PopSpec) -> str:
    """Each PoP its own message bus: a rabbit vhost, or its own p2p seed.

    PoPs talk to each other only through the conductors' forwarding, never
    by sharing a bus, so that every PoP stays a complete, independent
    Nova deployment.
    """
    if settings.transport == 'rabbit':
        return '%s/%s' % (settings.rabbit_url, settings.vhost(pop))
    return 'p2p://%s:%d/' % (settings.layout.host, pop.p2p_port)


def _service_auth(settings: CloudSettings, user: str,
                  region: str | None = None) -> dict[str, object]:
    auth = {
        'auth_type': 'password',
        'auth_url': settings.keystone_url,
        'project_domain_name': 'Default',
        'user_domain_name': 'Default',
        'project_name': 'service',
        'username': user,
        'password': settings.service_password,
    }
    if region:
        auth['region_name'] = region
    return auth


def _authtoken(settings: CloudSettings, user: str,
               region: str | None) -> dict[str, object]:
    options = {'www_authenticate_uri': settings.keystone_url,
               'service_token_roles_required': True}
    options.update(_service_auth(settings, user, region))
    return options


def render_keystone(settings: CloudSettings) -> Path:
    directory = settings.keystone_dir
    return write_ini(directory / 'keystone.conf', {
        'database': {'connection': shared_databases(settings)['keystone']},
        'token': {'provider': 'fernet'},
        'fernet_tokens': {'key_repository': directory / 'fernet-keys'},
        'fernet_receipts': {'key_repository': directory / 'fernet-keys'},
        'credential': {'key_repository': directory / 'credential-keys'},
        # Without a cache keystone runs ~300 SQL queries per validated
        # token; a per-process dict is coherent since there is one keystone
        # process.
        'cache': {'enabled': True, 'backend': 'oslo_cache.dict',
                  'expiration_time': 600},
        # Minimum bcrypt cost: this is a local test bed, and every service
        # of every PoP authenticates at start-up on a loaded machine.
        'identity': {'password_hash_rounds': 4},
    })


def render_glance(settings: CloudSettings) -> Path:
    directory = settings.glance_dir
    for sub in ('images', 'staging', 'tasks', 'locks'):
        (directory / sub).mkdir(parents=True, exist_ok=True)
    first_region = settings.layout.pops[0].name
    return write_ini(directory / 'glance-api.conf', {
        'DEFAULT': {'enabled_backends': 'file:file'},
        'glance_store': {'default_backend': 'file'},
        'file': {'filesystem_store_datadir': directory / 'images'},
        'os_glance_staging_store': {
            'filesystem_store_datadir': directory / 'staging'},
        'os_glance_tasks_store': {
            'filesystem_store_datadir': directory / 'tasks'},
        'database': {'connection': shared_databases(settings)['glance']},
        'keystone_authtoken': _authtoken(settings, 'glance', first_region),
        'paste_deploy': {'flavor': 'keystone',
                         'config_file': GLANCE_API_PASTE},
        'oslo_concurrency': {'lock_path': directory / 'locks'},
    })


def render_placement(settings: CloudSettings, pop: PopSpec) -> Path:
    directory = settings.pop_dir(pop) / 'placement'
    return write_ini(directory / 'placement.conf', {
        'placement_database': {
            'connection': pop_databases(settings, pop)['placement'],
            'sync_on_startup': True},
        'api': {'auth_strategy': 'keystone'},
        'keystone_authtoken': _authtoken(settings, 'placement', pop.name),
    })


def nova_conf_sections(settings: CloudSettings, pop: PopSpec) -> Sections:
    """The nova.conf shared by every nova service of one PoP."""
    directory = settings.pop_dir(pop)
    dbs = pop_databases(settings, pop)
    region = pop.name
    sections: Sections = {
        'DEFAULT': {
            'host': settings.control_host(pop),
            'my_ip': settings.layout.host,
            'transport_url': transport_url(settings, pop),
            'state_path': directory / 'state' / 'control',
            'compute_driver': settings.compute_driver,
            # Computes report often so that `up` and `status` see them soon.
            'report_interval': 5,
            'service_down_time': 30,
        },
        'api': {'auth_strategy': 'keystone'},
        'wsgi': {'api_paste_config': NOVA_API_PASTE},
        'api_database': {'connection': dbs['nova_api']},
        'database': {'connection': dbs['nova_cell1']},
        'keystone_authtoken': _authtoken(settings, 'nova', region),
        'service_user': dict(_service_auth(settings, 'nova'),
                             send_service_user_token=True),
        'placement': dict(_service_auth(settings, 'nova', region),
                          valid_interfaces='internal,public'),
        'glance': {'region_name': region,
                   'valid_interfaces': 'internal,public'},
        'neutron': dict(_service_auth(settings, 'nova', region),
                        valid_interfaces='internal,public'),
        'cinder': {'os_region_name': region},
        'scheduler': {'discover_hosts_in_cells_interval': 10,
                      'workers': 1},
        'conductor': {'workers': 1},
        # The local cloud is a test bed: boot storms must not hit quotas.
        'quota': {'instances': -1, 'cores': -1, 'ram': -1},
        'vnc': {'enabled': False},
        'oslo_concurrency': {'lock_path': directory / 'locks'},
        'discovery': {'pop_name': pop.name},
    }
    if settings.conductor == 'discovery':
        sections['discovery_conductor'] = federation_options(settings, pop)
    sections['discovery_overlay'] = overlay_options(settings, pop)
    if settings.transport == 'p2p' or settings.conductor == 'discovery':
        sections['oslo_messaging_p2p'] = {
            'listen_host': settings.layout.host,
            'advertise_host': settings.layout.host,
            'deployment_key_file': p2p_key_file(settings),
        }
    return sections


def federation_options(settings: CloudSettings,
                       pop: PopSpec) -> dict[str, object]:
    """Where the conductors of all PoPs meet, and the emulated WAN delays.

    Conductor to conductor is always the p2p driver, seeded with every
    PoP's federation port; the RTTs between PoPs come from the shipped
    matrix, added by the conductor to each call since the PoPs share one
    machine.
    """
    from discovery_nova.cloud import pop_registry
    from discovery_nova.sim.topology import PlanetLabTopology

    layout = settings.layout
    seeds = ','.join('%s:%d' % (layout.host, other.federation_port)
                     for other in layout.pops)
    rtts = pop_registry.measured_rtts(layout, PlanetLabTopology())[pop.name]
    return {
        'federation_transport_url': 'p2p://%s/' % seeds,
        'membership_url': 'file://%s' % (settings.state_dir / 'membership'),
        'emulated_rtt_ms': ','.join('%s:%.1f' % (name, rtt)
                                    for name, rtt in sorted(rtts.items())),
        'sync_interval': 2.0,
        'forward_timeout': 90.0,
    }


def overlay_options(settings: CloudSettings,
                    pop: PopSpec) -> dict[str, object]:
    """The PoP's overlay agent, in the nova.conf both it and the conductor
    read: the agent listens there, the conductor finds it there.

    Membership is a directory of the state dir (tooz file://, no server),
    the key is the one the p2p peers share.
    """
    host = settings.layout.host
    return {
        'listen_host': host,
        'listen_port': pop.overlay_port,
        'advertise_host': host,
        'deployment_key_file': p2p_key_file(settings),
        'membership_backend': 'tooz',
        'membership_url': 'file://%s' % (settings.state_dir /
                                         'overlay-membership'),
        'membership_group': 'discovery-overlay',
        'state_path': settings.pop_dir(pop) / 'overlay',
    }


def overlay_rtt_file(settings: CloudSettings, pop: PopSpec) -> Path:
    return settings.pop_dir(pop) / 'overlay-rtt.json'


def write_overlay_rtts(settings: CloudSettings, pop: PopSpec) -> Path:
    """The matrix RTTs from ``pop`` to every other PoP, for the agent's
    ``--emulated-rtt-file``: the PoPs share one machine, and their agents'
    coordinates and nearest peers should still be the matrix's."""
    from discovery_nova.cloud import pop_registry
    from discovery_nova.sim.topology import PlanetLabTopology

    rtts = pop_registry.measured_rtts(settings.layout,
                                      PlanetLabTopology())[pop.name]
    path = overlay_rtt_file(settings, pop)
    path.parent.mkdir(parents=True, exist_ok=True)
    (settings.pop_dir(pop) / 'overlay').mkdir(exist_ok=True)
    path.write_text(json.dumps(rtts, indent=1, sort_keys=True) + '\n')
    return path


#: Our filters and weighers next to nova's, as in
#: etc/nova/nova.conf.d/discovery-scheduler.conf (repeated keys: oslo.config
#: multi-valued options).
SCHEDULER_SNIPPET = """\
# Written by discovery-nova cloud up: the locality filters and weighers.
[filter_scheduler]
available_filters = nova.scheduler.filters.all_filters
available_filters = discovery_nova.scheduler.all_filters
enabled_filters = ComputeFilter,ComputeCapabilitiesFilter,\
ImagePropertiesFilter,ServerGroupAntiAffinityFilter,\
ServerGroupAffinityFilter,PopFilter,MaxRttFilter,PopAffinityFilter
weight_classes = nova.scheduler.weights.all_weighers,\
discovery_nova.scheduler.all_weighers
""".replace('\\\n', '')


def read_nova_snippet(path: Path) -> str:
    """Read an extra nova.conf snippet, refusing what nova could not parse.

    Checked at ``up`` so that a typo names its file at once, rather than
    showing up as a nova service that dies during start-up.
    """
    try:
        text = path.read_text()
    except OSError as exc:
        raise ValueError('cannot read nova.conf snippet %s: %s'
                         % (path, exc.strerror)) from exc
    parser = configparser.RawConfigParser(strict=False)
    try:
        parser.read_string(text, source=str(path))
    except configparser.Error as exc:
        raise ValueError('nova.conf snippet %s is not an INI file with '
                         '[section] headers and "key = value" lines: %s'
                         % (path, exc)) from exc
    return text


def p2p_key_file(settings: CloudSettings) -> Path:
    """The secret every p2p peer and overlay agent of this cloud shares
    (all PoPs: their conductors talk to each other over p2p too)."""
    return settings.state_dir / 'p2p-deployment.key'


def write_p2p_key(settings: CloudSettings) -> None:
    path = p2p_key_file(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, 'w') as out:
        out.write(secrets.token_urlsafe(32) + '\n')


#: What nova's fake driver reports for every host (nova.virt.fake).
FAKE_HOST_VCPUS = 1000
FAKE_HOST_RAM_MB = 800000


def compute_capacity(settings: CloudSettings) -> dict[str, object]:
    """Options that cut the fake driver's host down to the cloud's size.

    Reserving the rest of the fake host and allocation ratios of 1 give
    placement exactly ``compute_vcpus`` and ``compute_ram_mb`` to hand
    out, so a PoP is full after a predictable number of servers.
    """
    return {
        'reserved_host_cpus': max(0, FAKE_HOST_VCPUS - settings.compute_vcpus),
        'reserved_host_memory_mb': max(
            0, FAKE_HOST_RAM_MB - settings.compute_ram_mb),
        'initial_cpu_allocation_ratio': 1.0,
        'initial_ram_allocation_ratio': 1.0,
        'cpu_allocation_ratio': 1.0,
        'ram_allocation_ratio': 1.0,
    }


def render_nova(settings: CloudSettings, pop: PopSpec) -> dict[str, Path]:
    """Write nova.conf, one override per compute, and nova.conf.d.

    Returns the paths by role: ``nova`` (nova.conf), ``conf_d``,
    ``overlay_rtts`` (the agent's emulated RTTs) and each compute host's
    override file by host name.
    """
    directory = settings.pop_dir(pop)
    paths = {'nova': write_ini(directory / 'nova.conf',
                               nova_conf_sections(settings, pop))}
    for host in settings.compute_hosts(pop):
        state = directory / 'state' / host
        # nova writes the compute's node identity file here and fails to
        # if the directory is missing.
        (state / 'instances').mkdir(parents=True, exist_ok=True)
        paths[host] = write_ini(directory / ('%s.conf' % host), {
            'DEFAULT': dict({'host': host, 'state_path': state,
                             'instances_path': state / 'instances'},
                            **compute_capacity(settings))})
    conf_d = directory / 'nova.conf.d'
    conf_d.mkdir(parents=True, exist_ok=True)
    for old in conf_d.glob('*.conf'):
        old.unlink()
    (conf_d / '00-discovery-scheduler.conf').write_text(SCHEDULER_SNIPPET)
    for index, extra in enumerate(settings.nova_conf_extra):
        text = read_nova_snippet(Path(extra))
        target = conf_d / ('%02d-%s' % (index + 1, Path(extra).name))
        if target.suffix != '.conf':
            target = target.with_name(target.name + '.conf')
        target.write_text(text)
    paths['conf_d'] = conf_d
    paths['overlay_rtts'] = write_overlay_rtts(settings, pop)
    (directory / 'locks').mkdir(parents=True, exist_ok=True)
    (directory / 'state' / 'control').mkdir(parents=True, exist_ok=True)
    return paths
