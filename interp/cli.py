"""The `interp` command line: thin verbs over library functions."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="interp",
    help="Mechanistic interpretability for video diffusion transformers.",
    no_args_is_help=True,
    add_completion=False,
)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
