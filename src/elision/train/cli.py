"""`elision train ...`: each subcommand lives in its own small module beside the code it drives
(heavy imports happen inside the commands, so `elision --help` stays fast)."""

from __future__ import annotations

import click

from ._classifier_cli import classifier
from ._distill_cli import distill
from ._questions_cli import questions


@click.group()
def train():
    """Distil keep/drop labels from a teacher compressor and train the LLMLingua-2 classifier."""


train.add_command(distill)
train.add_command(questions)
train.add_command(classifier)
