"""Sphinx configuration of the discovery-nova release notes.

reno's extension reads the notes of ``releasenotes/notes/`` from the git
history and groups them by the release tag that first contains them; notes
not in any tag yet are listed under the version being developed. Build
with ``tox -e releasenotes`` or::

    python -m sphinx -W -b html releasenotes/source releasenotes/build/html
"""

project = 'discovery-nova Release Notes'
author = 'discovery-nova developers'
copyright = 'discovery-nova developers, Apache License 2.0'

extensions = [
    'reno.sphinxext',
]

root_doc = 'index'
exclude_patterns = ['_build']
highlight_language = 'none'

html_theme = 'alabaster'
html_static_path: list[str] = []
html_show_sourcelink = False
