"""Registering an option group so that each ConfigOpts owns its copy.

oslo.config keeps a group's options, and their overrides, in the OptGroup
object itself (``register_group`` copies it only shallowly). Registering one
module-level OptGroup on two ConfigOpts (two services in one process, or a
test's private configuration beside the global one) would make an override
on one leak into the other; so each registration gets a fresh group.
"""

from oslo_config import cfg


def register(conf: cfg.ConfigOpts, group: cfg.OptGroup,
             opts: list[cfg.Opt]) -> None:
    """Register ``opts`` under a private copy of ``group`` on ``conf``."""
    conf.register_group(cfg.OptGroup(group.name, title=group.title,
                                     help=group.help))
    conf.register_opts(opts, group=group.name)
