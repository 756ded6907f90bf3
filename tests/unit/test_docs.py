"""The documentation and the release notes build, with warnings as errors.

The book (``doc/source``) is built once per run with ``sphinx-build -W
--keep-going -b html``, the way ``tox -e docs`` builds it; the checks then
read the HTML it wrote. What they expect comes from the repository and
the code (the options ``list_opts`` returns, the plots the benchmark
wrote), not from a list kept here. Release notes are linted with ``reno
lint``, built with reno's Sphinx extension, and each note's text is parsed
as reStructuredText, because reno reads notes from git history and a note
that is not committed yet would otherwise never be rendered before it
lands.
"""

import os
import pathlib
import re
import shutil
import subprocess
import sys

from docutils import core as docutils_core
from docutils import utils as docutils_utils
import pytest
from reno import config as reno_config
import yaml

from discovery_nova.conf import opts

REPO = pathlib.Path(__file__).resolve().parents[2]
DOC_SOURCE = REPO / 'doc' / 'source'
NOTES_SOURCE = REPO / 'releasenotes' / 'source'
SAMPLE = REPO / 'etc' / 'discovery-nova' / 'discovery-nova.conf.sample'
#: One build takes a few seconds; this only stops a hung build.
BUILD_TIMEOUT = 300

#: Pages every reader needs, one or more per part of the book.
KEY_PAGES = (
    'index',
    'install/index', 'install/devstack',
    'admin/index', 'admin/nova-conf', 'admin/membership',
    'admin/transport', 'admin/sizing', 'admin/locality-scheduling',
    'admin/local-cloud',
    'configuration/index', 'configuration/reference',
    'configuration/sample',
    'user/index', 'user/hints',
    'reference/index', 'reference/architecture', 'reference/overlay',
    'benchmarks/index', 'benchmarks/overlay', 'benchmarks/scheduler',
    'benchmarks/messaging',
    'contributor/index',
)


def sphinx_build(source: pathlib.Path, out: pathlib.Path
                 ) -> subprocess.CompletedProcess:
    """``sphinx-build -W --keep-going -b html`` with this interpreter."""
    try:
        import sphinx  # noqa: F401
    except ImportError:
        pytest.fail('sphinx is not installed: it is in '
                    'test-requirements.txt')
    return subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-E', '-q',
         '-b', 'html', '-d', str(out / '.doctrees'), str(source), str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=BUILD_TIMEOUT)


def _failure(proc: subprocess.CompletedProcess) -> str:
    return 'exit status %d\n%s\n%s' % (proc.returncode, proc.stdout[-5000:],
                                       proc.stderr[-5000:])


@pytest.fixture(scope='module')
def book(tmp_path_factory) -> pathlib.Path:
    """The HTML of doc/source; fails with Sphinx's warnings if any."""
    out = tmp_path_factory.mktemp('doc-html')
    proc = sphinx_build(DOC_SOURCE, out)
    assert proc.returncode == 0, (
        'the documentation does not build warning-free: %s'
        % _failure(proc))
    return out


def _page(book: pathlib.Path, name: str) -> str:
    path = book / ('%s.html' % name)
    assert path.is_file(), 'page %s was not built' % name
    return path.read_text(encoding='utf-8')


def test_key_pages_are_built(book):
    missing = [name for name in KEY_PAGES
               if not (book / ('%s.html' % name)).is_file()]
    assert not missing, 'pages not built: %s' % ', '.join(missing)


def test_configuration_reference_lists_every_option_of_the_code(book):
    page = _page(book, 'configuration/reference')
    # oslo_config.sphinxext gives each option the anchor "group.option".
    assert 'id="discovery.pop_name"' in page
    missing = []
    for group, group_opts in opts.list_opts():
        name = getattr(group, 'name', group)
        for opt in group_opts:
            if 'id="%s.%s"' % (name, opt.dest) not in page:
                missing.append('%s.%s' % (name, opt.dest))
    assert not missing, ('options missing from the configuration '
                         'reference: %s' % ', '.join(missing))


def test_sample_and_devstack_guide_are_included(book):
    # The page includes the checked-in sample (tests/unit/test_config.py
    # checks that the file is in step with the code).
    sample = _page(book, 'configuration/sample')
    sections = re.findall(r'^\[(\w+)\]$', SAMPLE.read_text(
        encoding='utf-8'), flags=re.MULTILINE)
    assert 'discovery' in sections
    for section in sections:
        assert '[%s]' % section in sample, section
    readme = (REPO / 'devstack' / 'README.rst').read_text(encoding='utf-8')
    title = readme.splitlines()[1].strip()
    assert title in _page(book, 'install/devstack')


def test_benchmark_plots_are_published(book):
    plots = sorted(p.name for p in
                   (DOC_SOURCE / 'benchmarks' / 'overlay').glob('*.png'))
    assert plots, 'the overlay benchmark recorded no plots'
    page = _page(book, 'benchmarks/overlay')
    for plot in plots:
        assert (book / '_images' / plot).is_file(), plot
        assert plot in page, plot


def test_a_warning_fails_the_build(tmp_path):
    """The build command used above really turns warnings into failure."""
    source = tmp_path / 'source'
    source.mkdir()
    shutil.copy(DOC_SOURCE / 'conf.py', source / 'conf.py')
    (source / 'index.rst').write_text(
        'Broken\n======\n\nSee :doc:`no-such-page`.\n')
    proc = sphinx_build(source, tmp_path / 'html')
    assert proc.returncode != 0
    assert 'no-such-page' in proc.stderr


def _in_git_checkout() -> bool:
    if shutil.which('git') is None:
        return False
    proc = subprocess.run(['git', 'rev-parse', '--is-inside-work-tree'],
                          cwd=REPO, capture_output=True, text=True)
    return proc.returncode == 0 and proc.stdout.strip() == 'true'


needs_git = pytest.mark.skipif(
    not _in_git_checkout(),
    reason='reno reads release notes from git history; this tree is not a '
           'git checkout (or git is not installed)')


def _reno() -> str:
    beside = os.path.join(os.path.dirname(sys.executable), 'reno')
    found = beside if os.path.exists(beside) else shutil.which('reno')
    if found is None:
        pytest.fail('reno is not installed: it is in test-requirements.txt')
    return found


@needs_git
def test_reno_lint_passes():
    proc = subprocess.run([_reno(), 'lint'], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, _failure(proc)


@needs_git
def test_release_notes_build(tmp_path):
    proc = sphinx_build(NOTES_SOURCE, tmp_path)
    assert proc.returncode == 0, _failure(proc)
    assert (tmp_path / 'unreleased.html').is_file()


def _note_files() -> list[pathlib.Path]:
    return sorted((REPO / 'releasenotes' / 'notes').glob('*.yaml'))


def test_release_notes_exist():
    assert _note_files(), 'releasenotes/notes/ holds no note'


@pytest.mark.parametrize('path', _note_files(), ids=lambda p: p.stem)
def test_release_note_is_valid_restructuredtext(path):
    conf = reno_config.Config(str(REPO), 'releasenotes')
    known = {s.name for s in conf.sections} | {conf.prelude_section_name}
    with open(path, encoding='utf-8') as f:
        note = yaml.safe_load(f)
    assert isinstance(note, dict) and note, (
        '%s: expected a mapping of section names to text' % path.name)
    unknown = set(note) - known
    assert not unknown, ('%s: unknown sections %s; expected some of %s'
                         % (path.name, sorted(unknown), sorted(known)))
    for section, value in note.items():
        items = [value] if isinstance(value, str) else value
        assert isinstance(items, list) and items, (
            '%s: section %s must be text or a list of texts'
            % (path.name, section))
        for item in items:
            assert isinstance(item, str), (path.name, section)
            try:
                docutils_core.publish_doctree(
                    item, settings_overrides={
                        'report_level': 2, 'halt_level': 2,
                        'warning_stream': False})
            except docutils_utils.SystemMessage as exc:
                pytest.fail('%s, section %s: %s' % (path.name, section,
                                                    exc))
