"""mailflow-auditor: can mail reach the mailboxes without passing the gateway?"""

__version__ = "0.1.0"
