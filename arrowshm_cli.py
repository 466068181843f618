"""Entry point of the ``arrowshm`` console script, outside the ``arrowshm`` package.

``import arrowshm`` loads the data plane (pyarrow, numba and the kernels a ``get``
needs) so that a worker's first ``get`` is fast. A command such as ``arrowshm
--help`` needs none of it: this module marks the process as the command line
(:data:`LAZY_PACKAGE`) *before* ``arrowshm`` is imported, and the package then
imports only its errors and resolves every other public name on first use
(``arrowshm.__getattr__``). Each verb imports what it needs.
"""

from __future__ import annotations

from collections.abc import Sequence

LAZY_PACKAGE = True
"""Read by ``arrowshm/__init__.py``: do not load the data plane at import."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``arrowshm`` command (:func:`arrowshm._cli.main`).

    Parameters
    ----------
    argv
        Arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status.

    Raises
    ------
    SystemExit
        From argparse on ``--help`` or a usage error.
    """
    from arrowshm._cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    raise SystemExit(main())
