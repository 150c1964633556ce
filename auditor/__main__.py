import gc

# No cyclic collection while the command line's modules load (about a twentieth of their
# time): nothing they make is garbage. What they made is frozen, out of later collections.
gc.disable()
from .cli import main  # noqa: E402

gc.freeze()
gc.enable()

main()
