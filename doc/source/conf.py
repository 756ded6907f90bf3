"""Sphinx configuration of the discovery-nova documentation.

The pages are reStructuredText and, for the guides and benchmark reports
written before this book existed, Markdown read by myst-parser. The
configuration reference is generated from the code's own options
(``oslo_config.sphinxext``, namespace ``discovery_nova``), so it cannot
drift from what the services accept. Build with ``tox -e docs`` or::

    python -m sphinx -W --keep-going -b html doc/source doc/build/html
"""

project = 'discovery-nova'
author = 'discovery-nova developers'
copyright = 'discovery-nova developers, Apache License 2.0'

extensions = [
    'myst_parser',
    'oslo_config.sphinxext',
]

source_suffix = {
    '.rst': 'restructuredtext',
    '.md': 'markdown',
}
root_doc = 'index'
exclude_patterns = ['_build']

# Markdown headings get anchors so that pages can link to their sections.
myst_heading_anchors = 3

# Nothing is highlighted as Python unless a block says so.
highlight_language = 'none'
pygments_style = 'sphinx'

html_theme = 'alabaster'
html_title = 'discovery-nova'
html_theme_options = {
    'description': 'Many small Nova deployments as one locality-aware cloud',
    'fixed_sidebar': True,
}
html_sidebars = {
    '**': ['about.html', 'navigation.html', 'relations.html',
           'searchbox.html'],
}
html_static_path: list[str] = []
html_show_sourcelink = False
