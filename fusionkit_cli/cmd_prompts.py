"""`fusionkit prompts dump DIR`: write the built-in prompts out, to read them or start your own from them."""

from __future__ import annotations

from pathlib import Path

import click

from fusionkit_cli.common import BadInput
from server.prompt_files import ROLES, WORKDIR_PROMPTS, builtin_text

__all__ = ["prompts"]


@click.group()
def prompts() -> None:
    """The judge's, synthesizer's, verifier's and agent step's instructions (docs/fusion.md#prompt-files)."""


@prompts.command()
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite prompt files that are already there.")
def dump(directory: Path, force: bool) -> None:
    """Write the built-in prompts to DIR as judge.md, synthesizer.md, verifier.md and agent.md.

    Dumped into `.fusionkit/prompts`, edited files override the built-ins for a router started in
    that working directory; or name one in the config (`fusion.prompts.judge: path/to/judge.md`).
    """
    targets = [directory / f"{role}.md" for role in ROLES]
    present = [str(t) for t in targets if t.exists()]
    if present and not force:
        raise BadInput(f"{', '.join(present)}: already there; pass --force to overwrite")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for role, target in zip(ROLES, targets, strict=True):
            target.write_text(builtin_text(role), encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{directory}: cannot write the prompts: {exc}") from None
    for target in targets:
        click.echo(str(target))
    if directory.resolve() != (Path.cwd() / WORKDIR_PROMPTS).resolve():
        click.echo(
            f"(a router uses them from {WORKDIR_PROMPTS}/ in its working directory, or named in the config)", err=True
        )
