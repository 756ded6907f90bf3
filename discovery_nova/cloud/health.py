"""Is each service of a local cloud alive and doing its job?

A service is healthy when its process runs, its API (if it has one)
answers HTTP (an overlay agent: its status query, with the cloud's
deployment key), and - for nova services - nova itself reports it ``up`` in
the PoP's compute service list, the same view as
``openstack compute service list``.
"""

import dataclasses
import http.client
import urllib.parse

from keystoneauth1 import exceptions as ks_exc

from discovery_nova.cloud import catalog
from discovery_nova.cloud import config_files
from discovery_nova.cloud.services import OVERLAY_AGENT
from discovery_nova.cloud.settings import CloudSettings
from discovery_nova.cloud.supervisor import ProcessRecord
from discovery_nova.cloud.supervisor import ServiceSpec
from discovery_nova.cloud.supervisor import is_alive
from discovery_nova.overlay.client import AgentClient
from discovery_nova.overlay.client import AgentUnavailable
from discovery_nova.overlay.client import read_key_file


@dataclasses.dataclass
class ServiceHealth:
    name: str
    pop: str | None
    kind: str
    pid: int | None
    process: bool
    api: bool | None
    nova_state: str | None
    detail: str = ''

    @property
    def healthy(self) -> bool:
        return (self.process and self.api is not False and
                self.nova_state in (None, 'up'))


def http_answers(url: str, timeout: float = 3.0) -> tuple[bool, str]:
    """GET ``url``: any HTTP answer below 500 means the API is serving."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port,
                                      timeout=timeout)
    try:
        conn.request('GET', parts.path or '/')
        status = conn.getresponse().status
    except OSError as exc:
        return False, str(exc) or exc.__class__.__name__
    finally:
        conn.close()
    if status >= 500:
        return False, 'HTTP %d' % status
    return True, 'HTTP %d' % status


def agent_answers(settings: CloudSettings, spec: ServiceSpec,
                  timeout: float = 3.0) -> tuple[bool, str]:
    """Ask the overlay agent of ``spec`` for its status, with the cloud's
    deployment key: it serves when it answers; the detail says how many
    of the cloud's PoPs its membership (hence its ring) holds."""
    try:
        key = read_key_file(str(config_files.p2p_key_file(settings)))
        status = AgentClient(settings.layout.host, spec.port, key,
                             timeout=timeout).status()
    except AgentUnavailable as exc:
        return False, str(exc)
    members = status.get('members') or []
    return True, 'overlay: %d of %d PoPs in the ring, %d records' % (
        len(members), len(settings.layout.pops), status.get('records', 0))


def answers(settings: CloudSettings, spec: ServiceSpec,
            timeout: float = 3.0) -> tuple[bool | None, str]:
    """Whether the service's own interface answers: HTTP for an API, a
    status query for an overlay agent; None when it has neither."""
    if spec.health_url:
        return http_answers(spec.health_url, timeout)
    if spec.kind == OVERLAY_AGENT and spec.port:
        return agent_answers(settings, spec, timeout)
    return None, ''


def nova_services(settings: CloudSettings, pop_name: str,
                  sess=None) -> dict[tuple[str, str], str]:
    """``(binary, host) -> 'up'|'down'`` from one PoP's compute API."""
    return {key: state for key, (state, _) in
            nova_heartbeats(settings, pop_name, sess).items()}


def nova_heartbeats(settings: CloudSettings, pop_name: str,
                    sess=None) -> dict[tuple[str, str],
                                       tuple[str, str | None]]:
    """``(binary, host) -> (state, updated_at)``; ``updated_at`` is the
    last heartbeat, ISO 8601 in UTC without a zone, as nova shows it."""
    pop = next(p for p in settings.layout.pops if p.name == pop_name)
    sess = sess or catalog.admin_session(settings, timeout=10.0)
    resp = sess.get(settings.nova_url(pop) + '/os-services')
    return {(svc['binary'], svc['host']): (svc['state'], svc['updated_at'])
            for svc in resp.json()['services']}


def check(settings: CloudSettings, specs: list[ServiceSpec],
          records: dict[str, ProcessRecord]) -> list[ServiceHealth]:
    """Health of every service in ``specs``."""
    sess = None
    nova_views: dict[str, dict | str] = {}
    results = []
    for spec in specs:
        record = records.get(spec.name)
        alive = record is not None and is_alive(record)
        api = None
        detail = '' if alive else 'not running'
        if spec.health_url or spec.kind == OVERLAY_AGENT:
            api, answer = answers(settings, spec)
            if alive:
                detail = answer
        nova_state = None
        if spec.nova_binary and spec.nova_binary != 'nova-osapi_compute':
            view = nova_views.get(spec.pop)
            if view is None:
                try:
                    sess = sess or catalog.admin_session(settings, 10.0)
                    view = nova_services(settings, spec.pop, sess)
                except (ks_exc.ClientException, OSError) as exc:
                    view = 'compute API unreachable: %s' % exc
                nova_views[spec.pop] = view
            if isinstance(view, str):
                nova_state = 'unknown'
                detail = detail or view
            else:
                nova_state = view.get((spec.nova_binary, spec.nova_host),
                                      'unregistered')
        results.append(ServiceHealth(
            name=spec.name, pop=spec.pop, kind=spec.kind,
            pid=record.pid if record else None, process=alive, api=api,
            nova_state=nova_state, detail=detail))
    return results


def format_table(results: list[ServiceHealth]) -> str:
    """A fixed-width table, one service per line, worst first per PoP."""
    header = ('SERVICE', 'PID', 'PROCESS', 'API', 'NOVA', 'HEALTH', 'DETAIL')
    rows = [header]
    for item in results:
        rows.append((
            item.name, str(item.pid or '-'),
            'alive' if item.process else 'dead',
            {None: '-', True: 'ok', False: 'fail'}[item.api],
            item.nova_state or '-',
            'healthy' if item.healthy else 'UNHEALTHY',
            item.detail))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return '\n'.join('  '.join(cell.ljust(width) for cell, width
                               in zip(row, widths, strict=True)).rstrip()
                     for row in rows)
