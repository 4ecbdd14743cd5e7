"""`elision train ...`: each subcommand lives in its own small module beside the code it drives
(heavy imports happen inside the commands, so `elision --help` stays fast)."""

from __future__ import annotations

import click

from ._align_cli import align
from ._classifier_cli import classifier
from ._distill_cli import distill
from ._questions_cli import questions
from ._rl_cli import rl


@click.group()
def train():
    """Distil keep/drop labels and train the LLMLingua-2 classifier; align the scorer; RL-tune the classifier."""


train.add_command(distill)
train.add_command(questions)
train.add_command(classifier)
train.add_command(align)
train.add_command(rl)
