"""The processes of a local cloud, in the order they start.

One place says which command runs which service, with which config: the
launcher starts these specs, ``status`` checks them and ``down`` stops
them. The conductor of each PoP is nova-conductor, or our
``discovery-conductor`` when the cloud is brought up with
``--conductor discovery``; both take the same nova.conf. Each PoP also
runs its overlay agent (``discovery-agent``), which the conductor keeps
the ring's records of its servers in.
"""

import importlib.metadata
import shutil
import sys

from discovery_nova.cloud import config_files
from discovery_nova.cloud import sqlite_locking
from discovery_nova.cloud.layout import PopSpec
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import ServiceSpec

#: Kind of the per-PoP overlay agent (``discovery-agent``).
OVERLAY_AGENT = 'overlay-agent'
CONDUCTOR_BINARIES = {'nova': 'nova-conductor',
                      'discovery': 'discovery-conductor'}


class MissingProgram(RuntimeError):
    """A console script the cloud needs is not installed."""


def find_program(settings: CloudSettings, name: str) -> str:
    """A console script from our venv first, else from PATH."""
    local = settings.bin_dir / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if not found:
        raise MissingProgram(
            '%s is not installed (looked in %s and on PATH)'
            % (name, settings.bin_dir))
    return found


def console_script(name: str) -> list[str]:
    """Command running the installed console script ``name``.

    Through :mod:`run_service`, so that the sqlite locking fix can be put
    in place first; refuses a script that is not installed.
    """
    if not importlib.metadata.entry_points(group='console_scripts',
                                           name=name):
        raise MissingProgram('%s is not installed (no console script of '
                             'that name in %s)' % (name, sys.prefix))
    return [sys.executable, '-m', 'discovery_nova.cloud.run_service', name]


def _wsgi(target: str, host: str, port: int, *extra: str) -> list[str]:
    return [sys.executable, '-m', 'discovery_nova.cloud.wsgi_runner',
            target, host, str(port)] + list(extra)


def shared_specs(settings: CloudSettings) -> list[ServiceSpec]:
    host = settings.layout.host
    layout = settings.layout
    return [
        ServiceSpec(
            name='keystone', kind='keystone', port=layout.keystone_port,
            argv=_wsgi('keystone.wsgi.api:application', host,
                       layout.keystone_port),
            env={'OS_KEYSTONE_CONFIG_DIR': str(settings.keystone_dir)},
            health_url=settings.keystone_url),
        ServiceSpec(
            name='glance', kind='glance', port=layout.glance_port,
            argv=_wsgi('glance.wsgi.api:application', host,
                       layout.glance_port),
            env={'OS_GLANCE_CONFIG_DIR': str(settings.glance_dir)},
            health_url=settings.glance_url + '/versions'),
        ServiceSpec(
            name='network', kind='network', port=layout.network_port,
            argv=_wsgi('discovery_nova.cloud.null_network:application',
                       host, layout.network_port),
            health_url=settings.network_url + '/'),
    ]


def pop_specs(settings: CloudSettings, pop: PopSpec) -> list[ServiceSpec]:
    """Placement, overlay agent, conductor, scheduler, API and computes of
    one PoP."""
    host = settings.layout.host
    directory = settings.pop_dir(pop)
    nova_conf = str(directory / 'nova.conf')
    conf_d = str(directory / 'nova.conf.d')
    common = ['--config-file', nova_conf, '--config-dir', conf_d]
    control = settings.control_host(pop)
    conductor = CONDUCTOR_BINARIES[settings.conductor]
    specs = [
        ServiceSpec(
            name='%s/placement' % pop.name, pop=pop.name, kind='placement',
            port=pop.placement_port,
            argv=_wsgi('placement.wsgi.api:application', host,
                       pop.placement_port),
            env={'OS_PLACEMENT_CONFIG_DIR': str(directory / 'placement')},
            health_url=settings.placement_url(pop) + '/'),
    ]
    if pop.overlay_port:
        # The agent reads the PoP's nova.conf ([discovery] and
        # [discovery_overlay]) as the conductor does: both agree on where
        # it listens.
        specs.append(ServiceSpec(
            name='%s/overlay-agent' % pop.name, pop=pop.name,
            kind=OVERLAY_AGENT, port=pop.overlay_port,
            argv=console_script('discovery-agent') + [
                '--config-file', nova_conf, '--emulated-rtt-file',
                str(config_files.overlay_rtt_file(settings, pop))]))
    specs += [
        ServiceSpec(
            name='%s/nova-conductor' % pop.name, pop=pop.name,
            kind='nova-conductor',
            argv=console_script(conductor) + common,
            nova_binary='nova-conductor', nova_host=control),
        ServiceSpec(
            name='%s/nova-scheduler' % pop.name, pop=pop.name,
            kind='nova-scheduler',
            argv=console_script('nova-scheduler') + common,
            nova_binary='nova-scheduler', nova_host=control),
        ServiceSpec(
            name='%s/nova-api' % pop.name, pop=pop.name, kind='nova-api',
            port=pop.nova_api_port,
            argv=_wsgi('nova.wsgi.osapi_compute:application', host,
                       pop.nova_api_port, '--config-dir', conf_d),
            env={'OS_NOVA_CONFIG_DIR': str(directory),
                 'OS_NOVA_CONFIG_FILES': '%s;nova.conf'
                 % config_files.NOVA_API_PASTE},
            health_url=settings.nova_url(pop) + '/',
            nova_binary='nova-osapi_compute', nova_host=control),
    ]
    for compute_host in settings.compute_hosts(pop):
        specs.append(ServiceSpec(
            name='%s/%s' % (pop.name, compute_host), pop=pop.name,
            kind='nova-compute',
            argv=console_script('nova-compute') + [
                  '--config-file', nova_conf,
                  '--config-file', str(directory / ('%s.conf'
                                                    % compute_host)),
                  '--config-dir', conf_d],
            nova_binary='nova-compute', nova_host=compute_host))
    return specs


def all_specs(settings: CloudSettings) -> list[ServiceSpec]:
    specs = shared_specs(settings)
    for pop in settings.layout.pops:
        specs.extend(pop_specs(settings, pop))
    if settings.database == 'sqlite':
        for spec in specs:
            spec.env[sqlite_locking.ENV_FLAG] = '1'
    return specs
