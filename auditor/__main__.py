"""``python -m auditor`` and the ``mailflow-audit`` command: the command line, loaded quickly."""

import gc


def run() -> None:
    # No cyclic collection while the command line's modules load (about a twentieth of their
    # time): nothing they make is garbage. What they made is frozen, out of later collections.
    gc.disable()
    from .cli import main

    gc.freeze()
    gc.enable()
    main()


if __name__ == "__main__":
    run()
