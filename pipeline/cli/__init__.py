"""The `erasure` command: one CLI, its commands grouped by who uses them.

`operators` run the pipeline (up, worker, connector, topics, systems check, keys,
schemas, db upgrade, fakes); `officers` follow and act on requests (submit, status,
list, holds, confirm, ledger verify) and
`letters` write to the person (letter, refuse); `admin` serves the desk and manages its
accounts and intake clients; `retention` sweeps the site's stores on schedule and replays
erasures after a restore.
"""

from __future__ import annotations

import click

from pipeline.cli import admin, letters, officers, operators, retention
from pipeline.cli.common import CliError, ErasureGroup

__all__ = ["CliError", "main"]


@click.group(cls=ErasureGroup)
def main() -> None:
    """GDPR erasure pipeline."""


for _command in (*operators.COMMANDS, *officers.COMMANDS, *letters.COMMANDS, *admin.COMMANDS,
                 *retention.COMMANDS):
    main.add_command(_command)


if __name__ == "__main__":
    main()
